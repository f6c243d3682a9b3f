"""The outbox: queue an email in the caller's transaction, send it later, exactly once."""

from __future__ import annotations

import logging
import smtplib
import time
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from .models import OutboundEmail

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 6


def email_enqueue(*, key: str, to: str, template: str, context: dict, contact=None, headers=None) -> OutboundEmail:
    """Render `template`-subject.txt, -body.txt and -body.html and queue the message once per key."""
    subject = " ".join(render_to_string(f"{template}-subject.txt", context).split())
    return email_enqueue_message(
        key=key,
        to=to,
        subject=subject,
        body_text=render_to_string(f"{template}-body.txt", context),
        body_html=render_to_string(f"{template}-body.html", context),
        contact=contact,
        headers=headers,
    )


def email_enqueue_message(
    *,
    key: str,
    to: str,
    subject: str,
    body_text: str,
    body_html: str = "",
    contact=None,
    headers=None,
    marketing: bool = False,
) -> OutboundEmail:
    """Queue an already rendered message once per key; the send task is queued after the
    caller's transaction commits."""
    from .tasks import outbox_send

    email, created = OutboundEmail.objects.get_or_create(
        key=key[:200],
        defaults={
            "to": to,
            "contact": contact,
            "subject": subject[:300],
            "body_text": body_text,
            "body_html": body_html,
            "headers": headers or {},
            "marketing": marketing,
            "next_attempt_at": timezone.now(),
        },
    )
    if created:
        _send_after_commit(outbox_send)
    return email


def _send_after_commit(task) -> None:
    """Queue one send task per transaction, not one per email: a task drains every due
    email, so a rescore that routes 300 MQLs needs one, not 300."""
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(func == task.delay for _, func, _ in connection.run_on_commit):
        return
    transaction.on_commit(task.delay)


CLAIM_BATCH = 50


def outbox_send_due(*, limit: int = 20_000, time_budget: float = 50.0) -> int:
    """Send due emails until none is due (or the budget is spent); returns how many were sent.

    Workers claim batches of CLAIM_BATCH with SELECT … FOR UPDATE SKIP LOCKED and mark them
    "sending" in the same short transaction, so two workers never take the same row and
    never wait for each other; each message is then sent outside any transaction. A
    worker that dies holds at most one batch in "sending". A transient error puts a row
    back with a backoff; a permanent one, or too many attempts, marks it failed.
    Marketing email to a contact who opted out, or to a suppressed address, is marked
    skipped instead (see nurturing.compliance).
    """
    sent = processed = 0
    deadline = time.monotonic() + time_budget
    with get_connection() as connection:
        while processed < limit and time.monotonic() < deadline:
            batch = _claim_batch(CLAIM_BATCH)
            if not batch:
                break
            accepted = [email.pk for email in batch if _send_one(email, connection)]
            _mark_sent(accepted)
            sent += len(accepted)
            processed += len(batch)
    return sent


def _claim_batch(size: int) -> list[OutboundEmail]:
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            OutboundEmail.objects.select_for_update(skip_locked=True)
            .filter(status=OutboundEmail.Status.QUEUED, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id")
            .values_list("id", flat=True)[:size]
        )
        if not ids:
            return []
        OutboundEmail.objects.filter(id__in=ids, status=OutboundEmail.Status.QUEUED).update(
            status=OutboundEmail.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
        )
    return list(OutboundEmail.objects.filter(id__in=ids, status=OutboundEmail.Status.SENDING).order_by("id"))


def _send_one(email: OutboundEmail, connection) -> bool:
    """Send one claimed email; True when the server accepted it (the caller records that).
    Failures and skips are recorded here."""
    if email.marketing:
        from .compliance import suppression_reason  # compliance builds on this module

        # Checked now rather than when queued, so an unsubscribe stops emails already queued.
        reason = suppression_reason(email)
        if reason:
            _mark(email, OutboundEmail.Status.SKIPPED, error=reason)
            return False
    message = EmailMultiAlternatives(
        subject=email.subject,
        body=email.body_text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[email.to],
        headers={"Message-ID": _message_id(email), **email.headers},
        connection=connection,
    )
    if email.body_html:
        message.attach_alternative(email.body_html, "text/html")
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as error:
        if _is_permanent(error):
            _mark(email, OutboundEmail.Status.FAILED, error=f"{type(error).__name__}: {error}")
        elif email.attempts >= MAX_ATTEMPTS:
            _mark(email, OutboundEmail.Status.FAILED, error=f"gave up after {email.attempts} attempts: {error}")
        else:
            backoff = timedelta(seconds=30 * 2 ** (email.attempts - 1))
            _mark(email, OutboundEmail.Status.QUEUED, error=str(error), next_attempt_at=timezone.now() + backoff)
        logger.warning("Sending email %s failed: %s", email.pk, error)
        return False
    return True


def _is_permanent(error: Exception) -> bool:
    """A 5xx reply about this message (its sender, recipient or content) will not change on
    retry; a 4xx (greylisting, a full queue) or a lost connection may."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return error.smtp_code >= 500
    return isinstance(error, smtplib.SMTPNotSupportedError)


def _mark(email: OutboundEmail, status: str, **fields) -> None:
    OutboundEmail.objects.filter(pk=email.pk, status=OutboundEmail.Status.SENDING).update(status=status, **fields)


def _mark_sent(email_ids: list[int]) -> None:
    """One UPDATE for a batch's successful sends: per-email round trips were most of the
    outbox's time. A worker that dies mid-batch strands at most this batch in "sending",
    as the batch claim already could."""
    if email_ids:
        OutboundEmail.objects.filter(pk__in=email_ids, status=OutboundEmail.Status.SENDING).update(
            status=OutboundEmail.Status.SENT, sent_at=timezone.now(), error=""
        )


def _message_id(email: OutboundEmail) -> str:
    """Stable per outbox row, so a receiver can tell a resend from a new message."""
    domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip(">") or "localhost"
    return f"<outbox-{email.pk}@{domain}>"
