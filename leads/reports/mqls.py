"""MQLs of a period: sources, campaigns (first touch and linear), campaign costs, weekly trend."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from ..models import Activity, CampaignCost, LifecycleStage, StageChange
from .base import CENT, Period, first_reached, stages_from

# A bounce or an unsubscribe carries the campaign that caused it, but it did not move the
# contact towards sales, so it earns that campaign no credit.
NOT_TOUCHES = ("email_bounce", "unsubscribe")
# Nurture tracking names a touch "<sequence> · step N": the sequence gets the credit, not each step.
NURTURE_STEP_SUFFIX = re.compile(r" · step \d+$")


@dataclass(frozen=True)
class Mql:
    contact_id: int
    at: datetime
    lead_source: str
    utm_campaign: str


def mqls(period: Period) -> list[Mql]:
    """The contacts that reached MQL in the period, each once, with its first-touch fields."""
    rows = (
        first_reached(LifecycleStage.MQL, period)
        .order_by("contact_id", "changed_at", "id")
        .values_list("contact_id", "changed_at", "contact__lead_source", "contact__utm_campaign")
    )
    found: dict[int, Mql] = {}
    for contact_id, at, source, campaign in rows:
        found.setdefault(contact_id, Mql(contact_id, at, source.strip(), campaign.strip()))
    return list(found.values())


def campaign_key(value) -> str:
    return NURTURE_STEP_SUFFIX.sub("", str(value or "").strip())


def campaign_touches(period: Period) -> dict[int, set[str]]:
    """For each MQL of the period, the campaigns its activities named before it became an MQL
    (an activity's `utm_campaign` property, else its `campaign` property)."""
    reached_at = (
        StageChange.objects.filter(contact=OuterRef("contact"), to_stage__in=stages_from(LifecycleStage.MQL))
        .order_by("changed_at")
        .values("changed_at")[:1]
    )
    rows = (
        Activity.objects.filter(contact__in=first_reached(LifecycleStage.MQL, period).values("contact"))
        .filter(Q(properties__has_key="utm_campaign") | Q(properties__has_key="campaign"))
        .exclude(type__key__in=NOT_TOUCHES)
        .annotate(reached_at=Subquery(reached_at))
        .filter(occurred_at__lte=F("reached_at"))
        .values_list("contact_id", "properties__utm_campaign", "properties__campaign")
        .distinct()
    )
    touches: dict[int, set[str]] = defaultdict(set)
    for contact_id, utm_campaign, campaign in rows:
        key = campaign_key(utm_campaign) or campaign_key(campaign)
        if key:
            touches[contact_id].add(key)
    return touches


@dataclass
class Credit:
    first_touch: int = 0
    linear: Fraction = Fraction(0)


def attribution(entries: list[Mql], touches: dict[int, set[str]]) -> dict[str, Credit]:
    """First touch: the whole MQL to the contact's own utm_campaign. Linear: the MQL split
    equally between the distinct campaigns it touched before qualifying, first touch included.
    An MQL that touched no campaign credits "" (no campaign), so both columns add up to the MQLs."""
    credits: dict[str, Credit] = defaultdict(Credit)
    for entry in entries:
        first = campaign_key(entry.utm_campaign)
        credits[first].first_touch += 1
        touched = (touches.get(entry.contact_id, set()) | {first}) - {""} or {""}
        for campaign in touched:
            credits[campaign].linear += Fraction(1, len(touched))
    return credits


def campaign_costs(period: Period) -> dict[str, dict[str, Decimal]]:
    """Spend per campaign and currency in the period. A cost whose period reaches outside the
    range counts pro rata by days: 3,000 over June counts 1,000 in a range holding June 1–10."""
    spend: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for cost in CampaignCost.objects.filter(period_start__lte=period.end, period_end__gte=period.start):
        overlap = (min(cost.period_end, period.end) - max(cost.period_start, period.start)).days + 1
        spend[cost.campaign][cost.currency] += cost.amount * overlap / cost.days
    return {campaign: {c: a.quantize(CENT, ROUND_HALF_UP) for c, a in by.items()} for campaign, by in spend.items()}


@dataclass
class CampaignRow:
    campaign: str  # "" is "no campaign"
    first_touch: int
    linear: Fraction
    currency: str = ""
    cost: Decimal | None = None

    @property
    def cost_per_mql_first_touch(self) -> Decimal | None:
        return _per(self.cost, self.first_touch)

    @property
    def cost_per_mql_linear(self) -> Decimal | None:
        return _per(self.cost, self.linear)


def _per(cost: Decimal | None, mqls: int | Fraction) -> Decimal | None:
    if cost is None or not mqls:
        return None
    mqls = Fraction(mqls)
    return (cost * mqls.denominator / mqls.numerator).quantize(CENT, ROUND_HALF_UP)


def campaign_rows(credits: dict[str, Credit], costs: dict[str, dict[str, Decimal]]) -> list[CampaignRow]:
    """One row per campaign (per currency, if its costs came in several), most MQLs first."""
    rows = []
    for campaign in set(credits) | set(costs):
        credit = credits.get(campaign, Credit())
        spent = costs.get(campaign) or {"": None}
        for currency, cost in sorted(spent.items()):
            rows.append(CampaignRow(campaign, credit.first_touch, credit.linear, currency, cost))
    return sorted(rows, key=lambda r: (-r.first_touch, -r.linear, r.campaign == "", r.campaign, r.currency))


@dataclass
class SourceRow:
    source: str  # "" is "unknown"
    mqls: int
    share: Fraction


def sources(entries: list[Mql]) -> list[SourceRow]:
    counts = Counter(entry.lead_source for entry in entries)
    return [
        SourceRow(source, count, Fraction(count, len(entries)))
        for source, count in sorted(counts.items(), key=lambda item: (-item[1], item[0] == "", item[0]))
    ]


@dataclass
class Week:
    monday: date
    days_in_range: int
    mqls: int


def weekly(entries: list[Mql], period: Period) -> list[Week]:
    """MQLs per week (Monday to Sunday, site time), every week of the range, empty ones too.
    The first and last weeks may hold fewer than 7 days of the range: `days_in_range` says so."""
    counts = Counter(_monday(timezone.localtime(entry.at).date()) for entry in entries)
    weeks, monday = [], _monday(period.start)
    while monday <= period.end:
        first, last = max(monday, period.start), min(monday + timedelta(days=6), period.end)
        weeks.append(Week(monday, (last - first).days + 1, counts[monday]))
        monday += timedelta(days=7)
    return weeks


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())
