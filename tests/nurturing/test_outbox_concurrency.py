"""Two workers draining one outbox at the same time send every email exactly once."""

import threading
from collections import Counter

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from nurturing.models import OutboundEmail
from nurturing.services import outbox_send_due


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_workers_send_each_email_once():
    OutboundEmail.objects.bulk_create(
        OutboundEmail(
            key=f"k{n}", to=f"p{n}@example.com", subject=f"S{n}", body_text="b", next_attempt_at=timezone.now()
        )
        for n in range(300)
    )
    barrier = threading.Barrier(2)

    def worker():
        try:
            barrier.wait(timeout=10)
            outbox_send_due()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    delivered = Counter(message.extra_headers["Message-ID"] for message in mail.outbox)
    assert len(delivered) == 300 and max(delivered.values()) == 1
    assert OutboundEmail.objects.filter(status="sent").count() == 300


@pytest.mark.django_db
def test_emails_queued_in_one_transaction_queue_one_send_task(django_capture_on_commit_callbacks):
    from django.db import transaction

    from nurturing.services import email_enqueue_message

    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        for n in range(3):
            email_enqueue_message(key=f"once-{n}", to=f"p{n}@example.com", subject="s", body_text="b")

    assert len(callbacks) == 1
    assert OutboundEmail.objects.filter(key__startswith="once-").count() == 3


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_emails_queued_while_a_send_task_waits_queue_no_other(monkeypatch):
    from django.core.cache import cache
    from django.db import transaction

    from nurturing import tasks
    from nurturing.services import OUTBOX_SEND_QUEUED_FLAG, email_enqueue_message

    # Counted, not sent to the broker: what is checked is how many tasks would be queued.
    queued = []
    monkeypatch.setattr(tasks.outbox_send, "apply_async", lambda **options: queued.append("outbox_send"))
    cache.delete(OUTBOX_SEND_QUEUED_FLAG)

    for n in range(3):  # one committed transaction each, as a nurture run sends its steps
        with transaction.atomic():
            email_enqueue_message(key=f"burst-{n}", to=f"p{n}@example.com", subject="s", body_text="b")
    assert queued == ["outbox_send"]

    assert tasks.outbox_send() == 3  # the task runs: it sends all three
    with transaction.atomic():
        email_enqueue_message(key="after", to="late@example.com", subject="s", body_text="b")
    assert queued == ["outbox_send", "outbox_send"]  # committed after the task started: a task of its own
    cache.delete(OUTBOX_SEND_QUEUED_FLAG)
