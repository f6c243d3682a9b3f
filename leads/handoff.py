"""Hand-off of MQLs to sales: routing, claiming, accepting, rejecting, feedback, outcomes.

Every action locks the contact row first and re-checks its stage and owner under the
lock, so when two reps act on the same lead at the same moment exactly one wins and
the other gets a HandoffError with a message to show; the audit log gets one entry.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from config.bulk import bulk_insert

from . import audit
from .models import (
    AuditEntry,
    Contact,
    HandoffDecision,
    HandoffRequest,
    LeadFeedback,
    LifecycleStage,
    Outcome,
    RejectReason,
    RepRotation,
    RoutingRule,
)
from .roles import ADMIN, MANAGER, SALES, has_role
from .services import contact_set_stage

logger = logging.getLogger(__name__)

REJECTED_TO = {
    RejectReason.NOT_A_FIT: LifecycleStage.DISQUALIFIED,
    RejectReason.BAD_DATA: LifecycleStage.DISQUALIFIED,
    RejectReason.COMPETITOR: LifecycleStage.DISQUALIFIED,
    RejectReason.ALREADY_CUSTOMER: LifecycleStage.DISQUALIFIED,
}  # every other reason recycles the lead back to marketing's nurture
OUTCOME_STAGES = {Outcome.Kind.OPPORTUNITY: LifecycleStage.OPPORTUNITY, Outcome.Kind.WON: LifecycleStage.CUSTOMER}


class HandoffError(Exception):
    """An action that cannot happen; the message is meant for the rep."""


class NotAllowed(HandoffError):
    pass


def can_act_on(user, contact: Contact) -> bool:
    """Managers and admins act on every lead; a rep on unassigned leads and their own."""
    if has_role(user, MANAGER, ADMIN):
        return True
    return has_role(user, SALES) and contact.owner_id in (None, user.pk)


def audit_record(*, actor, action: str, contact: Contact, before: dict, after: dict) -> AuditEntry:
    return audit.audit_record(actor=actor, action=action, target=contact, before=before, after=after)


def _locked(contact_id: int) -> Contact:
    return Contact.objects.select_for_update(of=("self",)).select_related("account", "owner").get(pk=contact_id)


def _require_can_act(user, contact: Contact) -> None:
    if user is not None and not can_act_on(user, contact):
        raise NotAllowed("This lead belongs to another rep.")


def _require_mql(contact: Contact) -> None:
    if contact.lifecycle_stage != LifecycleStage.MQL:
        raise HandoffError(f"{contact} was already handled: it is now {contact.get_lifecycle_stage_display()}.")


def _snapshot(contact: Contact) -> dict:
    """What a hand-off entry in the audit log shows: the stage, and the owner by name."""
    return {"stage": contact.lifecycle_stage, "owner": contact.owner.get_username() if contact.owner_id else None}


# --- accept / reject -------------------------------------------------------------------------


@transaction.atomic
def lead_accept(*, contact_id: int, user) -> HandoffDecision:
    """The rep takes the MQL: it becomes their sales-qualified lead and leaves the queue."""
    contact = _locked(contact_id)
    _require_mql(contact)  # first: a lead another rep just took is "already handled"
    _require_can_act(user, contact)
    before, now = _snapshot(contact), timezone.now()
    contact_set_stage(
        contact=contact, to_stage=LifecycleStage.SQL, changed_by=user, rule="sales: accepted", changed_at=now
    )
    _set_owner(contact, user, now)
    decision = HandoffDecision.objects.create(
        contact=contact,
        decision=HandoffDecision.Decision.ACCEPTED,
        decided_by=user,
        decided_at=now,
        mql_at=contact.mql_at,
        to_stage=LifecycleStage.SQL,
    )
    audit_record(actor=user, action="lead.accept", contact=contact, before=before, after=_snapshot(contact))
    _leave_nurture(contact, "accepted by sales", only="exit_on_sql")
    return decision


@transaction.atomic
def lead_reject(*, contact_id: int, user, reason: str, note: str = "") -> HandoffDecision:
    """Back to marketing: recycled into nurture, or disqualified, depending on the reason."""
    if reason not in RejectReason.values:
        raise HandoffError("Choose a reason for rejecting the lead.")
    if reason == RejectReason.OTHER and not note.strip():
        raise HandoffError("Say why in the note when the reason is “Other”.")
    contact = _locked(contact_id)
    _require_mql(contact)  # first: a lead another rep just took is "already handled"
    _require_can_act(user, contact)
    before, now = _snapshot(contact), timezone.now()
    to_stage = REJECTED_TO.get(reason, LifecycleStage.RECYCLED)
    contact_set_stage(
        contact=contact,
        to_stage=to_stage,
        changed_by=user,
        rule="sales: rejected" if user else "sales: SLA expired",
        reason=f"{RejectReason(reason).label}{': ' + note if note else ''}",
        changed_at=now,
    )
    # A recycled lead goes back to marketing unowned, to be routed afresh if it qualifies again.
    Contact.objects.filter(pk=contact.pk).update(owner=None, owner_assigned_at=None)
    contact.owner_id = None
    decision = HandoffDecision.objects.create(
        contact=contact,
        decision=HandoffDecision.Decision.REJECTED,
        reason=reason,
        note=note[:1000],
        decided_by=user,
        decided_at=now,
        mql_at=contact.mql_at,
        to_stage=to_stage,
    )
    audit_record(
        actor=user,
        action="lead.reject",
        contact=contact,
        before=before,
        after={**_snapshot(contact), "reason": reason, "note": note[:1000]},
    )
    _leave_nurture(contact, "rejected by sales", only="exit_on_sql")
    _enter_nurture_after_rejection(contact, reason)
    return decision


def _leave_nurture(contact: Contact, reason: str, *, only: str) -> None:
    from nurturing.sequences import enrolments_exit

    enrolments_exit(contact=contact, reason=reason, only=only)


def _enter_nurture_after_rejection(contact: Contact, reason: str) -> None:
    """A rejected lead (e.g. "bad timing") may enter a re-engagement sequence."""
    from nurturing.sequences import enrol_on_rejection

    contact.refresh_from_db()
    enrol_on_rejection(contact=contact, reason=reason)


# --- feedback and outcomes ---------------------------------------------------------------------


@transaction.atomic
def feedback_record(*, contact_id: int, user, rating: str, reason: str = "", note: str = "") -> LeadFeedback:
    if rating not in LeadFeedback.Rating.values:
        raise HandoffError("Rate the lead good or bad.")
    if reason and reason not in RejectReason.values:
        raise HandoffError("Unknown reason.")
    contact = _locked(contact_id)
    _require_can_act(user, contact)
    feedback = LeadFeedback.objects.create(
        contact=contact, rating=rating, reason=reason, note=note[:1000], given_by=user, given_at=timezone.now()
    )
    audit_record(
        actor=user,
        action="lead.feedback",
        contact=contact,
        before={},
        after={"rating": rating, "reason": reason, "note": note[:1000]},
    )
    return feedback


@transaction.atomic
def outcome_record(*, contact_id: int, user, kind: str, note: str = "", source: str = Outcome.Source.SALES) -> Outcome:
    """Opportunity created, won or lost: recorded, and the lifecycle follows."""
    if kind not in (Outcome.Kind.OPPORTUNITY, Outcome.Kind.WON, Outcome.Kind.LOST):
        raise HandoffError("An outcome is an opportunity, a win or a loss.")
    contact = _locked(contact_id)
    _require_can_act(user, contact)
    now = timezone.now()
    outcome = Outcome.objects.create(
        contact=contact, kind=kind, source=source, occurred_at=now, recorded_by=user, note=note[:500]
    )
    if kind in OUTCOME_STAGES:
        contact_set_stage(
            contact=contact,
            to_stage=OUTCOME_STAGES[kind],
            changed_by=user,
            rule=f"sales: {Outcome.Kind(kind).label.lower()}",
            changed_at=now,
        )
    audit_record(actor=user, action="lead.outcome", contact=contact, before={}, after={"kind": kind, "note": note})
    return outcome


# --- ownership ---------------------------------------------------------------------------------


def _set_owner(contact: Contact, rep, at: datetime) -> None:
    if contact.owner_id == getattr(rep, "pk", None):
        return
    Contact.objects.filter(pk=contact.pk).update(owner=rep, owner_assigned_at=at)
    contact.owner, contact.owner_assigned_at = rep, at


@transaction.atomic
def lead_claim(*, contact_id: int, user) -> Contact:
    """A rep takes an unassigned MQL."""
    contact = _locked(contact_id)
    _require_mql(contact)
    if not has_role(user, SALES):
        raise NotAllowed("Only sales reps can claim leads.")
    _require_can_act(user, contact)  # another rep's lead is theirs: forbidden, as for every action
    if contact.owner_id is not None:
        raise HandoffError(f"{contact} was already assigned to {contact.owner}.")
    before = _snapshot(contact)
    _set_owner(contact, user, timezone.now())
    audit_record(actor=user, action="lead.claim", contact=contact, before=before, after=_snapshot(contact))
    return contact


@transaction.atomic
def lead_reassign(*, contact_id: int, user, rep) -> Contact:
    if not has_role(user, MANAGER, ADMIN):
        raise NotAllowed("Only managers can reassign leads.")
    if not has_role(rep, SALES):
        raise HandoffError(f"{rep} is not a sales rep.")
    contact = _locked(contact_id)
    before = _snapshot(contact)
    _set_owner(contact, rep, timezone.now())
    audit_record(actor=user, action="lead.reassign", contact=contact, before=before, after=_snapshot(contact))
    _notify_assignment(contact, rep)
    return contact


def mql_entered(*, contact: Contact, at: datetime, from_stage: str = "") -> None:
    """Called in the transaction that made the contact an MQL (from `from_stage`): start its
    clock at `at` and route it."""
    Contact.objects.filter(pk=contact.pk).update(mql_at=at, sla_reminded_at=None)
    mqls_entered(from_stages={contact.pk: from_stage}, at=at)
    contact.mql_at = at


def mqls_entered(*, from_stages: dict[int, str], at: datetime, notify: bool = True) -> dict[int, int]:
    """The hand-off of contacts that have just become MQLs ({contact id: the stage it came
    from}; their stage change in this transaction locked them and started their clocks, see
    contacts_set_stage), in a few statements: end the nurture sequences that stop at MQL,
    route them. Returns {contact id: rep id} for the routed ones. `notify=False` leaves telling
    the reps to the caller: a full rescore sends each rep one digest when it ends
    (mql_digests_send)."""
    _leave_nurture_as_mqls(sorted(from_stages))
    return mqls_route(from_stages=from_stages, at=at, notify=notify)


def _leave_nurture_as_mqls(contact_ids: list[int]) -> None:
    from nurturing.sequences import enrolments_exit_many

    enrolments_exit_many(contact_ids=contact_ids, reason="became an MQL", only="exit_on_mql")


# What _Router.choose and the routing's audit entries (_snapshot) read of a contact.
ROUTING_FIELDS = (
    "id",
    "lifecycle_stage",
    "country",
    "owner",
    "owner_assigned_at",
    "account__industry",
    "account__owner",
)


def mqls_route(*, from_stages: dict[int, str], at: datetime, notify: bool = True) -> dict[int, int]:
    """Route new MQLs (locked by the caller; see mqls_entered) to reps and audit it; returns
    {contact id: rep id} for the routed ones."""
    ids = sorted(from_stages)
    if settings.MQL_ROUTING == "off" or not ids:
        return {}
    # Not locked again: the stage change in this transaction holds their row locks (FOR NO KEY
    # UPDATE, which a claim or a reassignment waits for), so nobody changes their owner meanwhile.
    contacts = Contact.objects.select_related("account__owner", "owner").filter(pk__in=ids).order_by("pk")
    if not notify:
        # A full rescore's batch: only what routing and its audit entries read. Whole rows
        # cost a chunk 4 ms more for its 60 new MQLs; the email that reads more is the digest's.
        contacts = contacts.only(*ROUTING_FIELDS)
    locked = list(contacts)
    router, entries, routed = _Router(), [], []
    given: dict[int, list[int]] = {}  # rep id → contacts newly given to them
    for contact in locked:
        rep = contact.owner if contact.owner_id and router.is_active(contact.owner) else router.choose(contact)
        if rep is None:
            continue  # stays unassigned: reps can claim it from the queue
        # The stage has already changed in this transaction: the entry shows where the lead came from.
        before = {**_snapshot(contact), "stage": from_stages[contact.pk] or contact.lifecycle_stage}
        if contact.owner_id != rep.pk:
            contact.owner, contact.owner_assigned_at = rep, at
            given.setdefault(rep.pk, []).append(contact.pk)
        entries.append(
            audit.audit_entry(actor=None, action="lead.route", target=contact, before=before, after=_snapshot(contact))
        )
        routed.append(contact)
    router.save_turns()
    for rep_id, contact_ids in given.items():
        Contact.objects.filter(pk__in=contact_ids).update(owner_id=rep_id, owner_assigned_at=at)
    bulk_insert(AuditEntry, entries)
    if notify:
        for contact in routed:
            _notify_assignment(contact, contact.owner)
    return {contact.pk: contact.owner_id for contact in routed}


def mqls_hand_off_after_commit(*, from_stages: dict[int, str], at: datetime) -> None:
    """mqls_entered for these new MQLs (locked by the caller, whose transaction made them
    MQLs at `at`), with the routing run by a worker once this transaction commits: for a
    caller that answers someone waiting (an ingest that scores now), whose answer needs the
    lead's stage but not its rep. The request is stored in this transaction, so it cannot be
    lost: a task the broker never ran is queued again by beat (handoff_requests_sweep)."""
    from .tasks import mql_handoffs

    # Now, not in the worker: a lead that leaves the queue before its routing must not stay
    # in sequences that end at MQL (one UPDATE).
    _leave_nurture_as_mqls(sorted(from_stages))
    now = timezone.now()
    if connection.vendor == "postgresql":  # plain SQL: building the ORM's upsert cost more than running it
        ids, stages = zip(*sorted(from_stages.items()), strict=True)
        with connection.cursor() as cursor:
            cursor.execute(
                f"""INSERT INTO {HandoffRequest._meta.db_table} (contact_id, from_stage, mql_at, requested_at)
                    SELECT id, stage, %s, %s FROM unnest(%s::bigint[], %s::text[]) AS r(id, stage)
                    ON CONFLICT (contact_id) DO UPDATE SET from_stage = excluded.from_stage,
                        mql_at = excluded.mql_at, requested_at = excluded.requested_at""",
                [at, now, list(ids), list(stages)],
            )
    else:
        HandoffRequest.objects.bulk_create(
            [
                HandoffRequest(contact_id=contact_id, from_stage=from_stage, mql_at=at, requested_at=now)
                for contact_id, from_stage in sorted(from_stages.items())
            ],
            update_conflicts=True,
            unique_fields=["contact"],
            update_fields=["from_stage", "mql_at", "requested_at"],
        )
    transaction.on_commit(mql_handoffs.delay, robust=True)


def handoff_requests_drain(*, limit: int = 500) -> int:
    """Hand off the new MQLs waiting for it, oldest request first, `limit` per transaction;
    returns how many requests were served. Leads another transaction holds are left for a
    drain queued a second later."""
    from .tasks import mql_handoffs

    served = 0
    while True:
        done, skipped, full = _handoff_requests_serve(limit=limit)
        served += done
        if skipped:
            mql_handoffs.apply_async(countdown=1)
            return served
        if not full or not done:  # none served: the batch's leads failed, beat retries them
            return served


@transaction.atomic
def _handoff_requests_serve(*, limit: int) -> tuple[int, int, bool]:
    """Lock up to `limit` requested leads (skipping those another transaction holds), route
    those still waiting as the qualification that asked for it left them, and delete the
    requests served: a worker that dies leaves them in place. Returns (served, skipped,
    whether the batch was full)."""
    pending = list(HandoffRequest.objects.order_by("requested_at").values_list("contact_id", flat=True)[:limit])
    locked = {
        pk: (stage, mql_at, owner_assigned_at)
        for pk, stage, mql_at, owner_assigned_at in Contact.objects.select_for_update(no_key=True, skip_locked=True)
        .filter(pk__in=pending)
        .order_by("pk")
        .values_list("pk", "lifecycle_stage", "mql_at", "owner_assigned_at")
    }
    # Read under the leads' locks: a new qualification of one of them (which writes its
    # request) waits for this transaction, so deleting what is read here loses nothing.
    requests = list(HandoffRequest.objects.filter(contact_id__in=locked))
    by_clock: dict[datetime, dict[int, str]] = {}
    for request in requests:
        if _still_waiting(*locked[request.contact_id], since=request.mql_at):
            by_clock.setdefault(request.mql_at, {})[request.contact_id] = request.from_stage
    failed: set[int] = set()
    for at, from_stages in sorted(by_clock.items()):
        try:
            with transaction.atomic():  # one lead's failure does not hold back the others
                mqls_route(from_stages=from_stages, at=at)
        except Exception:
            logger.exception("Hand-off of %s failed; beat queues it again", sorted(from_stages))
            failed.update(from_stages)
    served = [request.contact_id for request in requests if request.contact_id not in failed]
    HandoffRequest.objects.filter(contact_id__in=served).delete()
    return len(served), len(pending) - len(locked), len(pending) == limit


def _still_waiting(stage: str, mql_at: datetime | None, owner_assigned_at: datetime | None, *, since: datetime) -> bool:
    """Whether a lead qualified at `since` still waits for routing: in the queue since then,
    and not claimed by a rep or reassigned by a manager meanwhile (their choice stands)."""
    if stage != LifecycleStage.MQL or mql_at != since:
        return False
    return owner_assigned_at is None or owner_assigned_at < since


def handoff_requests_sweep() -> int:
    """Queue a drain for hand-offs requested longer than RESCORE_CLAIM_TIMEOUT ago, whose task
    must have been lost (beat, every minute); returns how many. They are stamped as requested
    now, so the next minute's sweep does not count them again."""
    from .tasks import mql_handoffs

    stale = HandoffRequest.objects.filter(
        requested_at__lt=timezone.now() - timedelta(seconds=settings.RESCORE_CLAIM_TIMEOUT)
    )
    count = stale.update(requested_at=timezone.now())
    if count:
        mql_handoffs.delay()
    return count


class _Router:
    """Chooses a rep for each new MQL of a batch: the account's owner first, then territory
    rules, then round-robin. Reads reps and rules once per batch, and takes the rotation's
    row locks once: two batches routed at the same moment wait for each other, so they give
    their leads to different reps."""

    def __init__(self):
        self.rules = list(RoutingRule.objects.select_related("rep"))
        self.paused: set[int] | None = None  # read when first needed: round-robin alone never asks
        self.active: dict[int, bool] = {}
        self.turns: list[RepRotation] | None = None
        self.taken: set[int] = set()

    def is_active(self, user) -> bool:
        if self.paused is None:
            self.paused = set(RepRotation.objects.filter(is_active=False).values_list("rep_id", flat=True))
        if user.pk not in self.active:
            self.active[user.pk] = user.is_active and has_role(user, SALES) and user.pk not in self.paused
        return self.active[user.pk]

    def choose(self, contact: Contact):
        owner = contact.account.owner if contact.account_id and contact.account.owner_id else None
        if owner and self.is_active(owner):
            return owner
        industry = (contact.account.industry if contact.account_id else "").lower()
        for rule in self.rules:
            wanted = rule.value.strip().lower()
            field = contact.country.lower() if rule.field == RoutingRule.Field.COUNTRY else industry
            if field == wanted and self.is_active(rule.rep):
                return rule.rep
        return self._next_in_rotation()

    def _next_in_rotation(self):
        """Round-robin: the active rep whose last assignment is oldest."""
        if self.turns is None:
            self.turns = self._rotation_locked()
        if not self.turns:
            return None
        turn = min(self.turns, key=lambda t: (t.last_assigned_at is not None, t.last_assigned_at, t.rep_id))
        # Strictly after every earlier turn, even within one clock tick, so the order holds.
        latest = max((t.last_assigned_at for t in self.turns if t.last_assigned_at), default=None)
        now = timezone.now()
        turn.last_assigned_at = max(now, latest + timedelta(microseconds=1)) if latest else now
        self.taken.add(turn.pk)
        return turn.rep

    @staticmethod
    def _rotation_locked() -> list[RepRotation]:
        """The active Sales reps' turns, locked; a rep new to the group gets a turn first."""
        _rotation_join_new_reps()
        return list(
            RepRotation.objects.select_for_update(of=("self",))
            .filter(is_active=True, rep__is_active=True, rep__groups__name=SALES)
            .order_by("rep_id")
            .select_related("rep")
        )

    def save_turns(self) -> None:
        for turn in self.turns or []:
            if turn.pk in self.taken:
                RepRotation.objects.filter(pk=turn.pk).update(last_assigned_at=turn.last_assigned_at)


def _rotation_join_new_reps() -> None:
    """Give every active Sales rep without a turn one, in one statement: this runs each time a
    lead is routed round-robin, and almost always finds nobody new."""
    User = get_user_model()
    rotation, users = RepRotation._meta.db_table, User._meta.db_table
    membership, groups = User.groups.through._meta.db_table, Group._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {rotation} (rep_id, is_active) SELECT u.id, %s FROM {users} u "
            f"JOIN {membership} m ON m.user_id = u.id JOIN {groups} g ON g.id = m.group_id "
            f"WHERE u.is_active AND g.name = %s AND NOT EXISTS (SELECT 1 FROM {rotation} r WHERE r.rep_id = u.id) "
            f"ON CONFLICT (rep_id) DO NOTHING",
            [True, SALES],
        )


def _notify_assignment(contact: Contact, rep) -> None:
    from nurturing.services import email_enqueue

    if not rep.email:
        return
    email_enqueue(
        key=f"assigned:{contact.pk}:{rep.pk}:{contact.mql_at.isoformat() if contact.mql_at else ''}",
        to=rep.email,
        template="emails/mql_assigned",
        context={"contact": contact, "rep": rep, "site_url": settings.SITE_URL},
    )


# --- hand-off SLA ----------------------------------------------------------------------------


def mqls_sla_check() -> dict:
    """Remind owners of MQLs untouched for SLA_REMINDER_HOURS; after SLA_EXPIRY_DAYS, hand
    the lead back to marketing as recycled with reason "SLA expired". Safe to run twice:
    a reminder is keyed per MQL entry, and an expired lead is no longer an MQL."""
    now = timezone.now()
    remind_before = now - timedelta(hours=settings.SLA_REMINDER_HOURS)
    expire_before = now - timedelta(days=settings.SLA_EXPIRY_DAYS)
    mqls = Contact.objects.filter(lifecycle_stage=LifecycleStage.MQL)
    expired = list(mqls.filter(mql_at__lt=expire_before).values_list("id", flat=True))
    for contact_id in expired:
        try:
            lead_reject(contact_id=contact_id, user=None, reason=RejectReason.SLA_EXPIRED)
        except HandoffError:
            continue  # handled by a rep meanwhile
    reminded = 0
    for contact in mqls.filter(
        mql_at__lt=remind_before, sla_reminded_at__isnull=True, owner__isnull=False
    ).select_related("owner", "account"):
        with transaction.atomic():
            if Contact.objects.filter(pk=contact.pk, sla_reminded_at__isnull=True).update(sla_reminded_at=now):
                _sla_reminder(contact)
                reminded += 1
    return {"expired": len(expired), "reminded": reminded}


def _sla_reminder(contact: Contact) -> None:
    from nurturing.services import email_enqueue

    if contact.owner.email:
        email_enqueue(
            key=f"sla-reminder:{contact.pk}:{contact.mql_at.isoformat()}",
            to=contact.owner.email,
            template="emails/mql_sla_reminder",
            context={
                "contact": contact,
                "rep": contact.owner,
                "site_url": settings.SITE_URL,
                "hours": settings.SLA_REMINDER_HOURS,
                "expiry_days": settings.SLA_EXPIRY_DAYS,
            },
        )
