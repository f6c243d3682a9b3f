"""A contact's rescore is requested in the transaction that changed its data, so losing
the task (a broker restart, a failed publish) never leaves a score behind for good."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from leads.models import Contact
from scoring.models import ContactScore, RescoreRequest
from scoring.services import contacts_rescore, rescore_requests_sweep

from ..worker import WorkerProcess, purge_broker, wait_for


def webinar_today(email: str) -> dict:
    return {"type": "webinar_attended", "occurred_at": timezone.now().isoformat(), "email": email, "external_id": "w1"}


@pytest.mark.django_db
def test_an_ingested_event_leaves_a_request_until_the_contact_is_rescored(marketer_api):
    marketer_api.post("/api/activities/bulk/", {"events": [webinar_today("ada@example.com")]}, format="json")
    contact = Contact.objects.get(email="ada@example.com")

    assert RescoreRequest.objects.filter(contact=contact, reason="new activity").exists()
    contacts_rescore(contact_ids=[contact.pk], reason="new activity")
    assert not RescoreRequest.objects.filter(contact=contact).exists()


@pytest.mark.django_db
def test_an_event_scored_now_is_in_the_score_when_the_ingest_returns(marketer_api):
    response = marketer_api.post("/api/activities/?score=now", webinar_today("ada@example.com"), format="json")

    assert response.status_code == 201
    score = ContactScore.objects.get(contact__email="ada@example.com")
    assert score.engagement == Decimal("15.0")
    assert response.json()["score"]["engagement"] == "15.0"
    assert score.contact.score_changes.count() == 1
    # Nothing left for a worker to do: the drain is never queued.
    assert not RescoreRequest.objects.exists()


@pytest.mark.django_db
def test_the_sweep_leaves_requests_alone_while_their_task_may_still_run(marketer_api, settings):
    settings.RESCORE_CLAIM_TIMEOUT = 300
    marketer_api.post("/api/activities/bulk/", {"events": [webinar_today("ada@example.com")]}, format="json")

    assert rescore_requests_sweep() == 0

    RescoreRequest.objects.update(requested_at=timezone.now() - timedelta(seconds=301))
    assert rescore_requests_sweep() == 1
    # Stamped as queued now, so the next minute's sweep does not queue it again.
    assert rescore_requests_sweep() == 0


@pytest.mark.worker
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_rescore_whose_task_the_broker_lost_is_queued_again_by_beat(marketer_api, settings, tmp_path):
    settings.RESCORE_CLAIM_TIMEOUT = 0
    purge_broker()
    response = marketer_api.post("/api/activities/bulk/", {"events": [webinar_today("ada@example.com")]}, format="json")
    assert response.json()["created"] == 1
    purge_broker()  # the broker lost the rescore task
    worker = WorkerProcess(tmp_path).start()
    try:
        assert rescore_requests_sweep() == 1  # what beat does every minute
        score = wait_for(lambda: ContactScore.objects.filter(contact__email="ada@example.com").first(), worker=worker)
    finally:
        worker.stop()

    assert score.engagement == Decimal("15.0")
    assert not RescoreRequest.objects.exists()
