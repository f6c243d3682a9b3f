"""Writes for campaign costs, which marketers enter so the reports can show cost per MQL.

Each change writes an audit entry with the values before and after: costs move reported
numbers, so who changed a figure, and from what, must be answerable later.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db import transaction

from .audit import audit_record
from .models import CampaignCost

FIELDS = ("campaign", "name", "period_start", "period_end", "amount", "currency")


class CostError(ValueError):
    """A cost that would make the reports wrong; the message is meant for the marketer."""


def _overlapping(*, campaign: str, currency: str, start: date, end: date, exclude_id: int | None):
    costs = CampaignCost.objects.filter(
        campaign=campaign, currency=currency, period_start__lte=end, period_end__gte=start
    )
    return costs.exclude(pk=exclude_id) if exclude_id else costs


def _check(values: dict, *, exclude_id: int | None = None) -> None:
    if values["period_end"] < values["period_start"]:
        raise CostError("The period ends before it starts.")
    if values["amount"] < 0:
        raise CostError("A cost cannot be negative.")
    clash = _overlapping(
        campaign=values["campaign"],
        currency=values["currency"],
        start=values["period_start"],
        end=values["period_end"],
        exclude_id=exclude_id,
    ).first()
    if clash:
        # Two costs over the same days would count that spend twice in every report.
        raise CostError(
            f"“{clash.campaign}” already has a cost from {clash.period_start} to {clash.period_end}; "
            "edit that one or choose days it does not cover."
        )


def _snapshot(cost: CampaignCost) -> dict:
    return {name: str(getattr(cost, name)) for name in FIELDS}


def _clean(campaign: str, name: str, currency: str) -> tuple[str, str, str]:
    return campaign.strip(), name.strip(), currency.strip().upper()


@transaction.atomic
def campaign_cost_create(
    *,
    campaign: str,
    period_start: date,
    period_end: date,
    amount: Decimal,
    currency: str,
    name: str = "",
    user=None,
) -> CampaignCost:
    """Record what a campaign cost over a period. Two marketers entering the same days at the
    same moment can both pass the overlap check; the reports would then count that spend
    twice, which the costs page shows plainly — rare enough not to lock the table for."""
    campaign, name, currency = _clean(campaign, name, currency)
    values = dict(
        campaign=campaign, name=name, period_start=period_start, period_end=period_end, amount=amount, currency=currency
    )
    _check(values)
    cost = CampaignCost.objects.create(**values, created_by=user)
    audit_record(actor=user, action="campaign_cost.create", target=cost, after=_snapshot(cost))
    return cost


@transaction.atomic
def campaign_cost_update(
    *,
    cost_id: int,
    campaign: str,
    period_start: date,
    period_end: date,
    amount: Decimal,
    currency: str,
    name: str = "",
    user=None,
) -> CampaignCost:
    cost = CampaignCost.objects.select_for_update().get(pk=cost_id)
    campaign, name, currency = _clean(campaign, name, currency)
    values = dict(
        campaign=campaign, name=name, period_start=period_start, period_end=period_end, amount=amount, currency=currency
    )
    _check(values, exclude_id=cost.pk)
    before = _snapshot(cost)
    for key, value in values.items():
        setattr(cost, key, value)
    cost.save(update_fields=[*FIELDS, "updated_at"])
    audit_record(actor=user, action="campaign_cost.update", target=cost, before=before, after=_snapshot(cost))
    return cost


@transaction.atomic
def campaign_cost_delete(*, cost_id: int, user=None) -> None:
    cost = CampaignCost.objects.select_for_update().filter(pk=cost_id).first()
    if cost is None:
        return  # already gone: deleting twice is not an error
    audit_record(actor=user, action="campaign_cost.delete", target=cost, before=_snapshot(cost))
    cost.delete()
