from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from leads.models import Account, Activity, ActivityType, Contact, CustomAttribute
from tests.factories import AccountFactory, ContactFactory

pytestmark = pytest.mark.django_db

CONTACTS = "/api/contacts/"
ACCOUNTS = "/api/accounts/"


def _emails(response) -> set[str]:
    return {row["email"] for row in response.json()["results"]}


# --- authentication and roles --------------------------------------------------------------


@pytest.mark.parametrize("url", [CONTACTS, ACCOUNTS, "/api/activities/", "/api/activity-types/"])
def test_it_requires_a_login(api, url):
    response = api.get(url)

    assert response.status_code in (401, 403)


def test_it_refuses_a_user_without_a_crm_role(api, no_role_user):
    api.force_authenticate(no_role_user)

    assert api.get(CONTACTS).status_code == 403


def test_it_lets_sales_read_contacts(rep_api):
    ContactFactory(email="ann@acme.example")

    response = rep_api.get(CONTACTS)

    assert response.status_code == 200
    assert _emails(response) == {"ann@acme.example"}


def test_it_refuses_writes_from_sales(rep_api):
    response = rep_api.post(CONTACTS, {"email": "ann@acme.example"}, format="json")

    assert response.status_code == 403
    assert not Contact.objects.exists()


def test_it_lets_marketing_write(marketer_api):
    response = marketer_api.post(CONTACTS, {"email": "ann@acme.example"}, format="json")

    assert response.status_code == 201


def test_it_accepts_a_token(marketer):
    token = Token.objects.create(user=marketer)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    response = client.post(CONTACTS, {"email": "ann@acme.example"}, format="json")

    assert response.status_code == 201


def test_it_rejects_a_wrong_token(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = client.get(CONTACTS)

    assert response.status_code in (401, 403)
    assert response.json()["detail"] == "Invalid token."


# --- contacts: list ------------------------------------------------------------------------


def test_it_filters_contacts_by_lifecycle_stage(rep_api):
    ContactFactory(email="lead@acme.example", lifecycle_stage="lead")
    ContactFactory(email="mql@acme.example", lifecycle_stage="mql")
    ContactFactory(email="sql@acme.example", lifecycle_stage="sql")

    response = rep_api.get(CONTACTS, {"lifecycle_stage": ["mql", "sql"]})

    assert _emails(response) == {"mql@acme.example", "sql@acme.example"}


def test_it_filters_contacts_by_email_ignoring_case(rep_api):
    ContactFactory(email="ann@acme.example")
    ContactFactory(email="bob@acme.example")

    response = rep_api.get(CONTACTS, {"email": "ANN@Acme.Example"})

    assert _emails(response) == {"ann@acme.example"}


def test_it_searches_contacts_by_name_email_and_company(rep_api):
    ContactFactory(email="ann@acme.example", first_name="Ann", account=AccountFactory(name="Acme"))
    ContactFactory(email="bob@beta.example", first_name="Bob", account=AccountFactory(name="Beta"))

    assert _emails(rep_api.get(CONTACTS, {"search": "bob"})) == {"bob@beta.example"}
    assert _emails(rep_api.get(CONTACTS, {"search": "acme"})) == {"ann@acme.example"}


def test_it_pages_the_contact_list(rep_api):
    ContactFactory.create_batch(55)

    first = rep_api.get(CONTACTS).json()
    second = rep_api.get(CONTACTS, {"page": 2}).json()

    assert first["count"] == 55
    assert len(first["results"]) == 50
    assert len(second["results"]) == 5
    assert second["next"] is None
    ids = {row["id"] for row in first["results"]} | {row["id"] for row in second["results"]}
    assert len(ids) == 55


# --- contacts: create and update -----------------------------------------------------------


def test_it_creates_a_contact(marketer_api):
    response = marketer_api.post(
        CONTACTS,
        {"email": "Ann@Acme.example", "first_name": "Ann", "lifecycle_stage": "mql"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["email"] == "ann@acme.example"
    contact = Contact.objects.get()
    assert (contact.first_name, contact.lifecycle_stage) == ("Ann", "mql")


def test_it_updates_instead_of_duplicating_a_contact_posted_again(marketer_api):
    marketer_api.post(CONTACTS, {"email": "ann@acme.example", "first_name": "Ann"}, format="json")

    response = marketer_api.post(CONTACTS, {"email": "ANN@ACME.EXAMPLE", "job_title": "CTO"}, format="json")

    assert response.status_code == 200
    assert Contact.objects.count() == 1
    assert response.json()["first_name"] == "Ann"
    assert response.json()["job_title"] == "CTO"


def test_it_requires_an_email_or_external_id_to_create_a_contact(marketer_api):
    response = marketer_api.post(CONTACTS, {"first_name": "Nobody"}, format="json")

    assert response.status_code == 400
    assert "email" in response.json()


def test_it_rejects_a_post_whose_external_id_and_email_belong_to_two_contacts(marketer_api):
    ContactFactory(email=None, external_id="crm-1")
    ContactFactory(email="bob@acme.example")

    response = marketer_api.post(CONTACTS, {"external_id": "crm-1", "email": "bob@acme.example"}, format="json")

    assert response.status_code == 400
    assert "email" in response.json()


def test_it_updates_a_contact_with_patch(marketer_api):
    contact = ContactFactory(job_title="Analyst", lifecycle_stage="lead")

    response = marketer_api.patch(
        f"{CONTACTS}{contact.pk}/", {"job_title": "CTO", "lifecycle_stage": "sql"}, format="json"
    )

    assert response.status_code == 200
    contact.refresh_from_db()
    assert (contact.job_title, contact.lifecycle_stage) == ("CTO", "sql")
    assert contact.stage_changes.get().rule == "manual edit"


def test_it_rejects_a_patch_to_an_email_another_contact_has(marketer_api):
    ContactFactory(email="taken@acme.example")
    contact = ContactFactory(email="mine@acme.example")

    response = marketer_api.patch(f"{CONTACTS}{contact.pk}/", {"email": "Taken@Acme.example"}, format="json")

    assert response.status_code == 400
    assert "already has this email" in response.json()["email"][0]
    contact.refresh_from_db()
    assert contact.email == "mine@acme.example"


def test_it_rejects_an_unknown_custom_attribute(marketer_api):
    response = marketer_api.post(
        CONTACTS, {"email": "ann@acme.example", "attributes": {"shoe_size": 44}}, format="json"
    )

    assert response.status_code == 400
    assert "shoe_size" in response.json()["attributes"]
    assert not Contact.objects.exists()


def test_it_stores_a_known_custom_attribute_as_its_type(marketer_api):
    CustomAttribute.objects.create(key="total_visits", label="Total visits", data_type="number")

    response = marketer_api.post(
        CONTACTS, {"email": "ann@acme.example", "attributes": {"total_visits": "12"}}, format="json"
    )

    assert response.status_code == 201
    assert Contact.objects.get().attributes == {"total_visits": 12}


def test_it_rejects_a_custom_attribute_value_of_the_wrong_type(marketer_api):
    CustomAttribute.objects.create(key="total_visits", label="Total visits", data_type="number")

    response = marketer_api.post(
        CONTACTS,
        {"email": "ann@acme.example", "attributes": {"total_visits": "many"}},
        format="json",
    )

    assert response.status_code == 400
    assert "not a number" in response.json()["attributes"]["total_visits"]


# --- accounts ------------------------------------------------------------------------------


def test_it_creates_an_account_with_a_normalised_domain(marketer_api):
    response = marketer_api.post(ACCOUNTS, {"name": "Acme", "domain": "https://WWW.Acme.com/about"}, format="json")

    assert response.status_code == 201
    assert response.json()["domain"] == "acme.com"
    assert Account.objects.get().domain == "acme.com"


def test_it_rejects_a_second_account_with_the_same_domain(marketer_api):
    AccountFactory(domain="acme.com")

    response = marketer_api.post(ACCOUNTS, {"name": "Acme again", "domain": "www.ACME.com"}, format="json")

    assert response.status_code == 400
    assert "already has this domain" in response.json()["domain"][0]
    assert Account.objects.count() == 1


def test_it_rejects_an_account_domain_that_is_not_a_domain(marketer_api):
    response = marketer_api.post(ACCOUNTS, {"name": "Odd", "domain": "http://[oops"}, format="json")

    assert response.status_code == 400
    assert "domain" in response.json()


def test_it_refuses_account_writes_from_sales(rep_api):
    response = rep_api.post(ACCOUNTS, {"name": "Acme", "domain": "acme.com"}, format="json")

    assert response.status_code == 403
    assert not Account.objects.exists()


# --- activity types ------------------------------------------------------------------------


def test_it_lists_the_activity_types(rep_api):
    response = rep_api.get("/api/activity-types/")

    assert response.status_code == 200
    keys = [row["key"] for row in response.json()]
    assert "page_view" in keys
    assert len(keys) == ActivityType.objects.count()


def test_it_creates_an_activity_type(marketer_api):
    response = marketer_api.post(
        "/api/activity-types/",
        {"key": "partner_referral", "name": "Partner referral", "is_system": True},
        format="json",
    )

    assert response.status_code == 201
    created = ActivityType.objects.get(key="partner_referral")
    assert created.name == "Partner referral"
    assert not created.is_system


def test_it_rejects_an_activity_type_key_that_exists(marketer_api):
    response = marketer_api.post("/api/activity-types/", {"key": "page_view", "name": "Page view again"}, format="json")

    assert response.status_code == 400
    assert "key" in response.json()


# --- single activities ---------------------------------------------------------------------


def test_it_stores_one_activity_then_reports_it_duplicate(marketer_api):
    event = {
        "type": "demo_request",
        "occurred_at": (timezone.now() - timedelta(hours=2)).isoformat(),
        "email": "ann@acme.example",
        "external_id": "form-77",
        "source": "website",
    }

    first = marketer_api.post("/api/activities/", event, format="json")
    again = marketer_api.post("/api/activities/", event, format="json")

    assert first.status_code == 201
    assert first.json()["status"] == "created"
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["activity_id"] == first.json()["activity_id"]
    assert Activity.objects.count() == 1
    assert Activity.objects.get().contact.email == "ann@acme.example"


def test_it_scores_an_activity_before_answering_when_asked(marketer_api):
    account = Account.objects.create(name="Fit Co", domain="fit.example", industry="Software", employee_count=1200)
    contact = ContactFactory(email="cmo@fit.example", job_title="Chief Marketing Officer", account=account)
    event = {
        "type": "demo_request",
        "occurred_at": (timezone.now() - timedelta(minutes=5)).isoformat(),
        "email": "cmo@fit.example",
        "external_id": "form-91",
        "source": "website",
    }

    response = marketer_api.post("/api/activities/?score=now", event, format="json")

    assert response.status_code == 201
    score = response.json()["score"]
    stored = marketer_api.get(f"/api/contacts/{contact.pk}/score/").json()
    assert score["total"] == stored["total"]
    assert float(score["total"]) > 0
    assert any(part["rule"] == "Demo request" for part in stored["explanation"])
    assert (score["fit_grade"], score["mql_level"]) == (stored["fit_grade"], stored["mql_level"])
    contact.refresh_from_db()
    assert score["lifecycle_stage"] == contact.lifecycle_stage


def test_the_score_of_a_contact_not_scored_yet_is_a_404_that_says_so(marketer_api):
    contact = ContactFactory(email="new@lead.example")

    unscored = marketer_api.get(f"/api/contacts/{contact.pk}/score/")
    unknown = marketer_api.get(f"/api/contacts/{contact.pk + 1000}/score/")

    assert unscored.status_code == unknown.status_code == 404
    assert "no score yet" in unscored.json()["detail"]
    assert unknown.json()["detail"] == "No contact with this id."


def test_it_answers_without_a_score_unless_asked(marketer_api):
    event = {"type": "demo_request", "occurred_at": timezone.now().isoformat(), "email": "b@c.example"}

    response = marketer_api.post("/api/activities/", event, format="json")

    assert response.status_code == 201
    assert "score" not in response.json()


def test_it_rejects_a_single_activity_of_an_unknown_type(marketer_api):
    event = {
        "type": "no_such_type",
        "occurred_at": timezone.now().isoformat(),
        "email": "a@b.example",
    }

    response = marketer_api.post("/api/activities/", event, format="json")

    assert response.status_code == 400
    assert "Unknown activity type" in response.json()["type"][0]


def test_it_lists_a_contacts_activities(rep_api):
    contact = ContactFactory()
    Activity.objects.create(
        contact=contact,
        type=ActivityType.objects.get(key="page_view"),
        occurred_at=timezone.now(),
        source="test",
        dedupe_key="a-1",
    )
    Activity.objects.create(
        contact=ContactFactory(),
        type=ActivityType.objects.get(key="page_view"),
        occurred_at=timezone.now(),
        source="test",
        dedupe_key="a-2",
    )

    response = rep_api.get("/api/activities/", {"contact": contact.pk})

    assert [row["contact"] for row in response.json()["results"]] == [contact.pk]
    assert response.json()["results"][0]["type"] == "page_view"


# --- schema and docs -----------------------------------------------------------------------


def test_it_renders_the_openapi_schema(rep_client):
    response = rep_client.get("/api/schema/")

    assert response.status_code == 200
    text = response.content.decode()
    assert "/api/activities/bulk/" in text
    assert "/api/contacts/" in text


def test_it_renders_the_api_docs_page(rep_client):
    response = rep_client.get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
