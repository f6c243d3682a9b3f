"""Nurture performance over a period, per sequence."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from django.db.models import BigIntegerField, Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from nurturing.models import Enrolment, OutboundEmail, Sequence, StepSend

from ..models import Activity, LifecycleStage, StageChange
from .base import Period, rate


@dataclass
class NurtureRow:
    sequence: str
    status: str
    enrolled: int = 0
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    became_mql: int = 0

    @property
    def open_rate(self) -> Fraction | None:
        return rate(self.opened, self.sent)

    @property
    def click_rate(self) -> Fraction | None:
        return rate(self.clicked, self.sent)


def nurture_performance(period: Period) -> list[NurtureRow]:
    """Per sequence, in the period: contacts enrolled, emails sent and how many of those were
    opened or clicked by the period's end, unsubscribes, and contacts who became an MQL after
    enrolling (re-qualifications included: that is nurture's job).

    nurturing.selectors.sequence_stats answers for one sequence over all time; a report
    needs every sequence over a date range, in a fixed number of queries.
    """
    rows = {s.pk: NurtureRow(s.name, s.get_status_display()) for s in Sequence.objects.order_by("name")}
    enrolments = (
        Enrolment.objects.filter(period.q("enrolled_at") | period.q("exited_at"))
        .values("sequence")
        .annotate(
            enrolled=Count("id", filter=period.q("enrolled_at")),
            unsubscribed=Count("id", filter=period.q("exited_at") & Q(exit_reason="unsubscribed")),
        )
    )
    sent = (
        StepSend.objects.filter(period.q("email__sent_at"), email__status=OutboundEmail.Status.SENT)
        .values(sequence=F("enrolment__sequence"))
        .annotate(sent=Count("id"))
    )
    mql_after = StageChange.objects.filter(
        period.q("changed_at"),
        contact=OuterRef("contact"),
        to_stage=LifecycleStage.MQL,
        changed_at__gt=OuterRef("enrolled_at"),
    )
    became = (
        Enrolment.objects.filter(Exists(mql_after))
        .values("sequence")
        .annotate(became_mql=Count("contact", distinct=True))
    )
    for counts in [*enrolments, *sent, *became, *_engagement(period)]:
        row = rows.get(counts.pop("sequence"))
        if row is not None:  # a sequence deleted meanwhile
            for name, value in counts.items():
                setattr(row, name, value)
    return list(rows.values())


def _engagement(period: Period):
    """Emails sent in the period that were opened / clicked by its end, per sequence."""
    sent_in_period = StepSend.objects.filter(
        period.q("email__sent_at"), email__status=OutboundEmail.Status.SENT, email_id=OuterRef("email")
    )
    return (
        Activity.objects.filter(type__key__in=["email_open", "email_click"], occurred_at__lt=period.end_at)
        .filter(properties__has_key="email_id")
        .annotate(email=Cast(KeyTextTransform("email_id", "properties"), BigIntegerField()))
        .annotate(sequence=Subquery(sent_in_period.values("enrolment__sequence")[:1]))
        .filter(sequence__isnull=False)
        .values("sequence")
        .annotate(
            opened=Count("email", distinct=True, filter=Q(type__key="email_open")),
            clicked=Count("email", distinct=True, filter=Q(type__key="email_click")),
        )
    )
