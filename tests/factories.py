from datetime import timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from leads.models import Account, Activity, ActivityType, CampaignCost, Contact, HandoffDecision, Outcome
from scoring.models import ContactScore
from scoring.selectors import active_version


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@crm.example")
    password = factory.django.Password("pass-for-tests-1")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        for name in extracted or []:
            self.groups.add(Group.objects.get(name=name))


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    name = factory.Sequence(lambda n: f"Company {n}")
    domain = factory.Sequence(lambda n: f"company{n}.example")
    industry = "Software"
    employee_count = 250
    country = "Germany"


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    email = factory.Sequence(lambda n: f"person{n}@company.example")
    first_name = factory.Sequence(lambda n: f"First{n}")
    last_name = factory.Sequence(lambda n: f"Last{n}")
    job_title = "Head of Marketing"
    account = factory.SubFactory(AccountFactory)


class ContactScoreFactory(factory.django.DjangoModelFactory):
    """A stored score as scoring writes it (numbers only), under the active version."""

    class Meta:
        model = ContactScore

    contact = factory.SubFactory(ContactFactory)
    version = factory.LazyFunction(active_version)
    account_id = factory.LazyAttribute(lambda score: score.contact.account_id)
    total = Decimal(0)
    as_of = factory.LazyFunction(timezone.localdate)
    computed_at = factory.LazyFunction(timezone.now)


class ActivityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Activity

    contact = factory.SubFactory(ContactFactory)
    type = factory.LazyFunction(lambda: ActivityType.objects.get(key="page_view"))
    occurred_at = factory.LazyFunction(timezone.now)
    source = "test"
    external_id = factory.Sequence(lambda n: f"evt-{n}")
    dedupe_key = factory.LazyAttribute(lambda a: a.external_id)


class HandoffDecisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = HandoffDecision

    contact = factory.SubFactory(ContactFactory)
    decision = HandoffDecision.Decision.ACCEPTED
    decided_at = factory.LazyFunction(timezone.now)
    to_stage = factory.LazyAttribute(lambda d: "sql" if d.decision == "accepted" else "recycled")


class OutcomeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Outcome

    contact = factory.SubFactory(ContactFactory)
    kind = Outcome.Kind.WON
    source = Outcome.Source.SALES
    occurred_at = factory.LazyFunction(timezone.now)


class CampaignCostFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CampaignCost

    campaign = "brand-search"
    period_start = factory.LazyFunction(lambda: timezone.localdate().replace(day=1))
    period_end = factory.LazyAttribute(lambda c: c.period_start + timedelta(days=27))
    amount = Decimal("1000.00")
    currency = "EUR"
