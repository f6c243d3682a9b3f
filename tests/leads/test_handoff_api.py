"""The hand-off through the API: the same rules as the queue page."""

import pytest

from leads.models import Contact, HandoffDecision, LifecycleStage, Outcome

from .test_handoff import make_mql

pytestmark = pytest.mark.django_db


def test_the_queue_lists_mqls_with_their_reasons(rep_api, rep):
    make_mql(owner=rep, country="Germany")
    make_mql(country="France")

    response = rep_api.get("/api/queue/", {"country": "germany"})

    assert response.status_code == 200
    [item] = response.json()["results"]
    assert item["owner"] == "rep" and item["sla"] == "ok"


def test_accept_then_a_second_accept_is_a_conflict(rep_api):
    contact = make_mql()

    first = rep_api.post(f"/api/leads/{contact.pk}/accept/")
    second = rep_api.post(f"/api/leads/{contact.pk}/accept/")

    assert first.status_code == 200 and first.json()["lifecycle_stage"] == "sql"
    assert second.status_code == 409 and "already handled" in second.json()["detail"]
    assert HandoffDecision.objects.filter(contact=contact).count() == 1


def test_reject_needs_a_known_reason(rep_api):
    contact = make_mql()

    response = rep_api.post(f"/api/leads/{contact.pk}/reject/", {"reason": "meh"}, format="json")

    assert response.status_code == 400 and "reason" in response.json()
    assert Contact.objects.get(pk=contact.pk).lifecycle_stage == LifecycleStage.MQL


def test_reject_with_a_reason_recycles(rep_api):
    contact = make_mql()

    response = rep_api.post(f"/api/leads/{contact.pk}/reject/", {"reason": "bad_timing", "note": "Q3"}, format="json")

    assert response.status_code == 200 and response.json()["lifecycle_stage"] == "recycled"


def test_another_reps_lead_is_forbidden(rep_api, other_rep):
    contact = make_mql(owner=other_rep)

    assert rep_api.post(f"/api/leads/{contact.pk}/accept/").status_code == 403
    assert rep_api.post(f"/api/leads/{contact.pk}/feedback/", {"rating": "bad"}, format="json").status_code == 403
    assert Contact.objects.get(pk=contact.pk).lifecycle_stage == LifecycleStage.MQL


def test_outcomes_recorded_through_the_api_move_the_stage(rep_api):
    contact = make_mql()
    rep_api.post(f"/api/leads/{contact.pk}/accept/")

    response = rep_api.post(f"/api/leads/{contact.pk}/outcomes/", {"kind": "won"}, format="json")

    assert response.status_code == 200 and response.json()["lifecycle_stage"] == "customer"
    assert Outcome.objects.get(contact=contact).source == "api"


def test_marketers_cannot_use_the_queue_api(marketer_api):
    contact = make_mql()
    assert marketer_api.get("/api/queue/").status_code == 403
    assert marketer_api.post(f"/api/leads/{contact.pk}/accept/").status_code == 403


def test_an_unknown_lead_is_a_404(rep_api):
    assert rep_api.post("/api/leads/999999/accept/").status_code == 404


def test_a_manager_reassigns_a_lead_and_the_new_owner_is_emailed(api, rep, other_rep):
    from leads.roles import MANAGER
    from nurturing.models import OutboundEmail

    from ..factories import UserFactory

    api.force_authenticate(UserFactory(username="boss-of-sales", roles=[MANAGER]))
    contact = make_mql(owner=rep)

    response = api.post(f"/api/leads/{contact.pk}/reassign/", {"rep": "rep2"}, format="json")

    assert response.status_code == 200 and response.json()["owner"] == "rep2"
    assert OutboundEmail.objects.get().to == other_rep.email


def test_a_rep_cannot_reassign(rep_api, rep, other_rep):
    contact = make_mql(owner=rep)

    response = rep_api.post(f"/api/leads/{contact.pk}/reassign/", {"rep": "rep2"}, format="json")

    assert response.status_code == 403
    assert Contact.objects.get(pk=contact.pk).owner == rep


def test_a_bad_queue_filter_is_a_400_with_the_field(rep_api):
    response = rep_api.get("/api/queue/", {"waiting_hours": "abc"})

    assert response.status_code == 400 and "waiting_hours" in response.json()
