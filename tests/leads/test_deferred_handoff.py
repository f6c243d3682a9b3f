"""An ingest that scores now answers with the new MQL; its hand-off follows in a worker."""

from datetime import timedelta

import pytest
from django.utils import timezone

from leads import handoff
from leads.models import AuditEntry, Contact, HandoffRequest, LifecycleStage
from leads.services import IngestEvent, account_upsert, activities_ingest, contact_set_stage, contact_upsert
from leads.tasks import mql_handoffs
from nurturing.models import Enrolment, OutboundEmail, Sequence

pytestmark = pytest.mark.django_db


def _executive():
    account = account_upsert(name="Fit Co", domain="fit.example", industry="Software", employee_count=1200)
    return contact_upsert(
        email="cmo@fit.example", job_title="Chief Marketing Officer", seniority="c_level", account=account
    ).contact


def _score_now(contact, *types):
    """Ingest these events for the contact, scoring now (as `POST /api/activities/?score=now`)."""
    events = [
        IngestEvent(
            index=n,
            type_key=type_key,
            occurred_at=timezone.now() - timedelta(minutes=5),
            source="test",
            external_id=f"now-{type_key}-{n}",
            properties={},
            contact_id=contact.pk,
        )
        for n, type_key in enumerate(types)
    ]
    activities_ingest(events=events, score_now=True)


MAKES_AN_MQL = ("demo_request", "pricing_page_view", "pricing_page_view", "webinar_attended")


def test_scoring_now_answers_with_the_mql_and_queues_its_hand_off(
    rep, marketer_api, django_capture_on_commit_callbacks
):
    _executive()
    event = {
        "type": "demo_request",
        "occurred_at": (timezone.now() - timedelta(minutes=5)).isoformat(),
        "email": "cmo@fit.example",
        "external_id": "form-1",
        "source": "website",
    }
    for n, type_key in enumerate(MAKES_AN_MQL[1:]):
        marketer_api.post("/api/activities/", {**event, "type": type_key, "external_id": f"warm-{n}"}, format="json")

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = marketer_api.post("/api/activities/?score=now", event, format="json")

    assert response.status_code == 201
    assert response.json()["score"]["lifecycle_stage"] == LifecycleStage.MQL
    lead = Contact.objects.get(email="cmo@fit.example")
    assert lead.mql_at is not None
    assert lead.owner is None  # not yet: the worker routes it
    assert list(HandoffRequest.objects.values_list("contact_id", "mql_at")) == [(lead.pk, lead.mql_at)]
    assert mql_handoffs.delay in queued

    assert handoff.handoff_requests_drain() == 1

    lead.refresh_from_db()
    assert lead.owner == rep
    assert AuditEntry.objects.filter(action="lead.route", object_id=str(lead.pk)).count() == 1
    assert list(OutboundEmail.objects.values_list("to", flat=True)) == [rep.email]
    assert not HandoffRequest.objects.exists()


def test_a_hand_off_runs_once_however_often_its_task_runs(rep, django_capture_on_commit_callbacks):
    lead = _executive()
    with django_capture_on_commit_callbacks(execute=False):
        _score_now(lead, *MAKES_AN_MQL)

    assert handoff.handoff_requests_drain() == 1
    assert handoff.handoff_requests_drain() == 0

    assert Contact.objects.get(pk=lead.pk).owner == rep
    assert AuditEntry.objects.filter(action="lead.route").count() == 1
    assert OutboundEmail.objects.count() == 1


def test_a_lead_that_left_the_queue_before_its_hand_off_is_not_routed(rep, django_capture_on_commit_callbacks):
    lead = _executive()
    with django_capture_on_commit_callbacks(execute=False):
        _score_now(lead, *MAKES_AN_MQL)
    contact_set_stage(contact=Contact.objects.get(pk=lead.pk), to_stage=LifecycleStage.DISQUALIFIED, rule="test")

    assert handoff.handoff_requests_drain() == 1

    lead.refresh_from_db()
    assert (lead.lifecycle_stage, lead.owner) == (LifecycleStage.DISQUALIFIED, None)
    assert not AuditEntry.objects.filter(action="lead.route").exists()
    assert not OutboundEmail.objects.exists()
    assert not HandoffRequest.objects.exists()


def test_beat_queues_a_hand_off_whose_task_was_lost_again(rep, settings, django_capture_on_commit_callbacks):
    lead = _executive()
    with django_capture_on_commit_callbacks(execute=False):
        _score_now(lead, *MAKES_AN_MQL)
    assert handoff.handoff_requests_sweep() == 0  # just requested: its task may still run

    HandoffRequest.objects.update(requested_at=timezone.now() - timedelta(seconds=settings.RESCORE_CLAIM_TIMEOUT + 1))

    assert handoff.handoff_requests_sweep() == 1
    assert handoff.handoff_requests_sweep() == 0  # stamped: the next minute does not count it again
    assert handoff.handoff_requests_drain() == 1
    assert Contact.objects.get(pk=lead.pk).owner == rep


def test_a_lead_a_rep_claimed_before_its_hand_off_stays_theirs(rep, other_rep, django_capture_on_commit_callbacks):
    lead = _executive()
    with django_capture_on_commit_callbacks(execute=False):
        _score_now(lead, *MAKES_AN_MQL)
    handoff.lead_claim(contact_id=lead.pk, user=other_rep)

    assert handoff.handoff_requests_drain() == 1

    assert Contact.objects.get(pk=lead.pk).owner == other_rep
    assert not AuditEntry.objects.filter(action="lead.route").exists()
    assert not OutboundEmail.objects.exists()


def test_a_new_mql_leaves_its_nurture_sequence_before_its_routing(rep, django_capture_on_commit_callbacks):
    lead = _executive()
    track = Sequence.objects.create(name="Content track", status="active", entry_stages=["lead"], exit_on_mql=True)
    enrolment = Enrolment.objects.create(sequence=track, contact=lead, enrolled_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=False):
        _score_now(lead, *MAKES_AN_MQL)

    enrolment.refresh_from_db()
    assert (enrolment.status, enrolment.exit_reason) == (Enrolment.Status.EXITED, "became an MQL")
    assert HandoffRequest.objects.filter(contact=lead).exists()  # routing is still to come
