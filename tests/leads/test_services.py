from datetime import timedelta

import pytest
from django.utils import timezone

from leads.models import Account, Activity, Contact, LifecycleStage, StageChange
from leads.services import (
    IngestEvent,
    account_upsert,
    activities_ingest,
    contact_set_stage,
    contact_upsert,
)
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db


def _event(index=0, **overrides) -> IngestEvent:
    values = {
        "index": index,
        "type_key": "page_view",
        "occurred_at": timezone.now() - timedelta(hours=1),
        "source": "website",
        "external_id": f"evt-{index}",
        "properties": {"url": "/pricing"},
        "email": "visitor@acme.example",
    }
    return IngestEvent(**{**values, **overrides})


# --- contact_upsert ------------------------------------------------------------------------


def test_it_creates_a_contact_with_a_lower_case_email():
    result = contact_upsert(email="  Ann@Acme.Example ", first_name="Ann")

    assert result.created
    assert result.contact.email == "ann@acme.example"
    assert Contact.objects.get().first_name == "Ann"


def test_it_refuses_a_contact_without_email_or_external_id():
    with pytest.raises(ValueError, match="email or an external id"):
        contact_upsert(first_name="Nobody")


def test_it_updates_the_contact_with_the_same_email_in_another_case():
    first = contact_upsert(email="ann@acme.example", first_name="Ann").contact

    second = contact_upsert(email="ANN@Acme.example", job_title="CTO")

    assert not second.created
    assert second.contact.pk == first.pk
    assert Contact.objects.count() == 1
    stored = Contact.objects.get()
    assert (stored.first_name, stored.job_title) == ("Ann", "CTO")


def test_it_updates_the_contact_with_the_same_external_id():
    first = contact_upsert(external_id="crm-1", first_name="Ann").contact

    second = contact_upsert(external_id="crm-1", email="ann@acme.example", last_name="Lee")

    assert not second.created
    assert second.contact.pk == first.pk
    stored = Contact.objects.get()
    assert (stored.email, stored.last_name) == ("ann@acme.example", "Lee")


def test_it_does_not_erase_stored_values_with_empty_ones():
    contact_upsert(email="ann@acme.example", first_name="Ann", phone="+49 30 1234", city="Berlin")

    contact_upsert(email="ann@acme.example", first_name="", phone=None, city="Hamburg")

    stored = Contact.objects.get()
    assert (stored.first_name, stored.phone, stored.city) == ("Ann", "+49 30 1234", "Hamburg")


def test_it_merges_attributes():
    contact_upsert(email="ann@acme.example", attributes={"visits": 3, "plan": "free"})

    contact_upsert(email="ann@acme.example", attributes={"visits": 7, "trial": True})

    assert Contact.objects.get().attributes == {"visits": 7, "plan": "free", "trial": True}


def test_it_does_not_erase_a_stored_attribute_with_an_empty_one():
    contact_upsert(email="ann@acme.example", attributes={"visits": 3, "plan": "free"})

    contact_upsert(email="ann@acme.example", attributes={"visits": None, "plan": ""})

    assert Contact.objects.get().attributes == {"visits": 3, "plan": "free"}


def test_it_records_a_stage_change_when_it_creates_a_contact():
    marketer = UserFactory()

    contact = contact_upsert(email="ann@acme.example", changed_by=marketer).contact

    change = StageChange.objects.get()
    assert change.contact == contact
    assert (change.from_stage, change.to_stage) == ("", LifecycleStage.LEAD)
    assert change.changed_by == marketer
    assert change.rule == "created"


def test_it_records_one_stage_change_when_it_creates_a_contact_in_a_given_stage():
    contact = contact_upsert(email="ann@acme.example", lifecycle_stage=LifecycleStage.MQL).contact

    contact.refresh_from_db()
    assert contact.lifecycle_stage == LifecycleStage.MQL
    assert list(StageChange.objects.values_list("from_stage", "to_stage")) == [("", LifecycleStage.MQL)]


def test_it_records_a_stage_change_when_an_upsert_moves_the_stage():
    contact_upsert(email="ann@acme.example")

    contact_upsert(email="ann@acme.example", lifecycle_stage=LifecycleStage.SQL)

    latest = StageChange.objects.first()
    assert (latest.from_stage, latest.to_stage, latest.rule) == ("lead", "sql", "update")
    assert Contact.objects.get().lifecycle_stage == LifecycleStage.SQL


# --- account_upsert ------------------------------------------------------------------------


def test_it_stores_the_account_domain_normalised():
    account = account_upsert(name="Acme", domain="https://WWW.Acme.com/x")

    assert account.domain == "acme.com"
    assert Account.objects.get().domain == "acme.com"


def test_it_updates_the_account_with_the_same_domain():
    first = account_upsert(name="Acme", domain="acme.com", industry="Retail")

    second = account_upsert(name="Acme Inc", domain="http://www.acme.com", employee_count=120)

    assert second.pk == first.pk
    stored = Account.objects.get()
    assert (stored.name, stored.industry, stored.employee_count) == ("Acme Inc", "Retail", 120)


def test_it_finds_an_account_without_domain_by_name_ignoring_case():
    first = account_upsert(name="Acme GmbH")

    second = account_upsert(name="ACME gmbh", country="Germany")

    assert second.pk == first.pk
    assert Account.objects.get().country == "Germany"


# --- contact_set_stage ---------------------------------------------------------------------


def test_it_records_who_moved_a_contact_and_by_which_rule():
    contact = ContactFactory(lifecycle_stage=LifecycleStage.LEAD)
    rep = UserFactory()

    change = contact_set_stage(contact=contact, to_stage=LifecycleStage.MQL, changed_by=rep, rule="score >= 50")

    change.refresh_from_db()
    assert (change.from_stage, change.to_stage) == ("lead", "mql")
    assert change.changed_by == rep
    assert change.rule == "score >= 50"
    contact.refresh_from_db()
    assert contact.lifecycle_stage == LifecycleStage.MQL


def test_it_records_nothing_when_the_stage_does_not_change():
    contact = ContactFactory(lifecycle_stage=LifecycleStage.MQL)

    change = contact_set_stage(contact=contact, to_stage=LifecycleStage.MQL, rule="score >= 50")

    assert change is None
    assert not StageChange.objects.exists()


# --- activities_ingest ---------------------------------------------------------------------


def test_it_reports_a_new_event_created_and_a_resent_one_duplicate():
    [first] = activities_ingest(events=[_event()])
    [again] = activities_ingest(events=[_event()])

    assert first.status == "created"
    assert again.status == "duplicate"
    assert again.activity_id == first.activity_id
    assert Activity.objects.count() == 1


def test_it_counts_the_same_event_twice_in_one_batch_once():
    outcomes = activities_ingest(events=[_event(0, external_id="e-1"), _event(1, external_id="e-1")])

    assert [outcome.status for outcome in outcomes] == ["created", "duplicate"]
    assert outcomes[0].activity_id == outcomes[1].activity_id
    assert Activity.objects.count() == 1


def test_it_recognises_a_resent_event_without_external_id_by_its_fingerprint():
    occurred_at = timezone.now() - timedelta(minutes=5)

    [first] = activities_ingest(events=[_event(external_id=None, occurred_at=occurred_at)])
    [again] = activities_ingest(events=[_event(external_id=None, occurred_at=occurred_at)])
    [later] = activities_ingest(events=[_event(external_id=None, occurred_at=occurred_at + timedelta(seconds=1))])

    assert (first.status, again.status, later.status) == ("created", "duplicate", "created")
    assert Activity.objects.count() == 2


def test_it_creates_a_contact_for_an_unknown_email():
    [outcome] = activities_ingest(
        events=[_event(email="new.person@beta.example", contact_fields={"first_name": "Neo"})]
    )

    contact = Contact.objects.get(email="new.person@beta.example")
    assert contact.first_name == "Neo"
    assert outcome.contact_id == contact.pk
    assert Activity.objects.get().contact == contact


def test_it_attaches_an_event_to_the_contact_with_that_email_in_another_case():
    contact = ContactFactory(email="ann@acme.example")

    [outcome] = activities_ingest(events=[_event(email="ann@acme.example")])

    assert outcome.contact_id == contact.pk
    assert Contact.objects.count() == 1


def test_it_reports_an_unknown_activity_type_as_an_error_and_stores_the_rest():
    outcomes = activities_ingest(
        events=[
            _event(0, type_key="no_such_type", email="ghost@nowhere.example"),
            _event(1),
        ]
    )

    assert outcomes[0].status == "error"
    assert "Unknown activity type" in outcomes[0].errors["type"][0]
    assert outcomes[1].status == "created"
    assert not Contact.objects.filter(email="ghost@nowhere.example").exists()


def test_it_reports_an_unknown_contact_id_as_an_error():
    [outcome] = activities_ingest(events=[_event(email=None, contact_id=999_999)])

    assert outcome.status == "error"
    assert outcome.errors == {"contact_id": ["No contact with this id."]}
    assert not Activity.objects.exists()
