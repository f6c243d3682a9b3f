"""Nurture sequences: who enters, when each step is due, what is sent, who leaves.

The schedule lives in the database (Enrolment.next_due_at); a beat task advances due
enrolments. Each (enrolment, step) is recorded once (StepSend is unique) in the same
transaction as the outbox row it creates, under a row lock on the enrolment, so a step
is never mailed twice even when two workers run the task at once.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from decimal import Decimal

import markdown
import nh3
from django.db import connection, transaction
from django.db.models import QuerySet, Value
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone
from django.utils.html import escape

from leads.models import ConsentStatus, Contact, LifecycleStage
from scoring.engine import fit_test
from scoring.selectors import scoring_profiles

from .models import Enrolment, Sequence, SequenceStep, StepSend, Suppression
from .services import email_enqueue_message

MERGE_FIELD = re.compile(r"{{\s*([a-z_][a-z0-9_.]*)\s*(?:\|\s*([^}]*?)\s*)?}}")
MERGE_SOURCES = {"first_name", "last_name", "full_name", "email", "job_title", "company", "country", "city"}
SOLD_STAGES = {LifecycleStage.SQL, LifecycleStage.OPPORTUNITY, LifecycleStage.CUSTOMER}
NO_EMAIL = {ConsentStatus.UNSUBSCRIBED, ConsentStatus.DO_NOT_EMAIL}


# --- who enters ---------------------------------------------------------------------------


def segment_contacts(sequence: Sequence) -> QuerySet[Contact]:
    """Contacts the sequence's segment selects (conditions on attributes are checked in Python)."""
    contacts = (
        Contact.objects.exclude(email__isnull=True)
        .exclude(email="")
        .exclude(email_consent_status__in=NO_EMAIL)
        .annotate(email_lower=Lower("email"))
        .exclude(email_lower__in=Suppression.objects.values("address"))
    )
    if sequence.entry_stages:
        contacts = contacts.filter(lifecycle_stage__in=sequence.entry_stages)
    # The score itself, not the contact's copy: that is kept only for the queue (MQLs).
    # A contact not scored yet counts as 0 points and no grade.
    if sequence.entry_grades:
        contacts = contacts.filter(score__fit_grade__in=sequence.entry_grades)
    if sequence.entry_min_score is not None or sequence.entry_max_score is not None:
        contacts = contacts.annotate(current_score=Coalesce("score__total", Value(Decimal(0))))
    if sequence.entry_min_score is not None:
        contacts = contacts.filter(current_score__gte=sequence.entry_min_score)
    if sequence.entry_max_score is not None:
        contacts = contacts.filter(current_score__lte=sequence.entry_max_score)
    if sequence.entry_sources:
        contacts = contacts.filter(lead_source__in=sequence.entry_sources)
    return contacts


def _meets_conditions(conditions: list[dict], profile: dict) -> bool:
    return all(fit_test(c["operator"], c.get("value"), profile.get(c["field"]), profile)[0] for c in conditions)


def sequences_enrol_segments(*, batch: int = 2000) -> int:
    """Beat: enrol every contact that entered an active segment sequence and was never in it."""
    enrolled = 0
    for sequence in Sequence.objects.filter(status=Sequence.Status.ACTIVE, entry=Sequence.Entry.SEGMENT):
        candidates = segment_contacts(sequence).exclude(enrolments__sequence=sequence)
        ids = list(candidates.values_list("id", flat=True)[:batch])
        if sequence.entry_conditions:
            profiles = scoring_profiles(ids)
            ids = [i for i in ids if _meets_conditions(sequence.entry_conditions, profiles[i])]
        enrolled += _enrol_many(sequence, ids, source="segment")
    return enrolled


def enrol_contact(*, sequence: Sequence, contact: Contact, source: str = "manual") -> Enrolment | None:
    """Enrol one contact (manual or an event); None when they are already in it or cannot be emailed."""
    if not contact.email or contact.email_consent_status in NO_EMAIL:
        return None
    if _enrol_many(sequence, [contact.pk], source=source):
        return Enrolment.objects.get(sequence=sequence, contact=contact, status=Enrolment.Status.ACTIVE)
    return None


def enrol_on_rejection(*, contact: Contact, reason: str) -> int:
    """Sales rejected the lead: active sequences whose entry event is this reason take it in."""
    sequences = Sequence.objects.filter(
        status=Sequence.Status.ACTIVE, entry=Sequence.Entry.EVENT, entry_reject_reason=reason
    )
    return sum(1 for sequence in sequences if enrol_contact(sequence=sequence, contact=contact, source="event"))


def _enrol_many(sequence: Sequence, contact_ids: list[int], *, source: str) -> int:
    first = sequence.steps.order_by("position").first()
    if not contact_ids or first is None:
        return 0
    now = timezone.now()
    due = now + step_delay(first)
    rows = [
        Enrolment(
            sequence=sequence,
            contact_id=cid,
            source=source,
            enrolled_at=now,
            next_position=first.position,
            next_due_at=due,
        )
        for cid in contact_ids
    ]
    before = Enrolment.objects.filter(sequence=sequence, status=Enrolment.Status.ACTIVE).count()
    Enrolment.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)  # one active enrolment each
    return Enrolment.objects.filter(sequence=sequence, status=Enrolment.Status.ACTIVE).count() - before


def step_delay(step: SequenceStep) -> timedelta:
    unit = {"hours": timedelta(hours=1), "days": timedelta(days=1)}[step.delay_unit]
    return step.delay_amount * unit


# --- who leaves -------------------------------------------------------------------------------


def enrolments_exit(*, contact: Contact, reason: str, only: str | None = None) -> int:
    """End the contact's active enrolments (all, or those whose sequence exits on `only`)."""
    return enrolments_exit_many(contact_ids=[contact.pk], reason=reason, only=only)


def enrolments_exit_many(*, contact_ids: list[int], reason: str, only: str | None = None) -> int:
    """enrolments_exit for many contacts in one statement."""
    if connection.vendor == "postgresql":
        return _enrolments_exit_in_sql(contact_ids, reason, only)
    enrolments = Enrolment.objects.filter(contact_id__in=contact_ids, status=Enrolment.Status.ACTIVE)
    if only:
        enrolments = enrolments.filter(**{f"sequence__{only}": True})
    return enrolments.update(
        status=Enrolment.Status.EXITED, exited_at=timezone.now(), exit_reason=reason, next_due_at=None
    )


def _enrolments_exit_in_sql(contact_ids: list[int], reason: str, only: str | None) -> int:
    """enrolments_exit_many in plain SQL: every new MQL of an ingest that scores runs it, where
    building the ORM's query took longer than running it."""
    sequences = ""
    if only:
        column = Sequence._meta.get_field(only).column
        sequences = f"AND e.sequence_id IN (SELECT id FROM {Sequence._meta.db_table} WHERE {column})"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Enrolment._meta.db_table} e SET status = %s, exited_at = %s, exit_reason = %s, "
            f"next_due_at = NULL WHERE e.contact_id = ANY(%s) AND e.status = %s {sequences}",
            [Enrolment.Status.EXITED, timezone.now(), reason, list(contact_ids), Enrolment.Status.ACTIVE],
        )
        return cursor.rowcount


def _exit_reason(enrolment: Enrolment, contact: Contact) -> str:
    """Why the contact must leave now, or ''. Checked at send time, so no exit is ever missed."""
    sequence = enrolment.sequence
    if not contact.email:
        return "no email address"
    if contact.email_consent_status in NO_EMAIL:
        return "unsubscribed"
    if sequence.exit_on_mql and contact.lifecycle_stage == LifecycleStage.MQL:
        return "became an MQL"
    if sequence.exit_on_sql and contact.lifecycle_stage in SOLD_STAGES:
        return "accepted by sales"
    return ""


# --- sending ------------------------------------------------------------------------------------


def enrolments_advance_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """Beat: send (or skip) every due step; returns how many enrolments moved."""
    now = now or timezone.now()
    due = list(
        Enrolment.objects.filter(status=Enrolment.Status.ACTIVE, next_due_at__lte=now)
        .order_by("next_due_at")
        .values_list("id", flat=True)[:limit]
    )
    return sum(1 for enrolment_id in due if _advance(enrolment_id, now))


@transaction.atomic
def _advance(enrolment_id: int, now: datetime) -> bool:
    enrolment = (
        Enrolment.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("sequence", "contact__account")
        .filter(pk=enrolment_id)
        .first()
    )
    if enrolment is None or enrolment.status != Enrolment.Status.ACTIVE or enrolment.next_due_at > now:
        return False  # another worker has it, or it moved meanwhile
    reason = _exit_reason(enrolment, enrolment.contact)
    if reason:
        return _finish(enrolment, Enrolment.Status.EXITED, reason, now)
    step = enrolment.sequence.steps.filter(position__gte=enrolment.next_position).order_by("position").first()
    if step is None:
        return _finish(enrolment, Enrolment.Status.COMPLETED, "", now)
    window_opens = next_window_start(step, now)
    if window_opens > now:
        enrolment.next_due_at = window_opens
        enrolment.save(update_fields=["next_due_at"])
        return True
    _send_step(enrolment, step)
    _schedule_next(enrolment, step, now)
    return True


def _send_step(enrolment: Enrolment, step: SequenceStep) -> None:
    send, created = StepSend.objects.get_or_create(enrolment=enrolment, step=step)
    if not created:
        return  # already done for this enrolment
    contact = enrolment.contact
    if step.skip_condition and _meets_conditions([step.skip_condition], scoring_profiles([contact.pk])[contact.pk]):
        send.skipped = True
        send.save(update_fields=["skipped"])
        return
    label, subject, body = choose_variant(step, enrolment.pk)
    rendered = render_message(subject, body, contact)
    email = email_enqueue_message(
        key=f"nurture:{enrolment.pk}:{step.pk}", to=contact.email, contact=contact, marketing=True, **rendered
    )
    from .compliance import prepare_marketing_email

    prepare_marketing_email(email)
    send.variant, send.email = label, email
    send.save(update_fields=["variant", "email"])


def _schedule_next(enrolment: Enrolment, step: SequenceStep, now: datetime) -> None:
    following = enrolment.sequence.steps.filter(position__gt=step.position).order_by("position").first()
    if following is None:
        _finish(enrolment, Enrolment.Status.COMPLETED, "", now)
        return
    enrolment.next_position = following.position
    enrolment.next_due_at = now + step_delay(following)
    enrolment.save(update_fields=["next_position", "next_due_at"])


def _finish(enrolment: Enrolment, status: str, reason: str, now: datetime) -> bool:
    enrolment.status, enrolment.exit_reason, enrolment.exited_at, enrolment.next_due_at = status, reason, now, None
    enrolment.save(update_fields=["status", "exit_reason", "exited_at", "next_due_at"])
    return True


def next_window_start(step: SequenceStep, now: datetime) -> datetime:
    """`now` if it is inside the step's sending window, else when the window next opens (local time)."""
    local = timezone.localtime(now)
    for days_ahead in range(8):
        day = local + timedelta(days=days_ahead)
        if step.send_weekdays and day.weekday() not in step.send_weekdays:
            continue
        opens = day.replace(hour=step.send_hour_from or 0, minute=0, second=0, microsecond=0)
        closes = day.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=step.send_hour_to or 24)
        if days_ahead == 0 and opens <= local < closes:
            return now
        if local < opens:
            return opens
    return now  # a window that never opens would block the sequence: send rather than stall


def choose_variant(step: SequenceStep, enrolment_id: int) -> tuple[str, str, str]:
    """A stable random split: the same enrolment always lands on the same variant."""
    variants = [("A", step.subject, step.body, 50)] + [
        (v.label, v.subject, v.body, v.weight) for v in step.variants.all()
    ]
    total = sum(weight for *_, weight in variants)
    if total <= 0:
        return variants[0][:3]
    point = int(hashlib.sha256(f"{enrolment_id}:{step.pk}".encode()).hexdigest(), 16) % total
    for label, subject, body, weight in variants:
        if point < weight:
            return label, subject, body
        point -= weight
    return variants[0][:3]


# --- rendering -----------------------------------------------------------------------------------


def merge_values(contact: Contact) -> dict[str, str]:
    return {
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "full_name": contact.full_name,
        "email": contact.email or "",
        "job_title": contact.job_title,
        "company": contact.account.name if contact.account_id else "",
        "country": contact.country,
        "city": contact.city,
    }


def fill_merge_fields(text: str, values: dict[str, str], *, html: bool) -> str:
    """{{ first_name | there }} → the contact's first name, or "there" when it is empty."""

    def replace(match: re.Match) -> str:
        value = values.get(match.group(1), "") or (match.group(2) or "")
        return escape(value) if html else value

    return MERGE_FIELD.sub(replace, text)


def render_message(subject: str, body: str, contact: Contact) -> dict[str, str]:
    """Subject, plain text and sanitised HTML of a step for one contact."""
    values = merge_values(contact)
    html = markdown.markdown(fill_merge_fields(body, values, html=True), extensions=["extra"])
    return {
        "subject": fill_merge_fields(subject, values, html=False),
        "body_text": fill_merge_fields(body, values, html=False),
        "body_html": nh3.clean(html, link_rel="noopener noreferrer"),
    }


def merge_field_errors(text: str) -> list[str]:
    return sorted(
        {f"Unknown merge field {{{{ {name} }}}}" for name, _ in MERGE_FIELD.findall(text) if name not in MERGE_SOURCES}
    )
