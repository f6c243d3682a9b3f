"""`manage.py seed_demo`: reproducible, idempotent, and shaped like a real funnel."""

from datetime import datetime, timedelta
from io import StringIO
from statistics import mean

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from leads.management.commands.seed_demo import DEMO_DOMAIN_SUFFIX
from leads.models import Account, Activity, Contact, HandoffDecision, LeadFeedback, Outcome, StageChange
from leads.normalise import FREE_MAIL_DOMAINS
from scoring.models import DailyEngagement

from ..factories import AccountFactory

AS_OF = "2025-06-30"
AS_OF_MIDNIGHT = timezone.make_aware(datetime(2025, 6, 30))  # in settings.TIME_ZONE
SENIOR = {"director", "vp", "c_level"}
BUYING_SIGNALS = {"demo_request", "pricing_page_view", "trial_signup"}

pytestmark = pytest.mark.django_db


def seed_demo(*, seed=7, accounts=20, contacts=200, activities=3000, as_of=AS_OF) -> str:
    out = StringIO()
    call_command(
        "seed_demo",
        "--seed",
        str(seed),
        "--as-of",
        as_of,
        "--accounts",
        str(accounts),
        "--contacts",
        str(contacts),
        "--activities",
        str(activities),
        verbosity=0,
        stdout=out,
        stderr=StringIO(),
    )
    return out.getvalue()


def seed_demo_medium(seed=7) -> str:
    """Big enough for averages over converted contacts to mean something."""
    return seed_demo(seed=seed, accounts=60, contacts=800, activities=12000)


def snapshot() -> dict[str, list]:
    return {
        "contacts": list(
            Contact.objects.order_by("email").values_list(
                "email", "job_title", "seniority", "account__domain", "lifecycle_stage", "created_at"
            )
        ),
        "activities": list(
            Activity.objects.order_by("dedupe_key").values_list(
                "dedupe_key", "contact__email", "type__key", "occurred_at", "properties"
            )
        ),
        "stages": list(
            StageChange.objects.order_by("contact__email", "changed_at").values_list(
                "contact__email", "from_stage", "to_stage", "changed_at"
            )
        ),
        "outcomes": list(
            Outcome.objects.order_by("contact__email").values_list("contact__email", "kind", "occurred_at")
        ),
    }


def signal_counts_by_outcome() -> dict[str, list[int]]:
    """Buying signals per contact, by its imported (historical) outcome."""
    outcomes = Outcome.objects.filter(source="import").annotate(
        signals=Count("contact__activities", filter=Q(contact__activities__type__key__in=BUYING_SIGNALS))
    )
    counts = {"converted": [], "not_converted": []}
    for kind, signals in outcomes.values_list("kind", "signals"):
        counts[kind].append(signals)
    return counts


def test_it_creates_the_requested_number_of_accounts_contacts_and_activities():
    output = seed_demo(accounts=20, contacts=200, activities=3000)

    assert Account.objects.count() == 20
    assert Contact.objects.count() == 200
    # Follow-ups (webinar attendance, sales calls, unsubscribes) come on top of the 3,000.
    assert Activity.objects.count() >= 3000
    assert f"{Activity.objects.count()} activities" in output


def test_the_same_seed_and_date_give_the_same_data():
    seed_demo(seed=11)
    first = snapshot()
    Contact.objects.all().delete()
    Account.objects.all().delete()

    seed_demo(seed=11)

    assert snapshot() == first


def test_a_different_seed_gives_different_data():
    seed_demo(seed=11)
    first = snapshot()
    Contact.objects.all().delete()
    Account.objects.all().delete()

    seed_demo(seed=12)

    assert snapshot()["contacts"] != first["contacts"]


def test_a_second_run_creates_nothing_and_says_so():
    seed_demo()
    before = (
        Account.objects.count(),
        Contact.objects.count(),
        Activity.objects.count(),
        StageChange.objects.count(),
        Outcome.objects.count(),
    )

    output = seed_demo(seed=99)

    assert "already seeded" in output
    assert before == (
        Account.objects.count(),
        Contact.objects.count(),
        Activity.objects.count(),
        StageChange.objects.count(),
        Outcome.objects.count(),
    )


def test_an_account_on_a_demo_domain_counts_as_already_seeded():
    AccountFactory(domain=f"leftover{DEMO_DOMAIN_SUFFIX}")

    output = seed_demo()

    assert "already seeded" in output
    assert Contact.objects.count() == 0


def test_scoring_counts_every_seeded_activity():
    seed_demo()

    counted = DailyEngagement.objects.filter(matcher__property_name="").aggregate(n=Sum("count"))
    assert counted["n"] == Activity.objects.count()


def test_activities_fall_in_the_180_days_before_the_as_of_date():
    seed_demo()

    bounds = Activity.objects.aggregate(first=Min("occurred_at"), last=Max("occurred_at"))
    assert bounds["first"] >= AS_OF_MIDNIGHT - timedelta(days=180)
    assert bounds["last"] < AS_OF_MIDNIGHT


def test_outcomes_are_recorded_only_after_30_days_without_marketing_activity():
    seed_demo()

    contacts = Contact.objects.filter(outcomes__source="import").annotate(
        last_seen=Max("activities__occurred_at", filter=~Q(activities__type__key="sales_call"))
    )
    assert contacts.exists()
    assert all(c.last_seen < AS_OF_MIDNIGHT - timedelta(days=30) for c in contacts)
    assert not Outcome.objects.filter(occurred_at__gte=AS_OF_MIDNIGHT).exists()
    assert set(Outcome.objects.values_list("source", flat=True)) == {"import", "sales"}


def test_sales_history_agrees_with_the_stage_history():
    """Hand-offs, ratings and sales outcomes are what tuning learns from: each must match
    the lead's stage path."""
    seed_demo()

    accepted = HandoffDecision.objects.filter(decision="accepted")
    assert accepted.exists()
    for decision in accepted:
        assert StageChange.objects.filter(
            contact=decision.contact, to_stage="sql", from_stage="mql", changed_at=decision.decided_at
        ).exists()
    rejected = HandoffDecision.objects.filter(decision="rejected")
    assert rejected.exists() and not rejected.filter(reason="").exists()
    for decision in rejected:
        assert StageChange.objects.filter(
            contact=decision.contact,
            from_stage="mql",
            to_stage__in=["recycled", "disqualified"],
            changed_at=decision.decided_at,
        ).exists()
    for kind, stage in (("opportunity", "opportunity"), ("won", "customer")):
        for outcome in Outcome.objects.filter(source="sales", kind=kind):
            assert StageChange.objects.filter(
                contact=outcome.contact, to_stage=stage, changed_at=outcome.occurred_at
            ).exists()
    assert not Outcome.objects.filter(source="sales", kind="lost", contact__lifecycle_stage="customer").exists()
    assert LeadFeedback.objects.filter(rating="good").exists() and LeadFeedback.objects.filter(rating="bad").exists()
    assert not LeadFeedback.objects.filter(given_at__gt=AS_OF_MIDNIGHT).exists()


def test_each_contacts_stage_history_leads_to_its_current_stage():
    seed_demo()

    for contact in Contact.objects.prefetch_related("stage_changes"):
        history = sorted(contact.stage_changes.all(), key=lambda change: change.changed_at)
        assert history[0].from_stage == ""
        for previous, change in zip(history, history[1:], strict=False):
            assert change.from_stage == previous.to_stage
            assert change.changed_at > previous.changed_at
        assert history[-1].to_stage == contact.lifecycle_stage


def test_converted_contacts_reached_at_least_opportunity():
    seed_demo()

    converted = Contact.objects.filter(outcomes__kind="converted")
    assert converted.exists()
    assert set(converted.values_list("lifecycle_stage", flat=True)) <= {"opportunity", "customer"}


def test_sales_reps_own_the_contacts_they_accepted(rep):
    seed_demo()

    accepted = StageChange.objects.filter(to_stage="sql")
    assert accepted.exists()
    assert set(accepted.values_list("changed_by", flat=True)) == {rep.pk}
    assert set(Contact.objects.filter(stage_changes__to_stage="sql").values_list("owner", flat=True)) == {rep.pk}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_converted_contacts_show_more_buying_signals_than_the_rest(seed):
    seed_demo_medium(seed)

    counts = signal_counts_by_outcome()

    assert mean(counts["converted"]) > 1.5 * mean(counts["not_converted"])


def test_converted_contacts_are_more_often_senior():
    seed_demo_medium()

    def senior_share(kind):
        seniorities = Contact.objects.filter(outcomes__kind=kind).values_list("seniority", flat=True)
        return mean(seniority in SENIOR for seniority in seniorities)

    assert senior_share("converted") > senior_share("not_converted") + 0.1


def test_roughly_a_tenth_to_a_fifth_of_closed_contacts_convert():
    seed_demo_medium()

    kinds = list(Outcome.objects.filter(source="import").values_list("kind", flat=True))
    assert 0.08 <= kinds.count("converted") / len(kinds) <= 0.25


def test_emails_are_unique_and_free_mail_ones_cannot_reach_a_real_first_last_inbox():
    seed_demo()

    emails = list(Contact.objects.values_list("email", flat=True))
    assert len(set(emails)) == len(emails)
    free_mail = [email for email in emails if email.split("@")[1] in FREE_MAIL_DOMAINS]
    assert free_mail
    assert all(".demo" in email.split("@")[0] for email in free_mail)
    company = [email for email in emails if email not in free_mail]
    assert all(email.endswith(DEMO_DOMAIN_SUFFIX) for email in company)


def test_paid_contacts_carry_utm_fields():
    seed_demo()

    paid = Contact.objects.filter(lead_source__in=["Paid Search", "LinkedIn"])
    assert paid.exists()
    assert not paid.filter(Q(utm_source="") | Q(utm_medium="") | Q(utm_campaign="")).exists()
    assert not Contact.objects.exclude(lead_source__in=["Paid Search", "LinkedIn"]).exclude(utm_source="").exists()


def test_activities_say_what_was_viewed_downloaded_or_opened():
    seed_demo()

    expected = {
        "page_view": "url",
        "pricing_page_view": "url",
        "content_download": "asset",
        "webinar_registered": "webinar",
        "webinar_attended": "webinar",
        "email_open": "campaign",
        "email_click": "campaign",
        "email_bounce": "kind",
    }
    for type_key, property_name in expected.items():
        properties = list(Activity.objects.filter(type__key=type_key).values_list("properties", flat=True))
        assert properties, type_key
        assert all(value.get(property_name) for value in properties), type_key


def test_it_refuses_fewer_activities_than_contacts():
    with pytest.raises(CommandError):
        seed_demo(contacts=200, activities=100)
