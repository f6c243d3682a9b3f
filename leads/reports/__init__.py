"""Funnel reports: reads over a date range, back-dated from the stage history.

The definitions below are the ones the report page explains to its readers:

- A contact *reaches* a funnel stage the first time it moves to that stage or a later one
  (a lead that sales turns straight into an opportunity has passed SQL as well). It counts
  once per stage, at that first time: a recycled lead that qualifies again is not a second
  MQL here — nurture performance counts re-qualifications.
- "MQLs in the range" are the contacts that reached MQL in the range. Sources, campaigns,
  cost per MQL and the weekly trend all count these same MQLs, so their totals agree.
- Hand-off numbers count the sales decisions (accept / reject) made in the range.

Every section is a fixed number of set-based queries whatever the range; Python only
sorts, sums and takes medians of rows already narrowed to the range.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property

from . import funnel as _funnel
from . import mqls as _mqls
from . import nurture as _nurture
from . import value as _value
from .base import CENT, Period

__all__ = ["Period", "Report"]


class Report:
    """Every section of the funnel report for one period, each computed when first read, so
    a CSV export of one table runs only that table's queries."""

    def __init__(self, period: Period, *, deal_value: Decimal):
        self.period, self.deal_value = period, deal_value

    @cached_property
    def funnel(self) -> list[_funnel.FunnelStep]:
        return _funnel.funnel(self.period)

    @cached_property
    def handoffs(self) -> _funnel.Handoffs:
        return _funnel.handoffs(self.period)

    @cached_property
    def rejection_reasons(self) -> list[_funnel.ReasonCount]:
        return _funnel.rejection_reasons(self.period)

    @cached_property
    def mqls(self) -> list[_mqls.Mql]:
        return _mqls.mqls(self.period)

    @cached_property
    def sources(self) -> list[_mqls.SourceRow]:
        return _mqls.sources(self.mqls)

    @cached_property
    def campaigns(self) -> list[_mqls.CampaignRow]:
        credits = _mqls.attribution(self.mqls, _mqls.campaign_touches(self.period))
        return _mqls.campaign_rows(credits, self.costs)

    @cached_property
    def costs(self) -> dict[str, dict[str, Decimal]]:
        return _mqls.campaign_costs(self.period)

    @cached_property
    def spend(self) -> dict[str, Decimal]:
        """Total spend in the period per currency."""
        totals: dict[str, Decimal] = {}
        for by_currency in self.costs.values():
            for currency, amount in by_currency.items():
                totals[currency] = totals.get(currency, Decimal(0)) + amount
        return dict(sorted(totals.items()))

    @cached_property
    def cost_per_mql(self) -> dict[str, Decimal | None]:
        """All spend in the period over all its MQLs, per currency."""
        total = len(self.mqls)
        return {currency: (spent / total).quantize(CENT) if total else None for currency, spent in self.spend.items()}

    @cached_property
    def weeks(self) -> list[_mqls.Week]:
        return _mqls.weekly(self.mqls, self.period)

    @cached_property
    def expected_value(self) -> _value.ExpectedValue:
        return _value.expected_value(self.period, deal_value=self.deal_value)

    @cached_property
    def nurture(self) -> list[_nurture.NurtureRow]:
        return _nurture.nurture_performance(self.period)
