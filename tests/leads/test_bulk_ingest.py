from datetime import timedelta

import pytest
from django.utils import timezone

from leads.models import Activity, Contact
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

BULK = "/api/activities/bulk/"


def _event(number: int, email: str, **overrides) -> dict:
    return {
        "type": "page_view",
        "occurred_at": (timezone.now() - timedelta(minutes=number)).isoformat(),
        "email": email,
        "source": "website",
        "external_id": f"pv-{number}",
        "properties": {"url": f"/blog/{number}"},
        **overrides,
    }


@pytest.fixture
def thousand_events(db):
    known = [contact.email for contact in ContactFactory.create_batch(100)]
    events = []
    for number in range(1000):
        # Every other event is by one of 100 known contacts, the rest by 250 new people.
        email = known[number % 100] if number % 2 else f"new{number % 250}@prospect.example"
        events.append(_event(number, email))
    return events


def test_it_stores_a_thousand_events(marketer_api, thousand_events):
    response = marketer_api.post(BULK, {"events": thousand_events}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["duplicate"], body["error"]) == (1000, 0, 0)
    assert [result["index"] for result in body["results"]] == list(range(1000))
    assert all(result["status"] == "created" for result in body["results"])
    assert Activity.objects.count() == 1000
    assert Contact.objects.count() == 100 + 125


def test_it_reports_a_resent_thousand_events_duplicate(marketer_api, thousand_events):
    first = marketer_api.post(BULK, {"events": thousand_events}, format="json").json()

    response = marketer_api.post(BULK, {"events": thousand_events}, format="json")

    body = response.json()
    assert (body["created"], body["duplicate"], body["error"]) == (0, 1000, 0)
    assert all(result["status"] == "duplicate" for result in body["results"])
    first_ids = [result["activity_id"] for result in first["results"]]
    assert [result["activity_id"] for result in body["results"]] == first_ids
    assert Activity.objects.count() == 1000


def test_it_accepts_a_bare_json_array_of_events(marketer_api):
    response = marketer_api.post(BULK, [_event(1, "ann@acme.example")], format="json")

    assert response.status_code == 200
    assert response.json()["created"] == 1


def test_it_stores_the_good_events_and_reports_each_bad_one_at_its_index(marketer_api):
    events = [
        _event(0, "good0@acme.example"),
        {key: value for key, value in _event(1, "a@acme.example").items() if key != "type"},
        _event(2, "b@acme.example", occurred_at="last tuesday"),
        _event(3, "c@acme.example", occurred_at=(timezone.now() + timedelta(days=30)).isoformat()),
        _event(4, ""),
        "page_view by someone",
        _event(6, "d@acme.example", type="no_such_type"),
        _event(7, "good7@acme.example"),
    ]

    response = marketer_api.post(BULK, {"events": events}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["duplicate"], body["error"]) == (2, 0, 6)
    results = body["results"]
    assert [result["status"] for result in results] == [
        "created",
        "error",
        "error",
        "error",
        "error",
        "error",
        "error",
        "created",
    ]
    assert "required" in results[1]["errors"]["type"][0]
    assert "format" in results[2]["errors"]["occurred_at"][0]
    assert "future" in results[3]["errors"]["occurred_at"][0]
    assert "Identify the contact" in results[4]["errors"]["email"][0]
    assert "JSON object" in results[5]["errors"]["event"][0]
    assert "Unknown activity type" in results[6]["errors"]["type"][0]
    assert set(Activity.objects.values_list("external_id", flat=True)) == {"pv-0", "pv-7"}
    assert set(Contact.objects.values_list("email", flat=True)) == {
        "good0@acme.example",
        "good7@acme.example",
    }


def test_it_rejects_malformed_json_with_a_clear_message(marketer_api):
    response = marketer_api.post(BULK, data='{"events": [{"type": "page_view",', content_type="application/json")

    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_it_rejects_more_than_a_thousand_events_and_stores_none(marketer_api):
    events = [_event(number, f"p{number}@acme.example") for number in range(1001)]

    response = marketer_api.post(BULK, {"events": events}, format="json")

    assert response.status_code == 400
    assert "At most 1000 events" in response.json()["events"][0]
    assert not Activity.objects.exists()
    assert not Contact.objects.exists()


def test_it_rejects_an_empty_batch(marketer_api):
    response = marketer_api.post(BULK, {"events": []}, format="json")

    assert response.status_code == 400
    assert response.json()["events"] == ["The batch is empty."]


def test_it_rejects_an_object_without_events(marketer_api):
    response = marketer_api.post(BULK, {"type": "page_view"}, format="json")

    assert response.status_code == 400
    assert "events" in response.json()


def test_it_refuses_bulk_ingest_from_sales(rep_api):
    response = rep_api.post(BULK, {"events": [_event(1, "ann@acme.example")]}, format="json")

    assert response.status_code == 403
    assert not Activity.objects.exists()


def test_it_refuses_bulk_ingest_without_login(api):
    response = api.post(BULK, {"events": [_event(1, "ann@acme.example")]}, format="json")

    assert response.status_code in (401, 403)
    assert not Activity.objects.exists()
