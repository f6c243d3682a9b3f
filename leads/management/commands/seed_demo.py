"""Fill an empty CRM with a realistic, reproducible funnel for demos and scoring work.

Every account and contact gets a hidden propensity to buy. Firmographics, titles, lead
sources, behaviour, lifecycle history and outcomes are all drawn from it, so they are
correlated the way real funnels are, with enough noise that no single field gives the
answer away. The propensity itself is never stored: scoring has to find it from the data.

All randomness comes from one `random.Random(seed)` and all dates are relative to
`--as-of`, so the same seed and date give the same data.
"""

from __future__ import annotations

import itertools
import math
import random
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from leads import report_demo, services
from leads.models import (
    Account,
    Activity,
    ActivityType,
    CampaignCost,
    ConsentStatus,
    Contact,
    CustomAttribute,
    HandoffDecision,
    LeadFeedback,
    LifecycleStage,
    Outcome,
    RejectReason,
    Seniority,
    StageChange,
)
from leads.normalise import normalise_email
from leads.roles import SALES
from nurturing.demo import demo_sequences_create
from scoring.services import engagement_rebuild

# Reserved by RFC 2606, so no demo company address can ever deliver mail.
DEMO_DOMAIN_SUFFIX = ".demo.example"
DEMO_EXTERNAL_ID_PREFIX = "demo-"
ACTIVITY_SOURCE = "demo"
WINDOW_DAYS = 180
# A contact whose last activity is older than this has a known outcome.
OUTCOME_AFTER_DAYS = 30
BATCH_SIZE = 2000

FIRST_NAMES = """James Mary Robert Patricia Michael Jennifer David Linda William Elizabeth Daniel
Sarah Thomas Emma Lukas Anna Jonas Lena Felix Sophie Louis Chloe Hugo Camille Pablo Lucia Javier
Carmen Lars Ingrid Erik Astrid Priya Arjun Ananya Rahul Wei Mei Kenji Yuki Olivia Noah Zoë José
Ahmed Fatima Omar Leila Sean Aoife Mateo Valentina""".split()
LAST_NAMES = """Smith Johnson Williams Brown Jones Miller Davis Wilson Taylor Clarke Müller Schmidt
Schneider Fischer Weber Martin Bernard Dubois Laurent Moreau García Fernández López Martínez
Andersson Johansson Nilsson Larsen Jansen Visser Bakker Patel Sharma Gupta Singh Wang Li Chen
Tanaka Suzuki O'Brien Murphy Kelly Rossi Russo Hassan Khan Novak Kowalski""".split()
LOCATIONS = {
    "United States": ["New York", "San Francisco", "Austin", "Chicago", "Boston", "Seattle"],
    "United Kingdom": ["London", "Manchester", "Edinburgh", "Bristol"],
    "Germany": ["Berlin", "Munich", "Hamburg", "Cologne"],
    "France": ["Paris", "Lyon", "Toulouse"],
    "Netherlands": ["Amsterdam", "Rotterdam", "Utrecht"],
    "Spain": ["Madrid", "Barcelona", "Valencia"],
    "Sweden": ["Stockholm", "Gothenburg"],
    "Canada": ["Toronto", "Vancouver", "Montreal"],
    "India": ["Bangalore", "Mumbai", "Pune"],
    "Australia": ["Sydney", "Melbourne"],
}
COUNTRY_WEIGHTS = [30, 15, 14, 8, 6, 5, 4, 7, 6, 5]
IDEAL_INDUSTRIES = ["Software", "SaaS", "Financial Services", "IT Services", "Insurance"]
OTHER_INDUSTRIES = [
    "Retail",
    "Education",
    "Hospitality",
    "Construction",
    "Non-profit",
    "Manufacturing",
    "Agriculture",
    "Government",
]
NAME_STARTS = """North Blue Bright Iron Silver Quantum Atlas Summit Harbor Cedar Red Granite Nova
Clear Swift Pine Golden Vertex Lumen Orbit""".split()
NAME_ENDS = "wind peak stone field bridge light wave grid line path forge works".split()
INDUSTRY_SUFFIXES = {
    "Software": "Software",
    "SaaS": "Cloud",
    "Financial Services": "Capital",
    "IT Services": "Systems",
    "Insurance": "Insurance",
    "Retail": "Stores",
    "Education": "Academy",
    "Hospitality": "Hotels",
    "Construction": "Builders",
    "Non-profit": "Foundation",
    "Manufacturing": "Industries",
    "Agriculture": "Farms",
    "Government": "Agency",
}
# Rival vendors: they read the pricing page a lot and never buy.
COMPETITORS = [("Funnelwise", "funnelwise"), ("LeadLoop", "leadloop"), ("Pipelane", "pipelane")]
FREE_MAIL = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "gmx.de", "icloud.com"]
DEPARTMENTS = ["Marketing", "Sales", "IT", "Engineering", "Finance", "Operations", "HR", "Product"]
C_LEVEL_TITLES = {
    "Marketing": "Chief Marketing Officer",
    "Sales": "Chief Revenue Officer",
    "IT": "Chief Information Officer",
    "Engineering": "Chief Technology Officer",
    "Finance": "Chief Financial Officer",
    "Operations": "Chief Operating Officer",
}
TITLE_PATTERNS = {
    Seniority.INDIVIDUAL: ["{d} Specialist", "{d} Analyst", "{d} Coordinator"],
    Seniority.MANAGER: ["{d} Manager", "Senior {d} Manager", "Team Lead, {d}"],
    Seniority.DIRECTOR: ["Director of {d}", "Head of {d}"],
    Seniority.VP: ["VP {d}", "Vice President, {d}"],
    Seniority.OWNER: ["Founder", "Owner", "Co-founder & CEO"],
    Seniority.STUDENT: ["Student", "MBA Student", "Marketing Student"],
    Seniority.INTERN: ["{d} Intern", "Working Student, {d}"],
}
LEAD_SOURCES = ["Organic Search", "Direct", "Paid Search", "LinkedIn", "Webinar", "Referral", "Trade show"]
PAID_UTM = {
    "Paid Search": (
        "google",
        "cpc",
        ["brand-search", "lead-scoring-generic", "crm-competitors"],
        ["lead scoring software", "mql crm", "b2b crm", "marketing automation"],
    ),
    "LinkedIn": ("linkedin", "paid_social", ["abm-revops-leaders", "webinar-promo"], [""]),
}
LOW_INTENT_PAGES = [
    "/",
    "/blog/what-is-lead-scoring",
    "/blog/email-subject-lines",
    "/about",
    "/blog/b2b-marketing-trends",
    "/blog/marketing-automation-101",
    "/careers",
]
HIGH_INTENT_PAGES = [
    "/product",
    "/product/lead-scoring",
    "/product/integrations",
    "/security",
    "/customers",
    "/customers/fintech-case-study",
    "/docs/api",
]
CAMPAIGNS = [
    "Monthly newsletter",
    "Product update",
    "Webinar invitation",
    "Nurture: lead scoring basics",
    "Nurture: customer stories",
    "Event invitation",
]
ASSETS = [
    "Lead scoring playbook",
    "State of B2B marketing report",
    "MQL-to-SQL benchmark",
    "Marketing automation checklist",
    "ROI calculator",
]
WEBINARS = ["Lead scoring that sales trusts", "From MQL to revenue", "RevOps in practice", "Intent data 101"]
EVENTS = ["B2B Growth Summit", "RevOps Meetup", "MarTech Forum", "SaaS Sales Day"]
# (base weight, weight added at propensity 1, exponent): how often each behaviour occurs.
BEHAVIOUR = {
    "page_view": (40, -20, 1),
    "email_open": (26, -12, 1),
    "email_click": (2.5, 10, 1),
    "pricing_page_view": (0.3, 12, 1.5),
    "content_download": (0.6, 6, 1.2),
    "webinar_registered": (0.3, 5, 1.5),
    "form_submit": (1, 2.5, 1),
    "demo_request": (0.03, 6, 2),
    "trial_signup": (0.03, 4, 2),
    "event_attended": (0.1, 2, 1.5),
    "social_engagement": (2, 2, 1),
    "email_bounce": (0.4, -0.3, 1),
}
COMPETITOR_BEHAVIOUR = {
    "page_view": 30,
    "pricing_page_view": 14,
    "content_download": 4,
    "webinar_registered": 3,
    "email_open": 8,
}
LATE_IN_JOURNEY = {"pricing_page_view", "demo_request", "trial_signup"}
CUSTOM_ATTRIBUTES = [
    ("preferred_language", "Preferred language", CustomAttribute.DataType.TEXT),
    ("current_tool", "Current CRM / tool", CustomAttribute.DataType.TEXT),
    ("budget_confirmed", "Budget confirmed", CustomAttribute.DataType.BOOLEAN),
]
LANGUAGES = {"Germany": "de", "France": "fr", "Spain": "es", "Netherlands": "nl", "Sweden": "sv"}


@dataclass
class AccountPlan:
    account: Account
    propensity: float
    competitor: bool = False


@dataclass
class ContactPlan:
    contact: Contact
    propensity: float
    competitor: bool
    first_at: datetime
    created_at: datetime | None = None  # set with the journey, like last_at
    last_at: datetime | None = None
    activities: list[Activity] = field(default_factory=list)
    stages: list[tuple[str, datetime, str]] = field(default_factory=list)
    outcome: tuple[bool, datetime] | None = None


class Command(BaseCommand):
    help = "Create a realistic, reproducible demo funnel (accounts, contacts, activity, outcomes)."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument(
            "--as-of",
            type=date.fromisoformat,
            default=None,
            help="YYYY-MM-DD; all dates are relative to it (default: today).",
        )
        parser.add_argument("--accounts", type=int, default=300)
        parser.add_argument("--contacts", type=int, default=3000)
        parser.add_argument(
            "--activities",
            type=int,
            default=50000,
            help="Behavioural events to draw; follow-ups (webinar attendance, sales calls, unsubscribes) come on top.",
        )

    def handle(self, *args, seed, as_of, accounts, contacts, activities, verbosity, **options):
        if not 1 <= accounts <= contacts <= activities:
            raise CommandError("Need 1 <= --accounts <= --contacts <= --activities.")
        sequences = demo_sequences_create()
        self.stdout.write(f"Demo nurture sequences: {', '.join(s.name for s in sequences)}.")
        if demo_data_exists():
            self.stdout.write("Demo data is already seeded; nothing to do.")
            return
        as_of = as_of or timezone.localdate()
        started = time.monotonic()
        seeder = DemoSeeder(seed=seed, as_of=as_of, quiet=verbosity == 0)
        # One transaction: an interrupted run leaves nothing that would look "already seeded",
        # and of two concurrent runs the second fails on the unique external ids and rolls back.
        with transaction.atomic():
            counts = seeder.run(accounts=accounts, contacts=contacts, activities=activities)
        summary = ", ".join(f"{number} {name}" for name, number in counts.items())
        self.stdout.write(
            f"Seeded demo data (seed {seed}, as of {as_of}) in {time.monotonic() - started:.1f}s: {summary}."
        )


def demo_data_exists() -> bool:
    return (
        Contact.objects.filter(external_id__startswith=DEMO_EXTERNAL_ID_PREFIX).exists()
        or Account.objects.filter(domain__endswith=DEMO_DOMAIN_SUFFIX).exists()
    )


class DemoSeeder:
    def __init__(self, *, seed: int, as_of: date, quiet: bool = False):
        self.rng = random.Random(seed)
        # Sales history draws from its own stream, so adding it left the rest of the data as it was.
        self.sales_rng = random.Random(f"sales-{seed}")
        self.costs_rng = random.Random(f"campaign-costs-{seed}")  # the same, for campaign costs
        self.end = timezone.make_aware(datetime.combine(as_of, datetime.min.time()))
        self.start = self.end - timedelta(days=WINDOW_DAYS)
        self.quiet = quiet
        self.types = {t.key: t for t in ActivityType.objects.all()}
        self.reps = list(get_user_model().objects.filter(groups__name=SALES).order_by("username"))

    def run(self, *, accounts: int, contacts: int, activities: int) -> dict[str, int]:
        rivals = min(len(COMPETITORS), accounts // 100)
        account_plans = [self.plan_account(number, rival=number < rivals) for number in range(accounts)]
        # Bigger companies have more people on the list; rivals only a handful.
        account_weights = list(
            itertools.accumulate(
                0.3 if plan.competitor else math.log(plan.account.employee_count + 2) for plan in account_plans
            )
        )
        plans = [self.plan_contact(number, account_plans, account_weights) for number in range(contacts)]
        budgets = allocate(activities - contacts, [activity_weight(self.rng, p) for p in plans])
        journeys = list(zip(plans, budgets, strict=True))
        for plan, budget in self.progress(journeys, "Drawing journeys"):
            self.draw_journey(plan, 1 + budget)
        self.write(account_plans, plans)
        outcomes = [plan.outcome for plan in plans if plan.outcome]
        converted = sum(1 for is_converted, _ in outcomes if is_converted)
        return {
            "accounts": accounts,
            "contacts": contacts,
            "activities": sum(len(plan.activities) for plan in plans),
            "stage changes": sum(len(plan.stages) for plan in plans),
            "outcomes": len(outcomes),
            "converted": converted,
        }

    def progress(self, items, description: str):
        return tqdm(items, desc=description, unit="row", disable=self.quiet, leave=False)

    # --- accounts and contacts ------------------------------------------------------------

    def plan_account(self, number: int, *, rival: bool) -> AccountPlan:
        rng = self.rng
        if rival:
            name, slug = COMPETITORS[number]
            account = Account(
                name=name,
                domain=slug + DEMO_DOMAIN_SUFFIX,
                industry="Software",
                employee_count=rng.randint(80, 400),
                country="United States",
            )
            return AccountPlan(account, propensity=0.0, competitor=True)
        propensity = rng.betavariate(1.6, 2.4)
        industry = rng.choice(IDEAL_INDUSTRIES if chance(rng, 0.1 + 0.8 * propensity) else OTHER_INDUSTRIES)
        name = f"{rng.choice(NAME_STARTS)}{rng.choice(NAME_ENDS)} {INDUSTRY_SUFFIXES[industry]}"
        employees = employee_count(rng, propensity)
        account = Account(
            name=name,
            domain=f"{slugify(name)}{number}{DEMO_DOMAIN_SUFFIX}",
            industry=industry,
            employee_count=employees,
            country=rng.choices(list(LOCATIONS), COUNTRY_WEIGHTS)[0],
            annual_revenue=Decimal(employees * rng.randint(60, 260) * 1000),
        )
        return AccountPlan(account, propensity)

    def plan_contact(self, number: int, accounts: list[AccountPlan], account_weights: list[float]) -> ContactPlan:
        rng = self.rng
        free_mail = chance(rng, 0.12)
        account_plan = None if free_mail else rng.choices(accounts, cum_weights=account_weights)[0]
        if account_plan is None:
            propensity = rng.betavariate(1, 7)
        else:
            propensity = 0.65 * account_plan.propensity + 0.35 * rng.betavariate(1.5, 3)
        small = free_mail or account_plan.account.employee_count < 50
        seniority = pick_seniority(rng, propensity, free_mail=free_mail, small_company=small)
        department = rng.choice(["Marketing", "Sales"] if chance(rng, 0.3 + 0.45 * propensity) else DEPARTMENTS)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        account = account_plan.account if account_plan else None
        country = account.country if account else rng.choices(list(LOCATIONS), COUNTRY_WEIGHTS)[0]
        if account:
            email = f"{slugify(first)}.{slugify(last)}+{number}@{account.domain}"
        else:
            # Never a plain first.last at a real free-mail provider: that inbox may exist.
            email = f"{slugify(first)}.{slugify(last)}.demo{number}@{rng.choice(FREE_MAIL)}"
        contact = Contact(
            email=normalise_email(email),
            first_name=first,
            last_name=last,
            account=account,
            job_title=job_title(rng, seniority, department),
            seniority=seniority,
            department="" if seniority == Seniority.STUDENT else department,
            country=country,
            city=rng.choice(LOCATIONS[country]),
            external_id=f"{DEMO_EXTERNAL_ID_PREFIX}{number:05d}",
            attributes={
                "preferred_language": LANGUAGES.get(country, "en"),
                "current_tool": current_tool(rng, propensity),
            },
            **lead_source_fields(rng, propensity),
        )
        first_at = self.start + timedelta(seconds=rng.uniform(0, WINDOW_DAYS * 86400 - 3600))
        competitor = bool(account_plan and account_plan.competitor)
        return ContactPlan(contact, propensity, competitor, first_at)

    # --- behaviour, lifecycle and outcome ---------------------------------------------------

    def draw_journey(self, plan: ContactPlan, count: int) -> None:
        rng = self.rng
        available = (self.end - plan.first_at).total_seconds()
        span = min(available - 60, rng.expovariate(1 / ((10 + 2 * count) * 86400)))
        plan.last_at = plan.first_at + timedelta(seconds=max(span, 600))
        weights = behaviour_weights(plan)
        for type_key in rng.choices(list(weights), list(weights.values()), k=count):
            late = type_key in LATE_IN_JOURNEY
            self.add_activity(plan, type_key, moment(rng, plan.first_at, plan.last_at, late=late))
        self.add_webinar_attendance(plan)
        self.draw_lifecycle(plan)
        self.add_email_ending(plan)
        plan.activities.sort(key=lambda activity: activity.occurred_at)
        plan.contact.lifecycle_stage = plan.stages[-1][0]

    def add_activity(self, plan: ContactPlan, type_key: str, at: datetime, **properties) -> None:
        number = len(plan.activities)
        key = f"{plan.contact.external_id}-{number:04d}"
        plan.activities.append(
            Activity(
                contact=plan.contact,
                type=self.types[type_key],
                occurred_at=at,
                source=ACTIVITY_SOURCE,
                properties=properties or activity_properties(self.rng, type_key, plan.propensity),
                external_id=key,
                dedupe_key=key,
            )
        )

    def add_webinar_attendance(self, plan: ContactPlan) -> None:
        registrations = [a for a in plan.activities if a.type.key == "webinar_registered"]
        for registration in registrations:
            held_at = registration.occurred_at + timedelta(days=self.rng.uniform(1, 14))
            if held_at <= plan.last_at and chance(self.rng, 0.3 + 0.5 * plan.propensity):
                self.add_activity(plan, "webinar_attended", held_at, **registration.properties)

    def draw_lifecycle(self, plan: ContactPlan) -> None:
        """Stage history, sales calls and outcome, consistent with each other in time."""
        rng, p = self.rng, plan.propensity
        created_at = plan.first_at - timedelta(minutes=rng.randint(1, 90))
        plan.created_at = created_at
        initial = LifecycleStage.SUBSCRIBER if chance(rng, 0.4 * (1 - p)) else LifecycleStage.LEAD
        plan.stages.append((initial, created_at, "created"))
        if plan.last_at < self.end - timedelta(days=OUTCOME_AFTER_DAYS):
            self.draw_ended_journey(plan, initial)
        elif initial == LifecycleStage.LEAD and not plan.competitor and chance(rng, p**2 * 1.4):
            mql_at = moment(rng, plan.first_at, plan.last_at, late=True)
            plan.stages.append((LifecycleStage.MQL, mql_at, "score threshold"))
            if chance(rng, 0.4):
                self.qualify(plan, mql_at, self.end)

    def draw_ended_journey(self, plan: ContactPlan, initial: str) -> None:
        rng, p = self.rng, plan.propensity
        closed_at = plan.last_at + timedelta(days=OUTCOME_AFTER_DAYS)
        converts = not plan.competitor and chance(rng, min(0.9, 0.015 + 1.9 * p**3))
        if initial == LifecycleStage.SUBSCRIBER and (converts or chance(rng, 0.3)):
            plan.stages.append((LifecycleStage.LEAD, moment(rng, plan.first_at, plan.last_at), "form submitted"))
        after = plan.stages[-1][1]
        if converts:
            mql_at = moment(rng, after, plan.last_at, late=True)
            plan.stages.append((LifecycleStage.MQL, mql_at, "score threshold"))
            won_at = plan.last_at + timedelta(days=rng.uniform(1, 20))
            self.qualify(plan, mql_at, won_at)
            plan.stages.append((LifecycleStage.OPPORTUNITY, won_at, "opportunity created"))
            customer_at = won_at + timedelta(days=rng.uniform(7, 60))
            if customer_at < self.end and chance(rng, 0.3 + 0.5 * p):
                plan.stages.append((LifecycleStage.CUSTOMER, customer_at, "closed won"))
            plan.contact.attributes["budget_confirmed"] = True
            plan.outcome = (True, won_at)
        else:
            self.close_without_conversion(plan, after, closed_at)
            plan.outcome = (False, closed_at)

    def close_without_conversion(self, plan: ContactPlan, after: datetime, closed_at) -> None:
        rng, current = self.rng, plan.stages[-1][0]
        if plan.competitor or (plan.contact.seniority == Seniority.STUDENT and chance(rng, 0.3)):
            plan.stages.append((LifecycleStage.DISQUALIFIED, closed_at, "disqualified by sales"))
        elif current == LifecycleStage.LEAD and chance(rng, 0.5 * plan.propensity):
            mql_at = moment(rng, after, plan.last_at, late=True)
            plan.stages.append((LifecycleStage.MQL, mql_at, "score threshold"))
            plan.stages.append((LifecycleStage.RECYCLED, closed_at, "no response in 30 days"))

    def qualify(self, plan: ContactPlan, mql_at: datetime, until: datetime) -> None:
        """Sales accepts the MQL, is assigned as owner and calls a few times before `until`."""
        sql_at = mql_at + timedelta(days=self.rng.uniform(0.2, 5))
        if sql_at >= until:
            return
        plan.stages.append((LifecycleStage.SQL, sql_at, "accepted by sales"))
        if self.reps:
            plan.contact.owner = self.rng.choice(self.reps)
        for _ in range(self.rng.randint(1, 4)):
            self.add_activity(plan, "sales_call", moment(self.rng, sql_at, until))

    def add_email_ending(self, plan: ContactPlan) -> None:
        """Some contacts unsubscribe or hard-bounce; either ends their email activity."""
        contact, rng = plan.contact, self.rng
        if chance(rng, 0.7):
            contact.email_consent_status = ConsentStatus.OPTED_IN
            contact.email_consent_at = plan.created_at
            contact.email_consent_source = "web form"
        emails = [a.occurred_at for a in plan.activities if a.type.key.startswith("email_")]
        if not emails or not chance(rng, 0.08 * (1 - plan.propensity) + 0.01):
            return
        # Capped at last_at so a closed journey really has no activity in its last 30 days.
        at = min(max(emails) + timedelta(minutes=rng.randint(1, 30)), plan.last_at)
        hard_bounce = chance(rng, 0.3)
        extra = {"kind": "hard"} if hard_bounce else {}
        self.add_activity(
            plan, "email_bounce" if hard_bounce else "unsubscribe", at, campaign=rng.choice(CAMPAIGNS), **extra
        )
        contact.email_consent_status = ConsentStatus.DO_NOT_EMAIL if hard_bounce else ConsentStatus.UNSUBSCRIBED
        contact.email_consent_at = at
        contact.email_consent_source = "hard bounce" if hard_bounce else "unsubscribe link"

    # --- writing --------------------------------------------------------------------------

    def write(self, account_plans: list[AccountPlan], plans: list[ContactPlan]) -> None:
        for key, label, data_type in CUSTOM_ATTRIBUTES:
            CustomAttribute.objects.get_or_create(key=key, defaults={"label": label, "data_type": data_type})
        accounts = [plan.account for plan in account_plans]
        contacts = [plan.contact for plan in plans]
        self.bulk_create(Account, accounts, "Writing accounts")
        self.bulk_create(Contact, contacts, "Writing contacts")
        self.backdate(account_plans, plans)
        activities = [activity for plan in plans for activity in plan.activities]
        self.bulk_create(Activity, activities, "Writing activities")
        # bulk_create bypasses the ingest service, which keeps scoring's daily aggregates.
        engagement_rebuild()
        changes = [change for plan in plans for change in stage_changes(plan)]
        self.bulk_create(StageChange, changes, "Writing stage history")
        self.start_mql_clocks(changes)
        costs = report_demo.campaign_costs(start=self.start.date(), end=self.end.date(), rng=self.costs_rng)
        self.bulk_create(CampaignCost, costs, "Writing campaign costs")
        for plan in self.progress([plan for plan in plans if plan.outcome], "Recording outcomes"):
            converted, occurred_at = plan.outcome
            services.outcome_record_imported(contact=plan.contact, converted=converted, occurred_at=occurred_at)
        self.record_sales_history(plans)

    def record_sales_history(self, plans: list[ContactPlan]) -> None:
        """Hand-off decisions, quality ratings and sales outcomes that agree with each stage
        path: what rule performance and model suggestions learn from."""
        decisions, ratings, outcomes = [], [], []
        for plan in plans:
            for (stage, mql_at, _), (next_stage, decided_at, _) in itertools.pairwise(plan.stages):
                if stage == LifecycleStage.MQL and next_stage in HANDOFF_STAGES:
                    decision = self.handoff_decision(plan, mql_at, next_stage, decided_at)
                    decisions.append(decision)
                    if chance(self.sales_rng, 0.45):
                        ratings.append(self.quality_rating(plan, decision))
            outcomes += self.sales_outcomes(plan)
        self.bulk_create(HandoffDecision, decisions, "Writing hand-off decisions")
        self.bulk_create(LeadFeedback, ratings, "Writing quality ratings")
        self.bulk_create(Outcome, outcomes, "Writing sales outcomes")

    def handoff_decision(self, plan: ContactPlan, mql_at, to_stage: str, decided_at) -> HandoffDecision:
        accepted = to_stage == LifecycleStage.SQL
        return HandoffDecision(
            contact=plan.contact,
            decision=HandoffDecision.Decision.ACCEPTED if accepted else HandoffDecision.Decision.REJECTED,
            reason="" if accepted else rejection_reason(self.sales_rng, plan),
            decided_by=plan.contact.owner or (self.sales_rng.choice(self.reps) if self.reps else None),
            decided_at=decided_at,
            mql_at=mql_at,
            to_stage=to_stage,
        )

    def quality_rating(self, plan: ContactPlan, decision: HandoffDecision) -> LeadFeedback:
        rng = self.sales_rng
        good = plan.outcome[0] if plan.outcome else chance(rng, 0.3 + 0.6 * plan.propensity)
        return LeadFeedback(
            contact=plan.contact,
            rating=LeadFeedback.Rating.GOOD if good else LeadFeedback.Rating.BAD,
            reason="" if good else (decision.reason or rejection_reason(rng, plan)),
            given_by=decision.decided_by,
            given_at=min(decision.decided_at + timedelta(days=rng.uniform(0.5, 20)), self.end),
        )

    def sales_outcomes(self, plan: ContactPlan) -> list[Outcome]:
        kinds = {LifecycleStage.OPPORTUNITY: Outcome.Kind.OPPORTUNITY, LifecycleStage.CUSTOMER: Outcome.Kind.WON}
        found = [
            Outcome(
                contact=plan.contact,
                kind=kinds[stage],
                source=Outcome.Source.SALES,
                occurred_at=at,
                recorded_by=plan.contact.owner,
            )
            for stage, at, _ in plan.stages
            if stage in kinds
        ]
        stages = [stage for stage, _, _ in plan.stages]
        if LifecycleStage.OPPORTUNITY in stages and LifecycleStage.CUSTOMER not in stages:
            opened = next(at for stage, at, _ in plan.stages if stage == LifecycleStage.OPPORTUNITY)
            if opened < self.end - timedelta(days=60) and chance(self.sales_rng, 0.6):
                lost_at = opened + timedelta(days=self.sales_rng.uniform(20, 60))
                found.append(
                    Outcome(
                        contact=plan.contact,
                        kind=Outcome.Kind.LOST,
                        source=Outcome.Source.SALES,
                        occurred_at=lost_at,
                        recorded_by=plan.contact.owner,
                        note="Chose another vendor",
                    )
                )
        return found

    def start_mql_clocks(self, changes: list[StageChange]) -> None:
        """Open MQLs wait in the queue since they became MQLs: the queue's age and the SLA count from there."""
        became_mql = {c.contact_id: c.changed_at for c in changes if c.to_stage == LifecycleStage.MQL}
        waiting = [c for c in Contact.objects.filter(lifecycle_stage=LifecycleStage.MQL, pk__in=became_mql)]
        for contact in waiting:
            contact.mql_at = became_mql[contact.pk]
        Contact.objects.bulk_update(waiting, ["mql_at"], batch_size=500)

    def bulk_create(self, model, rows: list, description: str) -> None:
        with tqdm(total=len(rows), desc=description, unit="row", disable=self.quiet, leave=False) as bar:
            for start in range(0, len(rows), BATCH_SIZE):
                batch = rows[start : start + BATCH_SIZE]
                model.objects.bulk_create(batch)
                bar.update(len(batch))

    def backdate(self, account_plans: list[AccountPlan], plans: list[ContactPlan]) -> None:
        """Replace the "now" that auto_now_add stamped on every row with the drawn dates."""
        first_seen = {}
        for plan in plans:
            plan.contact.created_at = plan.created_at
            if plan.contact.account is not None:
                pk = plan.contact.account.pk
                first_seen[pk] = min(first_seen.get(pk, plan.created_at), plan.created_at)
        accounts = [plan.account for plan in account_plans]
        for account in accounts:
            account.created_at = first_seen.get(account.pk, self.start) - timedelta(days=1)
        Account.objects.bulk_update(accounts, ["created_at"], batch_size=500)
        Contact.objects.bulk_update([plan.contact for plan in plans], ["created_at"], batch_size=500)


def stage_changes(plan: ContactPlan) -> list[StageChange]:
    """The plan's stage path as StageChange rows, each one starting where the last ended."""
    rows, previous = [], ""
    for stage, at, rule in plan.stages:
        changed_by = plan.contact.owner if rule == "accepted by sales" else None
        rows.append(
            StageChange(
                contact=plan.contact,
                from_stage=previous,
                to_stage=stage,
                changed_at=at,
                rule=rule,
                changed_by=changed_by,
            )
        )
        previous = stage
    return rows


# --- drawing helpers ------------------------------------------------------------------------


HANDOFF_STAGES = {LifecycleStage.SQL, LifecycleStage.RECYCLED, LifecycleStage.DISQUALIFIED}


def rejection_reason(rng: random.Random, plan: ContactPlan) -> str:
    """Why sales turned the lead down: rivals are competitors, weak leads mostly lack fit,
    budget or authority, and good leads that slipped were mostly a matter of timing."""
    if plan.competitor:
        return RejectReason.COMPETITOR
    if plan.contact.seniority == Seniority.STUDENT:
        return RejectReason.NOT_A_FIT
    weak = 1 - plan.propensity
    weights = {
        RejectReason.BAD_TIMING: 0.2 + 0.5 * plan.propensity,
        RejectReason.NOT_A_FIT: 0.35 * weak,
        RejectReason.NO_BUDGET: 0.25 * weak,
        RejectReason.NO_AUTHORITY: 0.2 * weak,
        RejectReason.BAD_DATA: 0.05,
        RejectReason.OTHER: 0.05,
    }
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def chance(rng: random.Random, probability: float) -> bool:
    return rng.random() < probability


def moment(rng: random.Random, start: datetime, end: datetime, *, late: bool = False) -> datetime:
    """A time between start and end, in working hours when the span allows it.

    `late` skews towards the end: buying signals cluster at the end of a journey.
    """
    fraction = math.sqrt(rng.random()) if late else rng.random()
    at = start + (end - start) * fraction
    if end - start > timedelta(days=1):
        hour = rng.choices(range(7, 22), [1, 4, 8, 9, 8, 6, 7, 8, 8, 7, 5, 3, 2, 2, 1])[0]
        at = at.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60))
    # Strictly after start, so a stage drawn after another one never shares its timestamp.
    return min(max(at, start + timedelta(seconds=1)), end - timedelta(seconds=1))


def allocate(total: int, weights: list[float]) -> list[int]:
    """Split `total` into integers proportional to `weights` that sum to exactly `total`."""
    scale = total / sum(weights)
    shares = [weight * scale for weight in weights]
    counts = [int(share) for share in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: counts[i] - shares[i])
    for index in by_remainder[: total - sum(counts)]:
        counts[index] += 1
    return counts


def activity_weight(rng: random.Random, plan: ContactPlan) -> float:
    return (0.3 + 3 * plan.propensity**1.5) * rng.lognormvariate(0, 0.6)


def behaviour_weights(plan: ContactPlan) -> dict[str, float]:
    if plan.competitor:
        return COMPETITOR_BEHAVIOUR
    return {key: max(0.01, base + slope * plan.propensity**power) for key, (base, slope, power) in BEHAVIOUR.items()}


def employee_count(rng: random.Random, propensity: float) -> int:
    if chance(rng, 0.05 + 0.85 * propensity):  # the ideal profile
        return int(math.exp(rng.uniform(math.log(200), math.log(5000))))
    if chance(rng, 0.75):
        return rng.randint(1, 60)
    return rng.randint(10_000, 120_000)


def pick_seniority(rng: random.Random, propensity: float, *, free_mail: bool, small_company: bool) -> str:
    p = propensity
    weights = {
        Seniority.STUDENT: max(0.0, 0.25 - 0.5 * p) + (0.25 if free_mail else 0),
        Seniority.INTERN: max(0.0, 0.12 - 0.25 * p),
        Seniority.INDIVIDUAL: 0.55 - 0.45 * p,
        Seniority.MANAGER: 0.25,
        Seniority.DIRECTOR: 0.03 + 0.45 * p,
        Seniority.VP: 0.01 + 0.3 * p,
        Seniority.C_LEVEL: 0.005 + 0.2 * p,
        Seniority.OWNER: 0.12 if small_company else 0.002,
    }
    return rng.choices(list(weights), list(weights.values()))[0]


def job_title(rng: random.Random, seniority: str, department: str) -> str:
    if seniority == Seniority.C_LEVEL:
        return C_LEVEL_TITLES.get(department, "Chief Executive Officer")
    return rng.choice(TITLE_PATTERNS[seniority]).format(d=department)


def lead_source_fields(rng: random.Random, propensity: float) -> dict[str, str]:
    p = propensity
    weights = [3 - 1.5 * p, 2 - p, 1.5, 1 + p, 0.5 + 2 * p, 0.3 + 1.5 * p, 0.3 + p]
    source = rng.choices(LEAD_SOURCES, weights)[0]
    if source not in PAID_UTM:
        return {"lead_source": source}
    utm_source, medium, campaigns, terms = PAID_UTM[source]
    return {
        "lead_source": source,
        "utm_source": utm_source,
        "utm_medium": medium,
        "utm_campaign": rng.choice(campaigns),
        "utm_term": rng.choice(terms),
        "utm_content": rng.choice(["ad-a", "ad-b", "ad-c"]),
    }


def current_tool(rng: random.Random, propensity: float) -> str:
    tools = ["Spreadsheets", "HubSpot", "Salesforce", "Pipedrive", "None"]
    return rng.choices(tools, [2, 2 + 2 * propensity, 1 + 3 * propensity, 1, 3 - 2 * propensity])[0]


def activity_properties(rng: random.Random, type_key: str, propensity: float) -> dict:
    if type_key == "page_view":
        pages = HIGH_INTENT_PAGES if chance(rng, 0.15 + 0.6 * propensity) else LOW_INTENT_PAGES
        return {"url": rng.choice(pages)}
    if type_key.startswith("email_"):
        properties = {"campaign": rng.choice(CAMPAIGNS)}
        if type_key == "email_click":
            properties["url"] = rng.choice(HIGH_INTENT_PAGES + LOW_INTENT_PAGES)
        if type_key == "email_bounce":
            properties["kind"] = "soft"  # hard bounces end a journey: see add_email_ending
        return properties
    return {
        "pricing_page_view": lambda: {"url": "/pricing"},
        "content_download": lambda: {"asset": rng.choice(ASSETS)},
        "webinar_registered": lambda: {"webinar": rng.choice(WEBINARS)},
        "form_submit": lambda: {"form": rng.choice(["newsletter", "contact-us", "ebook-gate"])},
        "demo_request": lambda: {"url": "/demo", "form": "demo"},
        "trial_signup": lambda: {"plan": rng.choice(["Starter", "Professional"])},
        "event_attended": lambda: {"event": rng.choice(EVENTS)},
        "social_engagement": lambda: {
            "network": rng.choice(["linkedin", "x"]),
            "action": rng.choice(["like", "share", "comment"]),
        },
        "sales_call": lambda: {
            "duration_minutes": rng.randint(5, 45),
            "result": rng.choice(["connected", "voicemail"]),
        },
    }[type_key]()


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(character for character in ascii_text.lower() if character.isalnum())
