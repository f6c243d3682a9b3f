"""A fast local email backend for `make bench-nurture`: appends each message's Message-ID to
a file (O_APPEND, one line per message), so duplicates across worker processes can be counted."""

import os

from django.core.mail.backends.base import BaseEmailBackend


class MessageIdSinkBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        path = os.environ["BENCH_SINK"]
        lines = "".join(f"{message.extra_headers.get('Message-ID', '')}\n" for message in email_messages)
        with open(path, "a") as sink:
            sink.write(lines)
        return len(email_messages)
