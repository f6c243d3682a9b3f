"""The stage funnel and the sales hand-off: acceptance, time to decision, rejection reasons."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from statistics import median

from django.db.models import Count, Exists, OuterRef, Q

from ..models import HandoffDecision, RejectReason, StageChange
from .base import FUNNEL, Period, first_reached, rate, stages_from


@dataclass
class FunnelStep:
    stage: str
    label: str
    reached: int
    went_on: int | None  # None for the last stage

    @property
    def conversion(self) -> Fraction | None:
        return None if self.went_on is None else rate(self.went_on, self.reached)


def funnel(period: Period) -> list[FunnelStep]:
    """Per stage: contacts that reached it in the period, and how many of them reached the
    next stage by the period's end (so a conversion never exceeds 100 %)."""
    steps = []
    for index, stage in enumerate(FUNNEL):
        entries = first_reached(stage, period)
        if index + 1 == len(FUNNEL):
            steps.append(FunnelStep(stage.value, stage.label, entries.values("contact").distinct().count(), None))
            continue
        later = StageChange.objects.filter(
            contact=OuterRef("contact"), to_stage__in=stages_from(FUNNEL[index + 1]), changed_at__lt=period.end_at
        )
        # The Exists goes straight into the filter: Django drops an annotation referenced only
        # from a distinct aggregate's filter (it silently counted nothing on SQLite).
        counts = entries.aggregate(
            reached=Count("contact", distinct=True),
            went_on=Count("contact", distinct=True, filter=Q(Exists(later))),
        )
        steps.append(FunnelStep(stage.value, stage.label, counts["reached"], counts["went_on"]))
    return steps


# --- hand-off ---------------------------------------------------------------------------------


@dataclass
class Handoffs:
    accepted: int
    rejected: int
    median_wait: timedelta | None  # MQL to decision, all decisions
    median_wait_accepted: timedelta | None
    median_wait_rejected: timedelta | None

    @property
    def decided(self) -> int:
        return self.accepted + self.rejected

    @property
    def acceptance_rate(self) -> Fraction | None:
        return rate(self.accepted, self.decided)


def handoffs(period: Period) -> Handoffs:
    """Decisions made in the period, and the median time from becoming an MQL to the decision."""
    rows = HandoffDecision.objects.filter(period.q("decided_at")).values_list("decision", "mql_at", "decided_at")
    waits: dict[str, list[timedelta]] = {"accepted": [], "rejected": []}
    counts = Counter()
    for decision, mql_at, decided_at in rows:
        counts[decision] += 1
        if mql_at is not None:
            waits[decision].append(decided_at - mql_at)
    everyone = waits["accepted"] + waits["rejected"]
    return Handoffs(
        accepted=counts["accepted"],
        rejected=counts["rejected"],
        median_wait=median(everyone) if everyone else None,
        median_wait_accepted=median(waits["accepted"]) if waits["accepted"] else None,
        median_wait_rejected=median(waits["rejected"]) if waits["rejected"] else None,
    )


@dataclass
class ReasonCount:
    reason: str
    label: str
    count: int
    share: Fraction


def rejection_reasons(period: Period) -> list[ReasonCount]:
    rows = (
        HandoffDecision.objects.filter(period.q("decided_at"), decision=HandoffDecision.Decision.REJECTED)
        .values("reason")
        .annotate(count=Count("id"))
        .order_by("-count", "reason")
    )
    total = sum(row["count"] for row in rows)
    labels = dict(RejectReason.choices)
    return [
        ReasonCount(
            row["reason"],
            labels.get(row["reason"], row["reason"] or "(none)"),
            row["count"],
            rate(row["count"], total),
        )
        for row in rows
    ]
