"""Writes to the CRM core. Views, API, tasks and commands all come through here."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.bulk import bulk_insert, models_where

from .models import Account, Activity, ActivityType, Contact, LifecycleStage, Outcome, StageChange
from .normalise import normalise_domain, normalise_email
from .selectors import contact_ids_by_email, contacts_by_email

DEADLOCK_RETRIES = 3

CONTACT_FIELDS = frozenset(
    """first_name last_name job_title seniority department phone country city lead_source
    utm_source utm_medium utm_campaign utm_term utm_content email_consent_status
    email_consent_at email_consent_source""".split()
)
ACCOUNT_FIELDS = frozenset("name domain industry employee_count annual_revenue country".split())


# --- accounts -------------------------------------------------------------------------


def account_upsert(*, name: str = "", domain: str | None = None, **fields: Any) -> Account:
    """Find the account by normalised domain (else by name, case-insensitively) and update it.

    Safe under concurrency: a racing insert of the same domain is caught and re-read.
    """
    domain = normalise_domain(domain)
    fields = {key: value for key, value in fields.items() if key in ACCOUNT_FIELDS and value not in (None, "")}
    account = _find_account(name=name, domain=domain)
    if account is None:
        try:
            with transaction.atomic():
                return Account.objects.create(name=name or domain or "Unnamed account", domain=domain, **fields)
        except IntegrityError:
            account = _find_account(name=name, domain=domain)
    changed = _assign(account, {"name": name, **fields} if name else fields)
    if domain and account.domain != domain:
        account.domain = domain
        changed.append("domain")
    if changed:
        account.save(update_fields=[*changed, "updated_at"])
    return account


def _find_account(*, name: str, domain: str | None) -> Account | None:
    if domain:
        return Account.objects.filter(domain=domain).first()
    if name:
        return Account.objects.filter(name__iexact=name).order_by("pk").first()
    return None


# --- contacts -------------------------------------------------------------------------


class ContactConflict(ValueError):
    """The email and the external id given belong to two different contacts."""


@dataclass
class UpsertResult:
    contact: Contact
    created: bool


def contact_upsert(
    *,
    email: str | None = None,
    external_id: str | None = None,
    account: Account | None = None,
    attributes: dict[str, Any] | None = None,
    lifecycle_stage: str | None = None,
    changed_by: AbstractBaseUser | None = None,
    **fields: Any,
) -> UpsertResult:
    """Create a contact, or update the one that already has this external id or email.

    Matching order: external id, then email (case-insensitive); ContactConflict when the
    two name different contacts. Empty values never overwrite stored ones, so a sparse
    update cannot erase data. Attributes are merged. A race with another insert of the
    same key is caught and turned into an update.
    """
    email = normalise_email(email)
    external_id = (external_id or "").strip() or None
    if not email and not external_id:
        raise ValueError("A contact needs an email or an external id.")
    values = {key: value for key, value in fields.items() if key in CONTACT_FIELDS and value not in (None, "")}
    attributes = {key: value for key, value in (attributes or {}).items() if value not in (None, "")}
    contact = _find_contact(email=email, external_id=external_id)
    if contact is None:
        try:
            with transaction.atomic():
                # Created straight in its stage: one "created" transition, not lead → stage.
                contact = Contact.objects.create(
                    email=email,
                    external_id=external_id,
                    account=account,
                    attributes=attributes or {},
                    **values,
                    **({"lifecycle_stage": lifecycle_stage} if lifecycle_stage else {}),
                    # Created in the queue (an import of MQLs): it waits from now.
                    **({"mql_at": timezone.now()} if lifecycle_stage == LifecycleStage.MQL else {}),
                )
                stage_change_record(
                    contact=contact,
                    from_stage="",
                    to_stage=contact.lifecycle_stage,
                    changed_by=changed_by,
                    rule="created",
                )
        except IntegrityError:
            contact = _find_contact(email=email, external_id=external_id)
            if contact is None:
                raise
        else:
            return UpsertResult(contact=contact, created=True)
    _update_contact(
        contact, email=email, external_id=external_id, account=account, attributes=attributes, values=values
    )
    if lifecycle_stage and lifecycle_stage != contact.lifecycle_stage:
        contact_set_stage(contact=contact, to_stage=lifecycle_stage, changed_by=changed_by, rule="update")
    return UpsertResult(contact=contact, created=False)


@transaction.atomic
def contact_update(*, contact: Contact, changed_by=None, **fields: Any) -> Contact:
    """Apply an explicit edit: unlike an upsert, a blank value here does clear the field."""
    stage = fields.pop("lifecycle_stage", None)
    if "email" in fields:
        fields["email"] = normalise_email(fields["email"])
    if "external_id" in fields:
        fields["external_id"] = (fields["external_id"] or "").strip() or None
    if "attributes" in fields:
        fields["attributes"] = {**contact.attributes, **(fields["attributes"] or {})}
    editable = CONTACT_FIELDS | {"email", "external_id", "account", "attributes", "owner"}
    changed = _assign(contact, {key: value for key, value in fields.items() if key in editable})
    if changed:
        contact.save(update_fields=[*changed, "updated_at"])
    if stage and stage != contact.lifecycle_stage:
        contact_set_stage(contact=contact, to_stage=stage, changed_by=changed_by, rule="manual edit")
    return contact


def _find_contact(*, email: str | None, external_id: str | None) -> Contact | None:
    by_external_id = Contact.objects.filter(external_id=external_id).first() if external_id else None
    by_email = contacts_by_email([email]).first() if email else None
    if by_external_id and by_email and by_external_id.pk != by_email.pk:
        raise ContactConflict("Another contact already has this email; its external id differs.")
    return by_external_id or by_email


def _update_contact(contact, *, email, external_id, account, attributes, values) -> None:
    changed = _assign(contact, values)
    if email and not contact.email:
        contact.email = email
        changed.append("email")
    if external_id and not contact.external_id:
        contact.external_id = external_id
        changed.append("external_id")
    if account is not None and contact.account_id != account.pk:
        contact.account = account
        changed.append("account")
    if attributes:
        merged = {**contact.attributes, **attributes}
        if merged != contact.attributes:
            contact.attributes = merged
            changed.append("attributes")
    if changed:
        contact.save(update_fields=[*changed, "updated_at"])


def _assign(instance, values: dict[str, Any]) -> list[str]:
    changed = []
    for key, value in values.items():
        if getattr(instance, key) != value:
            setattr(instance, key, value)
            changed.append(key)
    return changed


# --- lifecycle ------------------------------------------------------------------------


def stage_change_record(
    *,
    contact: Contact,
    from_stage: str,
    to_stage: str,
    changed_by=None,
    rule: str = "",
    reason: str = "",
    changed_at: datetime | None = None,
) -> StageChange:
    return StageChange.objects.create(
        contact=contact,
        from_stage=from_stage,
        to_stage=to_stage,
        changed_at=changed_at or timezone.now(),
        changed_by=changed_by,
        rule=rule,
        reason=reason[:500],
    )


def contact_set_stage(
    *,
    contact: Contact,
    to_stage: str,
    changed_by=None,
    rule: str = "",
    reason: str = "",
    changed_at: datetime | None = None,
) -> StageChange | None:
    """Move a contact to `to_stage` and record the transition; a no-op if already there.

    Locks the contact row so that two concurrent transitions are serialised and each
    records the stage it really came from.
    """
    changes = contacts_set_stage(
        transitions={contact.pk: (rule, reason)}, to_stage=to_stage, changed_by=changed_by, changed_at=changed_at
    )
    if changes:
        contact.lifecycle_stage = to_stage
    return changes[0] if changes else None


# No savepoint inside a caller's transaction (two round trips each time a lead qualifies):
# a failure here undoes the caller's work too, and no caller goes on after one.
@transaction.atomic(savepoint=False)
def contacts_set_stage(
    *,
    transitions: dict[int, tuple[str, str]],
    to_stage: str,
    changed_by=None,
    changed_at: datetime | None = None,
    locked_stages: dict[int, str] | None = None,
) -> list[StageChange]:
    """contact_set_stage for many contacts in three statements: {contact id: (rule, reason)}.
    Returns the transitions recorded, in contact order (none for a contact already there).

    `locked_stages`: {contact id: stage} that the caller read after locking these contacts in
    this transaction (a rescore does): they cannot have changed, so they are not read again."""
    ids = sorted(transitions)
    if locked_stages is None:
        current = (
            Contact.objects.select_for_update(no_key=True)
            .filter(pk__in=ids)
            .exclude(lifecycle_stage=to_stage)
            .order_by("pk")
            .values_list("pk", "lifecycle_stage")
        )
    else:
        current = [(pk, locked_stages[pk]) for pk in ids if locked_stages[pk] != to_stage]
    at = changed_at or timezone.now()
    changes = [
        StageChange(
            contact_id=contact_id,
            from_stage=from_stage,
            to_stage=to_stage,
            changed_at=at,
            changed_by=changed_by,
            rule=transitions[contact_id][0],
            reason=transitions[contact_id][1][:500],
        )
        for contact_id, from_stage in current
    ]
    if changes:
        changed_ids = [c.contact_id for c in changes]
        if connection.vendor == "postgresql":
            _stages_write_in_sql(changed_ids, to_stage, at)
        else:
            Contact.objects.filter(pk__in=changed_ids).update(
                lifecycle_stage=to_stage, updated_at=timezone.now(), **_queue_entry(to_stage, at)
            )
        bulk_insert(StageChange, changes)
    return changes


def _stages_write_in_sql(contact_ids: list[int], to_stage: str, at: datetime) -> None:
    """The stage UPDATE of contacts_set_stage (with _queue_entry's clock and score copy) in
    plain SQL: a new MQL of an ingest that scores writes it, where building the ORM's query
    took longer than running it."""
    contact = Contact._meta.db_table
    with connection.cursor() as cursor:
        if to_stage != LifecycleStage.MQL:
            cursor.execute(
                f"UPDATE {contact} SET lifecycle_stage = %s, updated_at = %s WHERE id = ANY(%s)",
                [to_stage, timezone.now(), contact_ids],
            )
            return
        score = Contact._meta.get_field("score").related_model._meta.db_table  # leads does not import scoring
        cursor.execute(
            f"""UPDATE {contact} c SET lifecycle_stage = %s, updated_at = %s, mql_at = %s, sla_reminded_at = NULL,
                    score_total = coalesce(s.total, 0), score_fit_grade = coalesce(s.fit_grade, ''),
                    score_mql_level = coalesce(s.mql_level, '')
                FROM unnest(%s::bigint[]) AS ids(id) LEFT JOIN {score} s ON s.contact_id = ids.id
                WHERE c.id = ids.id""",
            [to_stage, timezone.now(), at, contact_ids],
        )


def _queue_entry(to_stage: str, at: datetime) -> dict[str, Any]:
    """Entering the queue (MQL), by any path, starts the lead's clock (its age in the queue,
    the hand-off SLA) and copies the current score's keys onto the contact: scoring keeps
    that copy current only for contacts in the queue (see Contact.score_total)."""
    if to_stage != LifecycleStage.MQL:
        return {}
    score_model = Contact._meta.get_field("score").related_model  # scoring's model; leads does not import scoring
    current = score_model.objects.filter(contact=OuterRef("pk"))
    return {
        "mql_at": at,
        "sla_reminded_at": None,
        "score_total": Coalesce(Subquery(current.values("total")), Value(Decimal(0))),
        "score_fit_grade": Coalesce(Subquery(current.values("fit_grade")), Value("")),
        "score_mql_level": Coalesce(Subquery(current.values("mql_level")), Value("")),
    }


# --- outcomes -------------------------------------------------------------------------


def outcome_record_imported(*, contact: Contact, converted: bool, occurred_at: datetime | None = None) -> Outcome:
    kind = Outcome.Kind.CONVERTED if converted else Outcome.Kind.NOT_CONVERTED
    outcome, _ = Outcome.objects.update_or_create(
        contact=contact,
        source=Outcome.Source.IMPORT,
        defaults={"kind": kind, "occurred_at": occurred_at or timezone.now()},
    )
    return outcome


# --- activity types -------------------------------------------------------------------


def activity_type_create(*, key: str, name: str, description: str = "") -> ActivityType:
    return ActivityType.objects.create(key=key, name=name, description=description, is_system=False)


# --- bulk activity ingest ---------------------------------------------------------------


@dataclass
class IngestEvent:
    """One validated event (see leads.api.IngestEventSerializer)."""

    index: int
    type_key: str
    occurred_at: datetime
    source: str
    external_id: str | None
    properties: dict[str, Any]
    email: str | None = None
    contact_external_id: str | None = None
    contact_id: int | None = None
    contact_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        if self.external_id:
            return self.external_id
        # No id from the source: the same event sent twice has the same fingerprint.
        identity = [
            self.contact_id,
            self.contact_external_id,
            self.email,
            self.type_key,
            self.occurred_at.isoformat(),
            self.properties,
        ]
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
        return f"fp:{digest[:40]}"


@dataclass
class IngestOutcome:
    index: int
    status: str  # "created" | "duplicate" | "error"
    activity_id: int | None = None
    contact_id: int | None = None
    errors: dict[str, Any] | None = None


@dataclass(slots=True)
class NewActivity:
    """An activity on its way in: what the insert and the scoring counters need, without the
    cost of a model instance per event."""

    contact_id: int
    type_id: int
    occurred_at: datetime
    properties: dict[str, Any]
    source: str
    external_id: str | None
    dedupe_key: str
    pk: int | None = None


def activities_ingest(*, events: list[IngestEvent], score_now: bool = False) -> list[IngestOutcome]:
    """Store a batch of validated events; each one is reported created or duplicate.

    Unknown contacts are created from the event's email (or contact external id). The
    insert uses ON CONFLICT DO NOTHING … RETURNING on (source, dedupe_key): only the rows
    this call inserted come back, so "created" vs "duplicate" is exact even when two calls race.

    The contacts' scores follow through a Celery drain after commit; `score_now` rescores
    them in this transaction instead, for a caller that needs the new score in its answer
    (a single event, not a bulk load: the rescore holds the contacts' locks until commit).
    """
    outcomes: dict[int, IngestOutcome] = {}
    keys = sorted({e.type_key for e in events})
    types = {
        t.key: t
        for t in models_where(ActivityType, "key = ANY(%s)", [keys], fallback=ActivityType.objects.filter(key__in=keys))
    }
    for event in events:
        if event.type_key not in types:
            outcomes[event.index] = IngestOutcome(
                event.index, "error", errors={"type": [f"Unknown activity type '{event.type_key}'."]}
            )
    # Types are checked first so that a rejected event never creates a contact.
    contacts = _resolve_event_contacts([event for event in events if event.index not in outcomes], outcomes)
    rows, seen = [], {}
    for event in events:
        if event.index in outcomes:
            continue
        key = (event.source, event.dedupe_key)
        if key in seen:  # the same event twice in one request counts once
            continue
        seen[key] = event
        rows.append(
            NewActivity(
                contact_id=contacts[event.index],
                type_id=types[event.type_key].pk,
                occurred_at=event.occurred_at,
                properties=event.properties,
                source=event.source,
                external_id=event.external_id,
                dedupe_key=event.dedupe_key,
            )
        )
    # In contact order: inserting an activity share-locks its contact, and a rescore locks its
    # contacts in id order too, so the two never wait on each other in a cycle.
    rows.sort(key=lambda row: (row.contact_id, row.occurred_at))
    created, stored = _store_activities(rows, score_now=score_now)
    for event in events:
        if event.index in outcomes:
            continue
        key = (event.source, event.dedupe_key)
        activity = stored[key]
        outcomes[event.index] = IngestOutcome(
            event.index,
            "created" if key in created and seen[key] is event else "duplicate",
            activity_id=activity.pk,
            contact_id=activity.contact_id,
        )
    return [outcomes[event.index] for event in events]


def _store_activities(rows: list[NewActivity], *, score_now: bool) -> tuple[set, dict]:
    """Insert the rows and count the new ones for scoring, in one transaction; returns the
    keys this call inserted and every row's stored activity (id and contact). Retried when
    the database breaks a deadlock by aborting it (nothing of it was kept, and the insert is
    idempotent), so a client never sees a 500 for a conflict it did not cause."""
    for attempt in range(DEADLOCK_RETRIES):
        try:
            with transaction.atomic():
                inserted = _insert_new_activities(rows)
                created_rows = [row for row in rows if (row.source, row.dedupe_key) in inserted]
                for row in created_rows:
                    row.pk = inserted[(row.source, row.dedupe_key)]
                _after_activities_stored(created_rows, score_now=score_now)
            duplicates = [(row.source, row.dedupe_key) for row in rows if (row.source, row.dedupe_key) not in inserted]
            return set(inserted), {
                **_stored_activities(duplicates),
                **{(r.source, r.dedupe_key): r for r in created_rows},
            }
        except OperationalError as error:
            if not _is_deadlock(error) or attempt == DEADLOCK_RETRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


ACTIVITY_INSERT_COLUMNS = ["contact_id", "type_id", "occurred_at", "properties", "source", "external_id", "dedupe_key"]
RETURNING = "ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id, source, dedupe_key"


def _insert_new_activities(rows: list[NewActivity]) -> dict[tuple[str, str], int]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: the ids of exactly the rows this statement
    stored (a re-sent event hits the (source, dedupe_key) constraint and is not returned),
    so telling new from duplicate needs no second read, whoever races with this call."""
    table = Activity._meta.db_table
    columns = ", ".join([*ACTIVITY_INSERT_COLUMNS, "received_at"])
    now = timezone.now()
    inserted = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The rows as one JSON document that PostgreSQL unpacks: a statement of fixed size
            # whatever the batch, and one C-level json.dumps instead of quoting value by value.
            document = json.dumps(
                [
                    [
                        row.contact_id,
                        row.type_id,
                        row.occurred_at.isoformat(),
                        row.properties,
                        row.source,
                        row.external_id,
                        row.dedupe_key,
                    ]
                    for row in rows
                ]
            )
            cursor.execute(
                f"INSERT INTO {table} ({columns}) "
                f"SELECT (r->>0)::bigint, (r->>1)::bigint, (r->>2)::timestamptz, r->3, r->>4, r->>5, r->>6, %s "
                f"FROM jsonb_array_elements(%s::jsonb) AS r {RETURNING}",
                [now, document],
            )
            return {(source, key): pk for pk, source, key in cursor.fetchall()}
        fields = {field.attname: field for field in Activity._meta.concrete_fields}
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            values = ", ".join(["(" + ", ".join(["%s"] * (len(ACTIVITY_INSERT_COLUMNS) + 1)) + ")"] * len(chunk))
            params = []
            for row in chunk:
                params += [
                    fields[name].get_db_prep_save(getattr(row, name), connection) for name in ACTIVITY_INSERT_COLUMNS
                ]
                params.append(fields["received_at"].get_db_prep_save(now, connection))
            cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {values} {RETURNING}", params)
            inserted.update({(source, key): pk for pk, source, key in cursor.fetchall()})
    return inserted


def _is_deadlock(error: OperationalError) -> bool:
    cause = error.__cause__
    return getattr(cause, "sqlstate", None) in ("40P01", "40001")


def _after_activities_stored(activities: list[NewActivity], *, score_now: bool) -> None:
    """Count new activities into scoring's aggregates in this transaction, and rescore the
    affected contacts: queued for after commit, or here when the caller asked to score now."""
    from scoring.services import contacts_rescore, engagement_record

    if not activities:
        return
    engagement_record(activities=activities)
    contact_ids = [activity.contact_id for activity in activities]
    if score_now:
        # A request another ingest left for these contacts stays: its drain finds nothing new.
        # The caller waits for the score, not for the rep: a new MQL is routed after commit.
        contacts_rescore(contact_ids=contact_ids, reason="new activity", clear_requests=False, hand_off_later=True)
    else:
        contacts_queue_rescore(contact_ids, reason="new activity")


def contacts_queue_rescore(contact_ids, *, reason: str) -> None:
    """Rescore these contacts once the current transaction commits: their score follows
    the data they were just given (activities, or fields that fit rules read).

    The request is stored in the transaction, so it cannot be lost: if the broker is down
    when the task is queued (the data is stored all the same, and the caller is told so)
    or loses the task, beat queues it again (scoring.services.rescore_requests_sweep)."""
    from scoring.services import rescore_drain_queue, rescore_requests_record

    ids = sorted(set(contact_ids))
    if ids:
        rescore_requests_record(contact_ids=ids, reason=reason)
        transaction.on_commit(rescore_drain_queue, robust=True)


def _stored_activities(keys: list[tuple[str, str]]) -> dict[tuple[str, str], Activity]:
    stored = {}
    by_source: dict[str, list[str]] = {}
    for source, dedupe_key in keys:
        by_source.setdefault(source, []).append(dedupe_key)
    for source, dedupe_keys in by_source.items():
        for activity in (
            Activity.objects.filter(source=source, dedupe_key__in=dedupe_keys)
            .only("id", "source", "dedupe_key", "contact_id")
            .order_by()
        ):
            stored[(activity.source, activity.dedupe_key)] = activity
    return stored


def _resolve_event_contacts(events: list[IngestEvent], outcomes: dict[int, IngestOutcome]) -> dict[int, int]:
    """Map each event to its contact's id in a few queries, creating unknown contacts.
    A kind of identifier that no event uses costs no query (most batches only send emails)."""
    given_ids = {e.contact_id for e in events if e.contact_id}
    known_ids = set(Contact.objects.filter(id__in=given_ids).values_list("id", flat=True)) if given_ids else set()
    external_ids = {e.contact_external_id for e in events if e.contact_external_id}
    by_external = (
        dict(Contact.objects.filter(external_id__in=external_ids).values_list("external_id", "id"))
        if external_ids
        else {}
    )
    by_email = contact_ids_by_email({e.email for e in events if e.email})
    resolved = {}
    for event in events:
        if event.contact_id and event.contact_id not in known_ids:
            outcomes[event.index] = IngestOutcome(
                event.index, "error", errors={"contact_id": ["No contact with this id."]}
            )
            continue
        contact_id = event.contact_id or by_external.get(event.contact_external_id) or by_email.get(event.email)
        if contact_id is None:
            contact = contact_upsert(
                email=event.email, external_id=event.contact_external_id, **event.contact_fields
            ).contact
            contact_id = contact.pk
            if contact.external_id:
                by_external[contact.external_id] = contact_id
            if contact.email:
                by_email[contact.email] = contact_id
        resolved[event.index] = contact_id
    return resolved
