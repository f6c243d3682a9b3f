"""Demo data for the funnel report, added by `seed_demo`: what its campaigns cost.

Drawn from a random generator of its own, so the rest of the demo stays what the same seed
gave before. (The hand-off decisions the report reads come with `seed_demo`'s sales history.)
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings

from .models import CampaignCost

# Monthly spend around which each campaign's costs are drawn: paid ads, and one email campaign.
MONTHLY_SPEND = {
    "brand-search": 1800,
    "lead-scoring-generic": 3200,
    "crm-competitors": 2600,
    "abm-revops-leaders": 4200,
    "webinar-promo": 2100,
    "Webinar invitation": 600,
}


def campaign_costs(*, start: date, end: date, rng: random.Random) -> list[CampaignCost]:
    """A cost per campaign per calendar month of the demo's window, in the report currency."""
    costs = []
    month = start.replace(day=1)
    while month <= end:
        following = (month + timedelta(days=32)).replace(day=1)
        for campaign, spend in MONTHLY_SPEND.items():
            amount = Decimal(round(spend * rng.uniform(0.8, 1.2), -1))
            costs.append(
                CampaignCost(
                    campaign=campaign,
                    name=f"{campaign} {month:%b %Y}",
                    period_start=month,
                    period_end=following - timedelta(days=1),
                    amount=amount,
                    currency=settings.REPORT_CURRENCY,
                )
            )
        month = following
    return costs
