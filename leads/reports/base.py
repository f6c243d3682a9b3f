"""What every report shares: the period, the funnel's stage order, first arrivals at a stage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ..models import LifecycleStage, StageChange

FUNNEL = [
    LifecycleStage.LEAD,
    LifecycleStage.MQL,
    LifecycleStage.SQL,
    LifecycleStage.OPPORTUNITY,
    LifecycleStage.CUSTOMER,
]
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Period:
    """Whole days from `start` to `end`, both included, in the site's time zone."""

    start: date
    end: date

    @property
    def start_at(self) -> datetime:
        return _midnight(self.start)

    @property
    def end_at(self) -> datetime:
        """Exclusive: midnight after the last day."""
        return _midnight(self.end + timedelta(days=1))

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def q(self, field_name: str) -> Q:
        return Q(**{f"{field_name}__gte": self.start_at, f"{field_name}__lt": self.end_at})


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def stages_from(stage: str) -> list[str]:
    """The stage and every later funnel stage."""
    return [s.value for s in FUNNEL[FUNNEL.index(stage) :]]


def first_reached(stage: str, period: Period):
    """StageChanges in the period that are their contact's first arrival at `stage` or beyond."""
    stages = stages_from(stage)
    earlier = StageChange.objects.filter(
        contact=OuterRef("contact"), to_stage__in=stages, changed_at__lt=OuterRef("changed_at")
    )
    return StageChange.objects.filter(period.q("changed_at"), to_stage__in=stages).filter(~Exists(earlier))


def rate(part, whole) -> Fraction | None:
    return Fraction(part, whole) if whole else None
