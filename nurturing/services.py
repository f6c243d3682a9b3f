"""The outbox: queue an email in the caller's transaction, send it later, exactly once."""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import time
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import DatabaseError, transaction
from django.db import connection as db_connection
from django.db.models import F, Value
from django.db.models.functions import Concat, Now
from django.template.loader import render_to_string
from django.utils import timezone

from config.coalesce import task_queue_once

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
    email = OutboundEmail(
        key=key[:200],
        to=to,
        contact=contact,
        subject=subject[:300],
        body_text=body_text,
        body_html=body_html,
        headers=headers or {},
        marketing=marketing,
        next_attempt_at=timezone.now(),
    )
    if not _insert_new(email):
        return OutboundEmail.objects.get(key=email.key)  # queued before: once per key
    _send_after_commit()
    return email


def _insert_new(email: OutboundEmail) -> bool:
    """Insert the row unless its key is taken, in one statement (INSERT … ON CONFLICT DO
    NOTHING): no read first, no savepoint to recover from a duplicate. True, with its id
    set, if this call created it."""
    fields = [field for field in OutboundEmail._meta.concrete_fields if not field.primary_key]
    quote = db_connection.ops.quote_name
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(OutboundEmail._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
            f"VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT ({quote('key')}) DO NOTHING "
            f"RETURNING {quote(OutboundEmail._meta.pk.column)}",
            [field.get_db_prep_save(field.pre_save(email, add=True), db_connection) for field in fields],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    email.pk = row[0]
    email._state.adding, email._state.db = False, db_connection.alias
    return True


def _send_after_commit() -> None:
    """Queue one send task for any number of emails, after commit: a task drains every due
    email. Once per transaction (its on-commit list), and across transactions while a task
    waits in the queue (outbox_send_queue): a nurture run that sends 500 steps, each in its
    own transaction, queued 500 tasks, and on the filesystem broker of `make run` they held
    every other task (an event's scoring among them) back for minutes."""
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(func == outbox_send_queue for _, func, _ in connection.run_on_commit):
        return
    transaction.on_commit(outbox_send_queue)


OUTBOX_SEND_QUEUED_FLAG = "nurturing:outbox-send-queued"


def outbox_send_queue() -> None:
    """Make sure a send task is queued, coalesced (config.coalesce; beat queues a send every
    minute anyway)."""
    from .tasks import outbox_send

    task_queue_once(OUTBOX_SEND_QUEUED_FLAG, outbox_send)


CLAIM_BATCH = 50


def outbox_send_due(*, limit: int = 20_000, time_budget: float = 50.0) -> int:
    """Send due emails until none is due (or the budget is spent); returns how many were sent.

    A worker leases a batch of CLAIM_BATCH rows (SELECT … FOR UPDATE SKIP LOCKED, then
    "sending" with `claimed_at` and `claimed_by`, committed), so two workers never take the
    same row and never wait for each other. It sends each message outside any transaction
    and records its result before sending the next one: a worker killed mid-batch leaves
    one message unrecorded at most, the one in flight, and `outbox_leases_expire` returns it
    and the rest of the batch to the queue. That message goes out twice only if the server
    had accepted it just before the worker died, which SMTP gives no way to rule out; its
    Message-ID is stable, so the receiver can tell.

    A transient error puts a row back with a backoff; a permanent one, or too many
    attempts, marks it failed. Marketing email to a contact who opted out, or to a
    suppressed address, is marked skipped instead (see nurturing.compliance).
    """
    sent = processed = 0
    deadline = time.monotonic() + time_budget
    with get_connection() as connection, _commits_without_flush_wait():
        while processed < limit and time.monotonic() < deadline:
            lease = _lease_batch(CLAIM_BATCH)
            if not lease.emails:
                break
            sent += _send_leased(lease, connection)
            processed += len(lease.emails)
    return sent


def outbox_leases_expire() -> int:
    """Return rows whose lease expired to the queue (their worker died or stalled mid-batch);
    returns how many. The outbox_send task runs this before claiming.

    Safe next to live workers: a worker starts no send after half its lease (see
    _send_leased) and records a result only while it holds the lease. A row leased
    MAX_ATTEMPTS times is failed instead, so a message that kills its worker cannot do so
    forever. Conditional updates: safe to run twice or concurrently.
    """
    lease = timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    expired = OutboundEmail.objects.filter(status=OutboundEmail.Status.SENDING, claimed_at__lt=Now() - lease)
    # Clearing claimed_by ends the lease: its holder can no longer record a result.
    holder = Concat(Value("the lease of "), F("claimed_by"), Value(" expired"))
    failed = expired.filter(attempts__gte=MAX_ATTEMPTS).update(
        status=OutboundEmail.Status.FAILED,
        claimed_by="",
        error=Concat(Value(f"gave up after {MAX_ATTEMPTS} attempts: "), holder),
    )
    requeued = expired.update(
        status=OutboundEmail.Status.QUEUED,
        claimed_by="",
        next_attempt_at=Now(),
        error=Concat(holder, Value(" before it recorded a result")),
    )
    if failed or requeued:
        logger.warning("Outbox leases expired: %s emails requeued, %s failed", requeued, failed)
    return requeued


@contextmanager
def _commits_without_flush_wait():
    """On PostgreSQL, the outbox's leases and results are committed without waiting for the
    WAL flush to disk: one flush per email made make bench-nurture take 56.5 s instead of
    28.4 s. A killed worker loses nothing by this, since the server has the commit. Only a
    crash of the database server itself could forget the last fraction of a second (up to
    3 × wal_writer_delay), and emails sent in it would go out again."""
    if db_connection.vendor != "postgresql":
        yield
        return
    with db_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO OFF")
    try:
        yield
    finally:
        # A broken connection is discarded anyway, and must not hide the error that broke it.
        with suppress(DatabaseError), db_connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")


class _LeaseLost(Exception):
    """The row is no longer ours: its lease expired and was handed back to the queue."""


@dataclass
class _Lease:
    owner: str
    emails: list[OutboundEmail]
    send_until: float  # time.monotonic(): no send starts later, well inside the lease


def _lease_batch(size: int) -> _Lease:
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    # Taken before the claim, so it is earlier than the claimed_at the reaper will compare.
    send_until = time.monotonic() + settings.OUTBOX_LEASE_SECONDS / 2
    with transaction.atomic():
        emails = list(
            OutboundEmail.objects.select_for_update(skip_locked=True)
            .filter(status=OutboundEmail.Status.QUEUED, next_attempt_at__lte=timezone.now())
            .order_by("next_attempt_at", "id")[:size]
        )
        if not emails:
            return _Lease(owner, [], send_until)
        # The database's clock, as the reaper's: workers on other machines may drift.
        OutboundEmail.objects.filter(id__in=[email.pk for email in emails]).update(
            status=OutboundEmail.Status.SENDING, claimed_at=Now(), claimed_by=owner, attempts=F("attempts") + 1
        )
    for email in emails:  # what the UPDATE wrote: the rows were locked, so rather than read them again
        email.status, email.claimed_by, email.attempts = OutboundEmail.Status.SENDING, owner, email.attempts + 1
    return _Lease(owner, emails, send_until)


def _send_leased(lease: _Lease, connection) -> int:
    """Send a leased batch in order, each result recorded before the next send; returns how
    many the server accepted."""
    sent = 0
    for position, email in enumerate(lease.emails):
        if time.monotonic() > lease.send_until:  # a slow server: hand the rest back, unattempted
            unsent = [email.pk for email in lease.emails[position:]]
            OutboundEmail.objects.filter(
                pk__in=unsent, status=OutboundEmail.Status.SENDING, claimed_by=lease.owner
            ).update(status=OutboundEmail.Status.QUEUED, attempts=F("attempts") - 1)
            break
        try:
            sent += _send_one(email, connection)
        except _LeaseLost:
            logger.error("Outbox lease on email %s expired while it was being sent; stopping this batch", email.pk)
            break
    return sent


def _send_one(email: OutboundEmail, connection) -> bool:
    """Send one leased email and record the result; True when the server accepted it."""
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
    _mark_sent(email)
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
    """Record a result, only while this worker still holds the row's lease: claimed_by is
    unique to a lease and cleared when it expires. (Matched by id and holder only, so the
    database finds the row by its primary key whatever its statistics say about status.)"""
    updated = OutboundEmail.objects.filter(pk=email.pk, claimed_by=email.claimed_by).update(status=status, **fields)
    if not updated:
        raise _LeaseLost(email.pk)


def _mark_sent(email: OutboundEmail) -> None:
    """_mark for the result recorded once per email sent, in plain SQL: with the ORM's
    query building, make bench-nurture took 45.7 s instead of 32.0 s."""
    table = db_connection.ops.quote_name(OutboundEmail._meta.db_table)
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, sent_at = %s, error = '' WHERE id = %s AND claimed_by = %s",
            [OutboundEmail.Status.SENT, timezone.now(), email.pk, email.claimed_by],
        )
        if cursor.rowcount != 1:
            raise _LeaseLost(email.pk)


def _message_id(email: OutboundEmail) -> str:
    """Stable per outbox row, so a receiver can tell a resend from a new message."""
    domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip(">") or "localhost"
    return f"<outbox-{email.pk}@{domain}>"
