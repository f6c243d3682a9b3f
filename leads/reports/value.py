"""The expected value of open MQLs."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from django.db.models import Exists, OuterRef, Subquery

from scoring.models import MqlQualification

from ..models import Contact, LifecycleStage, Outcome, StageChange
from .base import CENT, Period, rate, stages_from

# How many imaginary past MQLs, converting at the overall rate, are added to each MQL level's
# history: a level with few known results is pulled towards the overall rate instead of
# swinging to 0 % or 100 % on two or three leads.
PRIOR_WEIGHT = 10


@dataclass
class LevelOdds:
    level: str  # "" is "no level recorded"
    open: int
    known: int  # past MQLs at this level whose result is known
    converted: int
    probability: Fraction | None
    expected_value: Decimal | None

    @property
    def observed_rate(self) -> Fraction | None:
        return rate(self.converted, self.known)


@dataclass
class ExpectedValue:
    deal_value: Decimal
    overall_rate: Fraction | None
    levels: list[LevelOdds] = field(default_factory=list)

    @property
    def open(self) -> int:
        return sum(level.open for level in self.levels)

    @property
    def total(self) -> Decimal | None:
        values = [level.expected_value for level in self.levels if level.open]
        return None if self.overall_rate is None else sum(values, Decimal(0))


def expected_value(period: Period, *, deal_value: Decimal) -> ExpectedValue:
    """Σ deal value × chance to convert, over the MQLs still open at the end of the period.

    A contact's level is the MQL level of its latest qualification before the period's end.
    The chance for a level is its past MQLs' conversion rate (won or converted, against lost
    or not converted; results known by the period's end), with PRIOR_WEIGHT imaginary MQLs at
    the overall rate added, so that thin levels lean on the overall rate.
    """
    tally: dict[str, Counter] = defaultdict(Counter)
    for level_name, stage, won, customer, lost in _mql_histories(period.end_at):
        counts = tally[level_name or ""]
        is_open = stage == LifecycleStage.MQL
        counts["open"] += is_open
        # An open MQL's result is not known yet, whatever happened to it before it qualified.
        counts["converted"] += not is_open and bool(won or customer)
        counts["known"] += not is_open and bool(won or customer or lost)
    known = sum(counts["known"] for counts in tally.values())
    report = ExpectedValue(deal_value, rate(sum(counts["converted"] for counts in tally.values()), known))
    for level_name in sorted(tally, key=lambda name: (name == "", name)):
        report.levels.append(_odds(level_name, tally[level_name], report.overall_rate, deal_value))
    return report


def _mql_histories(end):
    """(level, stage at `end`, won, became customer, lost) for every contact that reached MQL
    before `end`; results count only when dated after the contact first reached MQL."""
    reached_mql = StageChange.objects.filter(to_stage__in=stages_from(LifecycleStage.MQL), changed_at__lt=end)
    first_mql = reached_mql.filter(contact=OuterRef("pk")).order_by("changed_at").values("changed_at")[:1]
    level = (
        MqlQualification.objects.filter(contact=OuterRef("pk"), qualified_at__lt=end)
        .order_by("-qualified_at", "-id")
        .values("level")[:1]
    )
    stage = StageChange.objects.filter(contact=OuterRef("pk"), changed_at__lt=end).order_by("-changed_at", "-id")
    outcome = Outcome.objects.filter(
        contact=OuterRef("pk"), occurred_at__lt=end, occurred_at__gte=OuterRef("first_mql_at")
    )
    customer = StageChange.objects.filter(contact=OuterRef("pk"), to_stage=LifecycleStage.CUSTOMER, changed_at__lt=end)
    return (
        Contact.objects.filter(pk__in=reached_mql.values("contact"))
        .annotate(first_mql_at=Subquery(first_mql))
        .annotate(
            level=Subquery(level),
            stage=Subquery(stage.values("to_stage")[:1]),
            won=Exists(outcome.filter(kind__in=[Outcome.Kind.CONVERTED, Outcome.Kind.WON])),
            became_customer=Exists(customer),
            lost=Exists(outcome.filter(kind__in=[Outcome.Kind.NOT_CONVERTED, Outcome.Kind.LOST])),
        )
        .values_list("level", "stage", "won", "became_customer", "lost")
    )


def _odds(level: str, counts: Counter, overall: Fraction | None, deal_value: Decimal) -> LevelOdds:
    probability = None
    if overall is not None:
        probability = (counts["converted"] + PRIOR_WEIGHT * overall) / (counts["known"] + PRIOR_WEIGHT)
    return LevelOdds(
        level=level,
        open=counts["open"],
        known=counts["known"],
        converted=counts["converted"],
        probability=probability,
        expected_value=_value(deal_value, counts["open"], probability),
    )


def _value(deal_value: Decimal, count: int, probability: Fraction | None) -> Decimal | None:
    if probability is None:
        return None
    return (deal_value * count * probability.numerator / probability.denominator).quantize(CENT, ROUND_HALF_UP)
