"""Outbox leases: rows a dead worker left "sending" go back to the queue once their lease
expires; nothing else is ever handed out twice."""

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.utils import timezone

from nurturing.models import OutboundEmail
from nurturing.services import MAX_ATTEMPTS, email_enqueue_message, outbox_leases_expire, outbox_send_due

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def lease(settings):
    settings.OUTBOX_LEASE_SECONDS = 60
    return timedelta(seconds=60)


def queued_email(key="lease-1"):
    return email_enqueue_message(key=key, to=f"{key}@example.com", subject=f"Subject {key}", body_text="Body")


def left_by_a_worker(email, *, claimed_ago: timedelta, status="sending", attempts=1):
    """The row as a worker left it when it claimed the row `claimed_ago` and then stopped."""
    OutboundEmail.objects.filter(pk=email.pk).update(
        status=status, claimed_at=timezone.now() - claimed_ago, claimed_by="worker-1", attempts=attempts
    )


def test_an_expired_lease_goes_back_to_the_queue_and_is_sent_by_the_next_worker(lease):
    email = queued_email()
    left_by_a_worker(email, claimed_ago=lease + timedelta(seconds=1))

    assert outbox_leases_expire() == 1

    email.refresh_from_db()
    assert (email.status, email.attempts, email.claimed_by) == ("queued", 1, "")
    assert email.error == "the lease of worker-1 expired before it recorded a result"
    assert outbox_send_due() == 1
    [message] = mail.outbox
    assert message.extra_headers["Message-ID"].startswith(f"<outbox-{email.pk}@")
    email.refresh_from_db()
    assert (email.status, email.attempts, email.error) == ("sent", 2, "")


def test_a_lease_that_has_not_expired_is_left_alone(lease):
    email = queued_email()
    left_by_a_worker(email, claimed_ago=lease - timedelta(seconds=5))

    assert outbox_leases_expire() == 0
    assert outbox_send_due() == 0

    email.refresh_from_db()
    assert (email.status, email.claimed_by) == ("sending", "worker-1")
    assert mail.outbox == []


@pytest.mark.parametrize("status", ["sent", "failed", "skipped"])
def test_a_finished_email_is_never_sent_again_however_old_its_lease(status):
    email = queued_email()
    left_by_a_worker(email, claimed_ago=timedelta(days=3), status=status)

    assert outbox_leases_expire() == 0
    assert outbox_send_due() == 0

    email.refresh_from_db()
    assert email.status == status
    assert mail.outbox == []


def test_an_email_whose_worker_died_every_time_is_failed_not_retried_forever(lease):
    email = queued_email()
    left_by_a_worker(email, claimed_ago=lease * 2, attempts=MAX_ATTEMPTS)

    assert outbox_leases_expire() == 0

    email.refresh_from_db()
    assert email.status == "failed"
    assert f"gave up after {MAX_ATTEMPTS} attempts" in email.error
    assert outbox_send_due() == 0 and mail.outbox == []


class LeaseTakenOverBackend(EmailBackend):
    """Delivers like the test backend; while the first message goes out, the worker's lease
    expires and another worker takes its rows over (what a worker paused for longer than
    OUTBOX_LEASE_SECONDS would find when it resumes)."""

    def send_messages(self, messages):
        OutboundEmail.objects.filter(status="sending").update(claimed_by="worker-2")
        return super().send_messages(messages)


def test_a_worker_that_lost_its_lease_sends_nothing_more_and_records_nothing(settings):
    emails = [queued_email(f"taken-{n}") for n in range(3)]
    settings.EMAIL_BACKEND = f"{__name__}.LeaseTakenOverBackend"

    outbox_send_due()

    assert len(mail.outbox) == 1  # the message in flight when the lease was lost; then it stopped
    statuses = set(OutboundEmail.objects.filter(pk__in=[e.pk for e in emails]).values_list("status", "claimed_by"))
    assert statuses == {("sending", "worker-2")}  # the new holder records the results


class SlowBackend(EmailBackend):
    """Delivers like the test backend, the first message only after a delay."""

    delay = 0.0

    def send_messages(self, messages):
        time.sleep(SlowBackend.delay)
        SlowBackend.delay = 0.0
        return super().send_messages(messages)


def test_a_batch_that_outlasts_half_its_lease_hands_its_unsent_rows_back(settings):
    settings.OUTBOX_LEASE_SECONDS = 1
    settings.EMAIL_BACKEND = f"{__name__}.SlowBackend"
    SlowBackend.delay = 0.6  # past half the lease: no further send may start under this lease
    emails = [queued_email(f"slow-{n}") for n in range(5)]

    assert outbox_send_due() == 5

    assert len(mail.outbox) == 5
    rows = OutboundEmail.objects.filter(pk__in=[e.pk for e in emails])
    # The four handed back were claimed again, not counted as failed attempts.
    assert sorted(rows.values_list("status", "attempts")) == [("sent", 1)] * 5
    assert rows.values("claimed_by").distinct().count() == 2
