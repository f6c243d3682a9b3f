"""Which leads turned out good (1) or bad (0), from what sales and history recorded."""

from __future__ import annotations

from datetime import date

from django.db.models import Min
from django.utils import timezone
from sklearn.model_selection import train_test_split

from leads.models import HandoffDecision, LeadFeedback, LifecycleStage, Outcome, RejectReason, StageChange

POSITIVE_OUTCOMES = {Outcome.Kind.CONVERTED, Outcome.Kind.OPPORTUNITY, Outcome.Kind.WON}
NEGATIVE_OUTCOMES = {Outcome.Kind.NOT_CONVERTED, Outcome.Kind.LOST}
# A rejection for these reasons says nothing about the lead's quality: the timing was off
# or nobody looked at it in time.
NEUTRAL_REJECTIONS = {RejectReason.BAD_TIMING, RejectReason.SLA_EXPIRED}


def training_labels() -> dict[int, int]:
    """{contact id: 1 good / 0 bad}. Stronger evidence overrides weaker: an outcome over a
    hand-off decision over a quality rating; within a kind, the latest wins."""
    labels: dict[int, int] = {}
    feedback = LeadFeedback.objects.order_by("given_at", "id").values_list("contact_id", "rating")
    for contact_id, rating in feedback:
        labels[contact_id] = int(rating == LeadFeedback.Rating.GOOD)
    decisions = HandoffDecision.objects.order_by("decided_at", "id").values_list("contact_id", "decision", "reason")
    for contact_id, decision, reason in decisions:
        if decision == HandoffDecision.Decision.ACCEPTED:
            labels[contact_id] = 1
        elif reason not in NEUTRAL_REJECTIONS:
            labels[contact_id] = 0
    outcomes = Outcome.objects.order_by("occurred_at", "id").values_list("contact_id", "kind")
    for contact_id, kind in outcomes:
        if kind in POSITIVE_OUTCOMES:
            labels[contact_id] = 1
        elif kind in NEGATIVE_OUTCOMES:
            labels[contact_id] = 0
    return labels


def stratified_split(labels: dict[int, int], *, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """(training ids, holdout ids): stratified on the label, reproducible for a seed (the
    project's evaluation protocol: 70/30, seed 42, over contacts in id order)."""
    ids = sorted(labels)
    training, held_out = train_test_split(
        ids, test_size=holdout, random_state=seed, stratify=[labels[cid] for cid in ids]
    )
    return sorted(training), sorted(held_out)


def decision_days(contact_ids: list[int]) -> dict[int, date]:
    """The day each lead was judged on: when it became an MQL (the hand-off's or the first
    MQL stage change), else the day its first label was recorded.

    Engagement is counted as of that day, not today: what a lead did after sales judged it
    (a customer's product emails, a lost lead's silence) must not teach the model, or the
    rules learned would only recognise leads that are already decided.
    """
    ids = list(contact_ids)
    moments: dict[int, object] = {}

    def keep_earliest(rows):
        for contact_id, at in rows:
            if at is not None and (contact_id not in moments or at < moments[contact_id]):
                moments[contact_id] = at

    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        keep_earliest(
            HandoffDecision.objects.filter(contact_id__in=chunk, mql_at__isnull=False)
            .values("contact_id")
            .annotate(at=Min("mql_at"))
            .values_list("contact_id", "at")
        )
        keep_earliest(
            StageChange.objects.filter(contact_id__in=chunk, to_stage=LifecycleStage.MQL)
            .values("contact_id")
            .annotate(at=Min("changed_at"))
            .values_list("contact_id", "at")
        )
        undecided = [cid for cid in chunk if cid not in moments]
        for model, field in ((Outcome, "occurred_at"), (LeadFeedback, "given_at"), (HandoffDecision, "decided_at")):
            keep_earliest(
                model.objects.filter(contact_id__in=undecided)
                .values("contact_id")
                .annotate(at=Min(field))
                .values_list("contact_id", "at")
            )
    today = timezone.localdate()
    return {cid: min(timezone.localdate(at), today) for cid, at in moments.items()}
