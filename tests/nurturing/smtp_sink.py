"""A real SMTP server for tests (aiosmtpd on 127.0.0.1) and a nurture email to send through it."""

from email import message_from_bytes, policy

from nurturing.compliance import prepare_marketing_email
from nurturing.sequences import render_message
from nurturing.services import email_enqueue_message


class RecordingHandler:
    """Keeps every message accepted; answers the next RCPT or DATA with a queued reply instead."""

    def __init__(self):
        self.envelopes = []
        self.rcpt_replies = []
        self.data_replies = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_replies:
            return self.data_replies.pop(0)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self):
        return [message_from_bytes(envelope.content, policy=policy.default) for envelope in self.envelopes]


def queue_nurture_email(contact, *, key="nurture:1:1"):
    rendered = render_message(
        "Hi {{ first_name | there }}, a guide for {{ company | you }}",
        "Hello {{ first_name | there }},\n\nread [the guide](https://docs.example/guide) for **{{ company | you }}**.",
        contact,
    )
    email = email_enqueue_message(key=key, to=contact.email, contact=contact, marketing=True, **rendered)
    prepare_marketing_email(email)
    return email
