"""The outbox through real Celery worker processes and a real SMTP server: kill -9 a worker
in the middle of a batch, start another, and every email arrives exactly once.

Runs in both suites: on SQLite with the filesystem broker, and on PostgreSQL with Redis.
"""

import asyncio
import re
import threading
from collections import Counter
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from django.db import transaction
from django.db.models.functions import Now

from nurturing.models import OutboundEmail
from nurturing.tasks import outbox_send

from ..factories import AccountFactory, ContactFactory
from ..worker import WorkerProcess, free_port, purge_broker, wait_for
from .smtp_sink import RecordingHandler, queue_nurture_email

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SENDER = "Acme Marketing <marketing@acme-crm.example>"


class StallingHandler(RecordingHandler):
    """Stalls on the `stall_at`-th message after its DATA, before accepting it.

    An SMTP server takes responsibility for a message only when it answers 250 to the
    end of DATA. The stalled message is never accepted: by the time the test releases the
    handler, the worker holding the connection is dead, so a real MTA would drop it too.
    """

    def __init__(self, stall_at: int):
        super().__init__()
        self.stall_at = stall_at
        self.data_received = 0
        self.stalled = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.data_received += 1
        if self.data_received == self.stall_at:
            self.stalled.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 120)
            return "451 4.3.0 Connection lost before the message was accepted"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def stalling_smtp_server():
    handler = StallingHandler(stall_at=75)  # the 25th message of the worker's second batch of 50
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    yield handler
    handler.release.set()
    controller.stop()


def start_worker(tmp_path, smtp_port: int, **env) -> WorkerProcess:
    return WorkerProcess(
        tmp_path,
        env={
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp_port),
            "DEFAULT_FROM_EMAIL": SENDER,
            **env,
        },
    ).start()


def outbox_id(message) -> int:
    return int(re.fullmatch(r"<outbox-(\d+)@acme-crm\.example>", message["Message-ID"])[1])


def statuses() -> dict[str, int]:
    return Counter(OutboundEmail.objects.values_list("status", flat=True))


def test_a_worker_killed_mid_batch_leaves_every_email_sent_exactly_once(tmp_path, settings, stalling_smtp_server):
    settings.DEFAULT_FROM_EMAIL = SENDER
    purge_broker()
    contacts = [
        ContactFactory(email=f"lead{n}@prospect{n}.example", first_name=f"Lead{n}", account=AccountFactory())
        for n in range(120)
    ]
    with transaction.atomic():  # one send task, queued on commit, as when a sequence step is due
        emails = {queue_nurture_email(contact, key=f"nurture:crash:{contact.pk}").pk: contact for contact in contacts}
    smtp_port = stalling_smtp_server.port

    first = start_worker(tmp_path, smtp_port)
    try:
        assert stalling_smtp_server.stalled.wait(timeout=90), first.output()
        first.kill()  # while it waits for the server's answer to the 75th message
    finally:
        first.stop()
    stalling_smtp_server.release.set()

    assert len(stalling_smtp_server.envelopes) == 74
    assert statuses() == {"sent": 74, "sending": 26, "queued": 20}, "the worker must die in the middle of a batch"

    lease = 2
    second = start_worker(tmp_path, smtp_port, OUTBOX_LEASE_SECONDS=str(lease))
    try:
        # What beat does every minute, once the dead worker's lease has run out.
        wait_for(
            lambda: (
                not OutboundEmail.objects.filter(
                    status="sending", claimed_at__gt=Now() - timedelta(seconds=lease)
                ).exists()
            )
        )
        outbox_send.delay()
        wait_for(lambda: statuses() == {"sent": 120}, timeout=90, worker=second)
    finally:
        second.stop()

    messages = stalling_smtp_server.messages
    assert len(messages) == OutboundEmail.objects.count() == 120
    delivered = Counter(outbox_id(message) for message in messages)
    assert set(delivered) == set(emails) and max(delivered.values()) == 1
    for message in messages:
        contact = emails[outbox_id(message)]
        assert message["To"] == contact.email
        assert message["Subject"] == f"Hi {contact.first_name}, a guide for {contact.account.name}"
        assert message.get_body(("plain",)).get_content().startswith(f"Hello {contact.first_name},")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The killed worker's batch was attempted twice, everything else once.
    assert Counter(OutboundEmail.objects.values_list("attempts", flat=True)) == {1: 94, 2: 26}
