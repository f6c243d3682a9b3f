"""Funnel reports on a small dataset whose every number was worked out by hand (see the comments).

The range is Wednesday 5 March to Sunday 23 March 2025, site time UTC: from 5 March 00:00
included to 24 March 00:00 excluded. Contacts, by letter:

    A  lead 20 Feb · MQL 6 Mar 10:00 · SQL 7 Mar 10:00 · opportunity 20 Mar · customer 2 Apr
       Paid Search / brand-search; accepted 7 Mar (24 h after MQL); level hot
    B  lead 5 Mar 09:00 · MQL 10 Mar 12:00 · recycled 12 Mar 12:00 · lost 22 Mar
       LinkedIn / abm; rejected "bad timing" 12 Mar (48 h); level warm; in the Welcome sequence
    C  lead 8 Mar · MQL 18 Mar 09:00 · SQL 18 Mar 15:00             Webinar; accepted (6 h)
    D  lead 10 Mar · MQL 21 Mar (still an MQL)        Paid Search / brand-search; level hot
    E  lead 1 Feb · MQL 10 Feb · SQL 6 Mar            accepted 6 Mar (576 h, MQL before the range)
    F  subscriber 6 Mar · MQL 24 Mar 00:00            (after the range)
    G  lead 23 Mar 23:30 · MQL 24 Mar 00:00           (lead on the last minute; MQL just after)
    H  lead 5 Mar 00:00                               (lead on the first instant)
    I  lead 4 Mar 23:59 · MQL 12 Mar 12:00 · recycled 14 Mar · lost 20 Mar
       no source; rejected "no budget" 14 Mar 00:00 (36 h); level warm
    J  lead 5 Jan · MQL 10 Jan · recycled 12 Jan · MQL again 11 Mar (open)   level warm
       (first MQL before the range, so not an MQL of the range; in the Re-engage sequence)
    K  lead 6 Mar · opportunity 15 Mar (skips MQL and SQL) · won 22 Mar    Referral; level hot
    L  lead 1 Jan · MQL 5 Jan · SQL 6 Jan · opportunity 1 Feb · customer 10 Mar     level hot
    M  lead 1 Mar · MQL 15 Mar 10:00 · recycled 20 Mar     LinkedIn / abm; SLA expired (120 h)
    N  lead 1 Feb · MQL 20 Feb · recycled 8 Mar   rejected "bad timing" 8 Mar (384 h);
       "converted" outcome dated 1 Feb, before it was an MQL: not a result of that MQL
    P  lead 1 Jan · MQL 3 Jan · SQL 4 Jan · lost 1 Feb                         level hot
"""

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from leads.models import Activity, ActivityType, AuditEntry, CampaignCost, Contact, HandoffDecision, StageChange
from leads.reports import Period, Report
from leads.reports.tables import TABLES
from leads.roles import MANAGER, SALES
from nurturing.models import Enrolment, OutboundEmail, Sequence, SequenceStep, StepSend
from scoring.models import ModelVersion, MqlQualification

from ..factories import (
    ActivityFactory,
    CampaignCostFactory,
    ContactFactory,
    HandoffDecisionFactory,
    OutcomeFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

RANGE = Period(date(2025, 3, 5), date(2025, 3, 23))
QUERY = {"start": "2025-03-05", "end": "2025-03-23", "deal_value": "12000"}


def at(day: int, hour: int = 10, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=UTC)


def contact_with_path(*steps, **fields) -> Contact:
    """A contact whose stage history is `steps`: (stage, when) pairs in order."""
    contact = ContactFactory(**fields)
    previous = ""
    for stage, when in steps:
        StageChange.objects.create(contact=contact, from_stage=previous, to_stage=stage, changed_at=when)
        previous = stage
    Contact.objects.filter(pk=contact.pk).update(lifecycle_stage=previous)
    return contact


def qualify(contact: Contact, level: str, when: datetime) -> None:
    MqlQualification.objects.create(
        contact=contact,
        version=ModelVersion.objects.get(status="active"),
        level=level,
        total=80,
        fit=40,
        engagement=40,
        fit_grade="A",
        qualified_at=when,
    )


def touch(contact: Contact, type_key: str, when: datetime, **properties) -> Activity:
    return ActivityFactory(
        contact=contact, type=ActivityType.objects.get(key=type_key), occurred_at=when, properties=properties
    )


def decide(contact: Contact, decision: str, mql_at: datetime, decided_at: datetime, reason: str = "") -> None:
    HandoffDecisionFactory(contact=contact, decision=decision, reason=reason, mql_at=mql_at, decided_at=decided_at)


@pytest.fixture
def utc(settings):
    settings.TIME_ZONE = "UTC"


@pytest.fixture
def contacts(utc):
    c = {}
    c["A"] = contact_with_path(
        ("lead", at(20, month=2)),
        ("mql", at(6)),
        ("sql", at(7)),
        ("opportunity", at(20)),
        ("customer", at(2, month=4)),
        lead_source="Paid Search",
        utm_campaign="brand-search",
    )
    c["B"] = contact_with_path(
        ("lead", at(5, 9)), ("mql", at(10, 12)), ("recycled", at(12, 12)), lead_source="LinkedIn", utm_campaign="abm"
    )
    c["C"] = contact_with_path(("lead", at(8)), ("mql", at(18, 9)), ("sql", at(18, 15)), lead_source="Webinar")
    c["D"] = contact_with_path(
        ("lead", at(10)), ("mql", at(21)), lead_source="Paid Search", utm_campaign="brand-search"
    )
    c["E"] = contact_with_path(("lead", at(1, month=2)), ("mql", at(10, month=2)), ("sql", at(6)))
    c["F"] = contact_with_path(("subscriber", at(6)), ("mql", at(24, 0)))
    c["G"] = contact_with_path(("lead", at(23, 23, 30)), ("mql", at(24, 0)))
    c["H"] = contact_with_path(("lead", at(5, 0)))
    c["I"] = contact_with_path(("lead", at(4, 23, 59)), ("mql", at(12, 12)), ("recycled", at(14, 0)))
    c["J"] = contact_with_path(
        ("lead", at(5, month=1)), ("mql", at(10, month=1)), ("recycled", at(12, month=1)), ("mql", at(11))
    )
    c["K"] = contact_with_path(("lead", at(6)), ("opportunity", at(15)), lead_source="Referral")
    c["L"] = contact_with_path(
        ("lead", at(1, month=1)),
        ("mql", at(5, month=1)),
        ("sql", at(6, month=1)),
        ("opportunity", at(1, month=2)),
        ("customer", at(10)),
    )
    c["M"] = contact_with_path(
        ("lead", at(1)), ("mql", at(15)), ("recycled", at(20)), lead_source="LinkedIn", utm_campaign="abm"
    )
    c["N"] = contact_with_path(("lead", at(1, month=2)), ("mql", at(20, month=2)), ("recycled", at(8)))
    c["P"] = contact_with_path(("lead", at(1, month=1)), ("mql", at(3, month=1)), ("sql", at(4, month=1)))
    return c


@pytest.fixture
def decisions(contacts):
    c = contacts
    decide(c["A"], "accepted", at(6), at(7))  # 24 h
    decide(c["B"], "rejected", at(10, 12), at(12, 12), "bad_timing")  # 48 h
    decide(c["C"], "accepted", at(18, 9), at(18, 15))  # 6 h
    decide(c["E"], "accepted", at(10, month=2), at(6))  # 24 days = 576 h
    decide(c["I"], "rejected", at(12, 12), at(14, 0), "no_budget")  # 36 h
    decide(c["M"], "rejected", at(15), at(20), "sla_expired")  # 120 h
    decide(c["N"], "rejected", at(20, month=2), at(8), "bad_timing")  # 16 days = 384 h
    decide(c["J"], "rejected", at(10, month=1), at(12, month=1), "no_authority")  # before the range
    decide(c["G"], "accepted", at(24, 0), at(24, 0))  # the first instant after the range


@pytest.fixture
def touches(contacts):
    c = contacts
    # A (MQL 6 Mar 10:00): brand-search (its own first touch again) and Webinar invitation;
    # a newsletter opened after it became an MQL earns nothing.
    touch(c["A"], "page_view", at(4), utm_campaign="brand-search", url="/pricing")
    touch(c["A"], "email_click", at(5), campaign="Webinar invitation")
    touch(c["A"], "email_open", at(8), campaign="Monthly newsletter")
    # B (MQL 10 Mar 12:00): abm (first touch) and the Welcome sequence (a nurture email's
    # "Welcome · step 1" credits the sequence); the newsletter it unsubscribed from earns nothing.
    touch(c["B"], "unsubscribe", at(9), campaign="Monthly newsletter")
    # C (MQL 18 Mar 09:00): three campaigns; where an activity names both, utm_campaign wins.
    touch(c["C"], "page_view", at(17), utm_campaign="lead-scoring-generic")
    touch(c["C"], "email_click", at(16), campaign="Webinar invitation")
    touch(c["C"], "email_open", at(16, 12), utm_campaign="retarget", campaign="Webinar invitation")
    # K (reached MQL 15 Mar 10:00): one campaign twice, the second exactly as it qualified.
    touch(c["K"], "email_open", at(14), campaign="Webinar invitation")
    touch(c["K"], "email_open", at(15), campaign="Webinar invitation")
    # M: a bounce earns nothing, so M credits abm alone.
    touch(c["M"], "email_bounce", at(14), campaign="Monthly newsletter", kind="hard")


@pytest.fixture
def costs(db):
    CampaignCostFactory(
        campaign="brand-search", period_start=date(2025, 3, 1), period_end=date(2025, 3, 31), amount=Decimal("3100")
    )
    CampaignCostFactory(
        campaign="Webinar invitation",
        period_start=date(2025, 3, 10),
        period_end=date(2025, 3, 20),
        amount=Decimal("550"),
    )
    CampaignCostFactory(
        campaign="abm",
        period_start=date(2025, 2, 1),
        period_end=date(2025, 2, 28),
        amount=Decimal("1000"),
        currency="USD",
    )
    CampaignCostFactory(
        campaign="abm",
        period_start=date(2025, 3, 20),
        period_end=date(2025, 4, 8),
        amount=Decimal("400"),
        currency="USD",
    )
    CampaignCostFactory(campaign="old-campaign", period_start=date(2025, 1, 1), period_end=date(2025, 1, 31))
    CampaignCostFactory(
        campaign="radio", period_start=date(2025, 3, 5), period_end=date(2025, 3, 23), amount=Decimal("700")
    )


@pytest.fixture
def outcomes_and_levels(contacts):
    c = contacts
    OutcomeFactory(contact=c["B"], kind="not_converted", occurred_at=at(22))
    OutcomeFactory(contact=c["I"], kind="not_converted", occurred_at=at(20))
    OutcomeFactory(contact=c["K"], kind="won", occurred_at=at(22))
    OutcomeFactory(contact=c["N"], kind="converted", occurred_at=at(1, month=2), source="import")
    OutcomeFactory(contact=c["P"], kind="lost", occurred_at=at(1, month=2))
    OutcomeFactory(contact=c["D"], kind="won", occurred_at=at(25))  # after the range: not known at its end
    for letter, level, when in [
        ("A", "hot", at(6)),
        ("B", "warm", at(10, 12)),
        ("D", "hot", at(21)),
        ("D", "warm", at(25)),  # after the range: D is still "hot" at its end
        ("I", "warm", at(12, 12)),
        ("J", "hot", at(10, month=1)),
        ("J", "warm", at(11)),  # the latest qualification counts
        ("K", "hot", at(14)),
        ("L", "hot", at(5, month=1)),
        ("P", "hot", at(3, month=1)),
    ]:
        qualify(c[letter], level, when)


@pytest.fixture
def nurture(contacts):
    c = contacts
    welcome = Sequence.objects.create(name="Welcome", status="active")
    reengage = Sequence.objects.create(name="Re-engage", status="active")
    Sequence.objects.create(name="Dormant")
    steps = {
        (seq.name, n): SequenceStep.objects.create(sequence=seq, position=n, subject=f"Step {n}", body="Hi")
        for seq in (welcome, reengage)
        for n in (1, 2)
    }
    enrol = {
        "B": Enrolment.objects.create(sequence=welcome, contact=c["B"], enrolled_at=at(6)),
        "D": Enrolment.objects.create(sequence=welcome, contact=c["D"], enrolled_at=at(22)),  # after its MQL
        "H": Enrolment.objects.create(
            sequence=welcome,
            contact=c["H"],
            enrolled_at=at(7),
            status="exited",
            exited_at=at(9),
            exit_reason="unsubscribed",
        ),
        "J": Enrolment.objects.create(sequence=reengage, contact=c["J"], enrolled_at=at(1, month=2)),
    }

    def email(letter, sequence, step, sent_at, status="sent"):
        message = OutboundEmail.objects.create(
            key=f"{letter}-{sequence}-{step}",
            to=f"{letter}@example.com",
            contact=c[letter],
            subject="Hi",
            body_text="Hi",
            marketing=True,
            status=status,
            next_attempt_at=sent_at or at(1),
            sent_at=sent_at,
        )
        StepSend.objects.create(enrolment=enrol[letter], step=steps[(sequence, step)], email=message)
        return message

    e1 = email("B", "Welcome", 1, at(6))
    e2 = email("H", "Welcome", 1, at(7))
    e3 = email("D", "Welcome", 1, at(22))
    e4 = email("J", "Re-engage", 1, at(2, month=2))
    email("J", "Re-engage", 2, at(9))
    email("H", "Welcome", 2, None, status="failed")
    touch(c["B"], "email_open", at(7), email_id=e1.pk, campaign="Welcome · step 1")
    touch(c["B"], "email_open", at(7, 11), email_id=e1.pk, campaign="Welcome · step 1")  # opened twice: one email
    touch(c["B"], "email_click", at(7, 12), email_id=e1.pk, campaign="Welcome · step 1", url="https://example.com")
    touch(c["H"], "email_open", at(8), email_id=e2.pk, campaign="Welcome · step 1")
    touch(c["D"], "email_open", at(25), email_id=e3.pk, campaign="Welcome · step 1")  # after the range
    touch(c["J"], "email_open", at(6), email_id=e4.pk, campaign="Re-engage · step 1")  # sent before the range


@pytest.fixture
def dataset(contacts, decisions, touches, costs, outcomes_and_levels, nurture):
    return contacts


def report(period=RANGE, deal_value=Decimal("12000")) -> Report:
    return Report(period, deal_value=deal_value)


# --- the numbers ---------------------------------------------------------------------------------


def test_funnel_counts_each_contact_once_at_its_first_arrival_and_converts_by_the_range_end(dataset):
    steps = {step.stage: step for step in report().funnel}
    # Lead: B, C, D, G (23:30 on the last day), H (00:00 on the first), K. Not A, E, I (4 Mar
    # 23:59), J, L, M, N, P (leads before the range) nor F (a subscriber until 24 Mar).
    # Of them B, C, D and K (via its opportunity) reached MQL by the end; G only at 24 Mar 00:00.
    assert (steps["lead"].reached, steps["lead"].went_on) == (6, 4)
    assert steps["lead"].conversion == Fraction(4, 6)
    # MQL: A, B, C, D, I, K (its opportunity passes MQL), M. J qualified again but first in January.
    # On to SQL or beyond by the end: A, C, K.
    assert (steps["mql"].reached, steps["mql"].went_on) == (7, 3)
    # SQL: A, C, E, K; of them A and K reached opportunity. Opportunity: A and K, neither customer
    # by the end (A only on 2 Apr). Customer: L.
    assert (steps["sql"].reached, steps["sql"].went_on) == (4, 2)
    assert (steps["opportunity"].reached, steps["opportunity"].went_on) == (2, 0)
    assert (steps["customer"].reached, steps["customer"].went_on) == (1, None)


def test_hand_off_acceptance_rate_and_median_times(dataset):
    handoffs = report().handoffs
    # In the range: accepted A, C, E; rejected B, I, M, N. J's decision (January) and G's
    # (24 Mar 00:00) are outside it.
    assert (handoffs.accepted, handoffs.rejected) == (3, 4)
    assert handoffs.acceptance_rate == Fraction(3, 7)
    # Hours: 6, 24, 36, 48, 120, 384, 576 → the middle one is 48.
    assert handoffs.median_wait == timedelta(hours=48)
    # Accepted 6, 24, 576 → 24. Rejected 36, 48, 120, 384 → (48 + 120) / 2 = 84.
    assert handoffs.median_wait_accepted == timedelta(hours=24)
    assert handoffs.median_wait_rejected == timedelta(hours=84)


def test_rejection_reasons_most_frequent_first(dataset):
    reasons = [(r.label, r.count, r.share) for r in report().rejection_reasons]
    assert reasons == [
        ("Bad timing", 2, Fraction(1, 2)),  # B and N
        ("No budget", 1, Fraction(1, 4)),  # I
        ("SLA expired", 1, Fraction(1, 4)),  # M
    ]


def test_mqls_by_lead_source(dataset):
    rows = [(row.source, row.mqls) for row in report().sources]
    # A, D Paid Search; B, M LinkedIn; C Webinar; K Referral; I none. Ties by name, unknown last.
    assert rows == [("LinkedIn", 2), ("Paid Search", 2), ("Referral", 1), ("Webinar", 1), ("", 1)]


def test_first_touch_and_linear_credit_per_campaign(dataset):
    credit = {row.campaign: (row.first_touch, row.linear) for row in report().campaigns}
    # First touch: A, D brand-search; B, M abm; C, I, K none.
    # Linear: A ½ brand-search ½ Webinar invitation; B ½ abm ½ Welcome (the nurture email it
    # opened before qualifying); C ⅓ each lead-scoring-generic, retarget, Webinar invitation;
    # D 1 brand-search; I 1 none; K 1 Webinar invitation; M 1 abm (its bounce earns nothing).
    assert credit == {
        "": (3, Fraction(1)),
        "abm": (2, Fraction(3, 2)),
        "brand-search": (2, Fraction(3, 2)),
        "Webinar invitation": (0, Fraction(1, 2) + Fraction(1, 3) + 1),
        "Welcome": (0, Fraction(1, 2)),
        "lead-scoring-generic": (0, Fraction(1, 3)),
        "retarget": (0, Fraction(1, 3)),
        "radio": (0, Fraction(0)),  # costs, no MQLs
    }
    assert sum(first for first, _ in credit.values()) == 7
    assert sum(linear for _, linear in credit.values()) == 7


def test_cost_per_mql_counts_costs_pro_rata_by_day_and_keeps_currencies_apart(dataset):
    rows = {(row.campaign, row.currency): row for row in report().campaigns if row.cost is not None}
    # brand-search: 3,100 over March's 31 days, 19 of them in the range → 1,900;
    # per MQL 1,900 / 2 = 950 first touch, 1,900 / 1.5 = 1,266.67 linear.
    brand = rows[("brand-search", "EUR")]
    assert (brand.cost, brand.cost_per_mql_first_touch, brand.cost_per_mql_linear) == (
        Decimal("1900.00"),
        Decimal("950.00"),
        Decimal("1266.67"),
    )
    # Webinar invitation: 550 inside the range, no first touches, 11/6 linear → 300.
    webinar = rows[("Webinar invitation", "EUR")]
    assert (webinar.cost, webinar.cost_per_mql_first_touch, webinar.cost_per_mql_linear) == (
        Decimal("550.00"),
        None,
        Decimal("300.00"),
    )
    # abm in USD: February's cost is outside the range; 400 over 20 days from 20 Mar, 4 in it → 80.
    abm = rows[("abm", "USD")]
    assert (abm.cost, abm.cost_per_mql_first_touch, abm.cost_per_mql_linear) == (
        Decimal("80.00"),
        Decimal("40.00"),
        Decimal("53.33"),
    )
    assert ("old-campaign", "EUR") not in rows
    # All spend over all 7 MQLs: EUR 1,900 + 550 + 700 (radio) = 3,150 → 450; USD 80 → 11.43.
    totals = report()
    assert totals.spend == {"EUR": Decimal("3150.00"), "USD": Decimal("80.00")}
    assert totals.cost_per_mql == {"EUR": Decimal("450.00"), "USD": Decimal("11.43")}


def test_expected_value_of_open_mqls(dataset):
    value = report().expected_value
    levels = {row.level: row for row in value.levels}
    # Open at the end (last stage MQL): D (hot) and J (warm, its latest qualification).
    # Known results since first becoming an MQL, by the end: K won and L customer (hot);
    # P lost (hot); B and I lost (warm). A, C, E, M: nothing yet; D's win is after the end;
    # N's "converted" predates its MQL. Overall 2 of 5 = 40 %.
    assert value.overall_rate == Fraction(2, 5)
    assert (levels["hot"].open, levels["hot"].known, levels["hot"].converted) == (1, 3, 2)
    assert (levels["warm"].open, levels["warm"].known, levels["warm"].converted) == (1, 2, 0)
    # With 10 imaginary MQLs at 40 %: hot (2 + 4) / (3 + 10) = 6/13; warm (0 + 4) / (2 + 10) = 1/3.
    assert levels["hot"].probability == Fraction(6, 13)
    assert levels["warm"].probability == Fraction(1, 3)
    # 12,000 × 6/13 = 5,538.46; 12,000 × 1/3 = 4,000.
    assert levels["hot"].expected_value == Decimal("5538.46")
    assert levels["warm"].expected_value == Decimal("4000.00")
    assert (value.open, value.total) == (2, Decimal("9538.46"))


def test_weekly_trend_has_every_week_of_the_range_and_says_which_are_partial(dataset):
    weeks = [(week.monday, week.days_in_range, week.mqls) for week in report().weeks]
    assert weeks == [
        (date(2025, 3, 3), 5, 1),  # Wed 5 – Sun 9: A
        (date(2025, 3, 10), 7, 4),  # B, I, K and M (Saturday 15th)
        (date(2025, 3, 17), 7, 2),  # C, D
    ]


def test_nurture_performance_per_sequence(dataset):
    rows = {row.sequence: row for row in report().nurture}
    welcome = rows["Welcome"]
    # Enrolled in the range: B, D, H; H unsubscribed; B became an MQL after enrolling (D before).
    # Sent in the range: B's, H's and D's first emails (H's second failed); opened by the end:
    # B's (twice, one email) and H's; clicked: B's.
    assert (welcome.enrolled, welcome.unsubscribed, welcome.became_mql) == (3, 1, 1)
    assert (welcome.sent, welcome.opened, welcome.clicked) == (3, 2, 1)
    assert (welcome.open_rate, welcome.click_rate) == (Fraction(2, 3), Fraction(1, 3))
    # Re-engage: J enrolled in February and qualified again on 11 Mar; its February email's
    # open does not count, its March email was not opened.
    reengage = rows["Re-engage"]
    assert (reengage.enrolled, reengage.sent, reengage.opened, reengage.became_mql) == (0, 1, 0, 1)
    assert (rows["Dormant"].enrolled, rows["Dormant"].sent, rows["Dormant"].open_rate) == (0, 0, None)


def test_moving_the_range_by_a_day_moves_the_boundary_contacts(dataset):
    # One day later (6–24 Mar): H (5 Mar 00:00) and B (5 Mar 09:00) are no longer leads of the
    # range; G's and F's MQLs (24 Mar 00:00) now are.
    later = Report(Period(date(2025, 3, 6), date(2025, 3, 24)), deal_value=Decimal(1))
    steps = {step.stage: step.reached for step in later.funnel}
    assert steps["lead"] == 5  # C, D, F (its MQL passes lead), G, K
    assert {m.contact_id for m in later.mqls} == {dataset[x].pk for x in "ABCDFGIKM"}


# --- the page, its CSV files and its permissions ---------------------------------------------------


def test_the_page_shows_the_numbers_charts_and_explanations(client, marketer, dataset):
    client.force_login(marketer)
    response = client.get(reverse("leads:report"), QUERY)
    assert response.status_code == 200
    page = response.content.decode()
    assert "5 Mar 2025 – 23 Mar 2025 (19 days)" in page
    assert "<dt>MQL → SQL acceptance</dt><dd>42.9 %</dd>" in page  # 3 of 7
    assert "<dt>Median MQL to hand-off</dt><dd>2 d 0 h</dd>" in page  # 48 h
    assert '<dt>Cost per MQL</dt><dd>450.00 <small class="muted">EUR</small></dd>' in page
    assert "<dt>Expected value of open MQLs</dt><dd>9,538.46" in page
    assert page.count('<svg class="chart') == 4  # funnel, reasons, weekly, sources
    assert "imaginary MQLs" in page
    for slug in TABLES:
        assert f'href="/reports/{slug}.csv?start=2025-03-05&amp;end=2025-03-23&amp;deal_value=12000"' in page


def test_the_campaign_csv_has_a_row_per_campaign_and_currency_and_the_totals(client, marketer, dataset):
    client.force_login(marketer)
    response = client.get(reverse("leads:report_csv", args=["campaigns"]), QUERY)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="campaigns-2025-03-05-to-2025-03-23.csv"' in response["Content-Disposition"]
    assert response.content.decode().splitlines() == [
        'Campaign,"MQLs, first touch","MQLs, linear",Cost in range,Currency,"Cost per MQL, first touch",'
        '"Cost per MQL, linear"',
        "(no campaign),3,1.00,,,,",
        "abm,2,1.50,80.00,USD,40.00,53.33",
        "brand-search,2,1.50,1900.00,EUR,950.00,1266.67",
        "Webinar invitation,0,1.83,550.00,EUR,,300.00",
        "Welcome,0,0.50,,,,",
        "lead-scoring-generic,0,0.33,,,,",
        "retarget,0,0.33,,,,",
        "radio,0,0.00,700.00,EUR,,",
        "All campaigns,7,7.00,3150.00,EUR,450.00,450.00",
        "All campaigns,7,7.00,80.00,USD,11.43,11.43",
    ]


def test_every_table_exports_its_page_numbers_as_plain_numbers(client, marketer, dataset):
    client.force_login(marketer)
    lines = {
        slug: client.get(reverse("leads:report_csv", args=[slug]), QUERY).content.decode().splitlines()
        for slug in TABLES
    }
    assert lines["funnel"][1:3] == ["Lead,6,4,66.7", "Marketing-qualified lead,7,3,42.9"]
    assert lines["handoff"] == [
        "Decision,Decisions,Share (%),Median MQL to decision (hours)",
        "Accepted,3,42.9,24.0",
        "Rejected,4,57.1,84.0",
        "All decisions,7,100.0,48.0",
    ]
    assert lines["rejection-reasons"][1] == "Bad timing,2,50.0"
    assert lines["sources"][-1] == "All MQLs,7,100.0"
    assert lines["weekly"][1] == "2025-03-03,5,1"
    assert lines["expected-value"][1] == "hot,1,3,2,66.7,46.2,5538.46"
    assert lines["nurture"][1:] == [
        "Dormant,Draft,0,0,0,,0,,0,0",
        "Re-engage,Active,0,1,0,0.0,0,0.0,0,1",
        "Welcome,Active,3,3,2,66.7,1,33.3,1,1",
    ]


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_defused(client, marketer, utc):
    for number, campaign in enumerate(['=HYPERLINK("http://evil")', "+1", "-2", "@SUM(A1)", "plain"]):
        contact_with_path(("lead", at(5)), ("mql", at(6, 10, number)), utm_campaign=campaign)
    client.force_login(marketer)
    body = client.get(reverse("leads:report_csv", args=["campaigns"]), QUERY).content.decode()
    rows = list(csv.reader(io.StringIO(body)))[1:-1]  # without the header and the totals
    assert sorted(row[0] for row in rows) == ["'+1", "'-2", '\'=HYPERLINK("http://evil")', "'@SUM(A1)", "plain"]


def test_the_default_range_is_the_last_90_days(client, marketer, utc):
    client.force_login(marketer)
    page = client.get(reverse("leads:report")).content.decode()
    today = timezone.localdate()
    start = today - timedelta(days=89)
    assert f"{start.day} {start:%b %Y} – {today.day} {today:%b %Y} (90 days)" in page
    assert f'name="start" value="{start.isoformat()}"' in page  # the form shows the range it reports on


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"start": "2025-02-30"}, "Enter a valid date."),
        ({"start": "2025-03-10", "end": "2025-03-01"}, "The range ends before it starts."),
        ({"start": "2020-01-01", "end": "2025-01-01"}, "at most three years"),
        ({"start": "0001-01-01", "end": "0001-01-02"}, "between 2000 and 2099"),
        ({"deal_value": "-5"}, "greater than or equal to 0"),
        ({"deal_value": "lots"}, "Enter a number."),
    ],
)
def test_bad_input_shows_form_errors_and_no_numbers(client, marketer, query, message):
    client.force_login(marketer)
    response = client.get(reverse("leads:report"), query)
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page
    assert "Please correct the range above" in page and 'id="table-funnel"' not in page
    csv_response = client.get(reverse("leads:report_csv", args=["funnel"]), query)
    assert csv_response.status_code == 400
    assert message in csv_response.content.decode()


def test_an_unknown_table_is_not_found(client, marketer):
    client.force_login(marketer)
    assert client.get("/reports/secrets.csv").status_code == 404


@pytest.mark.parametrize("url", ["/reports/", "/reports/funnel.csv", "/reports/costs/"])
def test_anonymous_visitors_are_sent_to_log_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("url", ["/reports/", "/reports/funnel.csv", "/reports/costs/"])
def test_sales_reps_are_forbidden(rep_client, url):
    assert rep_client.get(url).status_code == 403


def test_managers_and_admins_see_reports_but_only_marketing_enters_costs(client, admin_user):
    manager = UserFactory(username="manager", roles=[SALES, MANAGER])
    client.force_login(manager)
    assert client.get("/reports/").status_code == 200
    assert client.get("/reports/funnel.csv").status_code == 200
    assert client.get("/reports/costs/").status_code == 403
    assert 'href="/reports/"' in client.get("/queue/").content.decode()  # the nav offers it
    client.force_login(admin_user)
    assert client.get("/reports/costs/").status_code == 200


def test_reps_see_no_reports_link(rep_client):
    assert 'href="/reports/"' not in rep_client.get("/queue/").content.decode()


# --- campaign costs -----------------------------------------------------------------------------------


COST = {
    "campaign": " spring-webinar ",
    "name": "Spring webinar ads",
    "period_start": "2025-03-01",
    "period_end": "2025-03-31",
    "amount": "1250.50",
    "currency": "eur",
}


def test_a_marketer_enters_a_cost_and_it_is_audited(marketer_client, marketer):
    response = marketer_client.post(reverse("leads:cost_list"), COST, follow=True)
    assert "Cost for “spring-webinar” saved." in response.content.decode()
    cost = CampaignCost.objects.get()
    assert (cost.campaign, cost.amount, cost.currency, cost.created_by) == (
        "spring-webinar",
        Decimal("1250.50"),
        "EUR",
        marketer,
    )
    entry = AuditEntry.objects.get(action="campaign_cost.create")
    assert (entry.actor, entry.after["amount"]) == (marketer, "1250.50")


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"period_end": "2025-02-01"}, "period_end", "The period ends before it starts."),
        ({"amount": "-1"}, "amount", "greater than or equal to 0"),
        ({"amount": "abc"}, "amount", "Enter a number."),
        ({"currency": "EURO"}, "currency", "at most 3 characters"),
        ({"currency": "E1"}, "currency", "three-letter currency code"),
        ({"campaign": "   "}, "campaign", "This field is required."),
        ({"period_start": "2025-13-01"}, "period_start", "Enter a valid date."),
    ],
)
def test_a_bad_cost_is_refused_with_a_message(marketer_client, change, field, message):
    response = marketer_client.post(reverse("leads:cost_list"), {**COST, **change})
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert not CampaignCost.objects.exists()


def test_a_cost_overlapping_another_for_the_same_campaign_is_refused(marketer_client):
    CampaignCostFactory(campaign="spring-webinar", period_start=date(2025, 3, 20), period_end=date(2025, 4, 10))
    response = marketer_client.post(reverse("leads:cost_list"), COST)
    assert "already has a cost from 2025-03-20 to 2025-04-10" in response.content.decode()
    assert CampaignCost.objects.count() == 1
    # Another currency, or days the first does not cover, are fine.
    assert marketer_client.post(reverse("leads:cost_list"), {**COST, "currency": "USD"}).status_code == 302
    assert marketer_client.post(reverse("leads:cost_list"), {**COST, "period_end": "2025-03-19"}).status_code == 302


def test_a_marketer_edits_and_deletes_a_cost(marketer_client, marketer):
    cost = CampaignCostFactory(campaign="spring-webinar", period_start=date(2025, 3, 1), period_end=date(2025, 3, 31))
    response = marketer_client.post(reverse("leads:cost_edit", args=[cost.pk]), {**COST, "amount": "99"})
    assert response.status_code == 302
    cost.refresh_from_db()
    assert cost.amount == Decimal("99.00")
    assert AuditEntry.objects.get(action="campaign_cost.update").before["amount"] == "1000.00"

    assert marketer_client.get(reverse("leads:cost_delete", args=[cost.pk])).status_code == 405
    response = marketer_client.post(reverse("leads:cost_delete", args=[cost.pk]), follow=True)
    assert "deleted" in response.content.decode()
    assert not CampaignCost.objects.exists()
    assert AuditEntry.objects.filter(action="campaign_cost.delete", object_id=str(cost.pk)).exists()


def test_cost_forms_need_a_csrf_token(marketer):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(marketer)
    assert csrf_client.post(reverse("leads:cost_list"), COST).status_code == 403
    page = csrf_client.get(reverse("leads:cost_list")).content.decode()
    assert 'name="csrfmiddlewaretoken"' in page
    assert not CampaignCost.objects.exists()


def test_reps_and_managers_cannot_change_costs(rep_client):
    cost = CampaignCostFactory()
    assert rep_client.post(reverse("leads:cost_list"), COST).status_code == 403
    assert rep_client.post(reverse("leads:cost_delete", args=[cost.pk])).status_code == 403
    assert rep_client.post(reverse("leads:cost_edit", args=[cost.pk]), COST).status_code == 403
    assert CampaignCost.objects.count() == 1


def test_campaign_names_from_outside_are_escaped(marketer_client, utc):
    contact_with_path(("lead", at(5)), ("mql", at(6)), utm_campaign="<script>alert(1)</script>")
    CampaignCostFactory(campaign="<b>bold</b>", period_start=date(2025, 3, 1), period_end=date(2025, 3, 31))
    report_page = marketer_client.get(reverse("leads:report"), QUERY).content.decode()
    costs_page = marketer_client.get(reverse("leads:cost_list")).content.decode()
    assert "<script>alert(1)</script>" not in report_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report_page
    assert "<b>bold</b>" not in costs_page and "&lt;b&gt;bold&lt;/b&gt;" in costs_page


# --- demo data ---------------------------------------------------------------------------------------


def seed_demo():
    call_command(
        "seed_demo",
        *("--seed", "7", "--as-of", "2025-06-30", "--accounts", "20", "--contacts", "300", "--activities", "4000"),
        verbosity=0,
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )


def test_the_demo_gives_every_sales_section_numbers_and_a_second_run_adds_none(rep, utc):
    seed_demo()
    demo = Report(Period(date(2025, 1, 1), date(2025, 6, 29)), deal_value=Decimal(10000))
    assert demo.handoffs.accepted and demo.handoffs.rejected and demo.rejection_reasons
    assert demo.spend["EUR"] > 0 and any(row.cost_per_mql_first_touch for row in demo.campaigns)
    # Each decision matches the stage history: the contact moved to its stage at that moment.
    for decision in HandoffDecision.objects.all():
        assert StageChange.objects.filter(
            contact=decision.contact_id, from_stage="mql", to_stage=decision.to_stage, changed_at=decision.decided_at
        ).exists()
    counts = (HandoffDecision.objects.count(), CampaignCost.objects.count())
    seed_demo()
    assert (HandoffDecision.objects.count(), CampaignCost.objects.count()) == counts


def test_the_page_runs_the_same_number_of_queries_however_many_mqls(client, marketer, dataset):
    client.force_login(marketer)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("leads:report"), QUERY).status_code == 200
        return len(captured)

    before = queries()
    for day in range(6, 16):
        contact = contact_with_path(("lead", at(5)), ("mql", at(day)), utm_campaign=f"campaign-{day}")
        touch(contact, "email_click", at(day, 9), campaign=f"email-{day}")
        decide(contact, "rejected", at(day), at(day, 12), "no_budget")
    assert queries() == before
