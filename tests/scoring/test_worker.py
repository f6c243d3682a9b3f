"""Scoring through real Celery worker processes (Redis in the services suite)."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from leads.models import Contact, LifecycleStage
from leads.roles import MARKETING
from scoring.models import ContactScore, RescoreChunk, RescoreRun, ScoreChange, ScoreChangeBatch
from scoring.selectors import active_version, score_history
from scoring.services import rescore_runs_sweep
from scoring.versions import draft_get_or_create, version_publish

from ..factories import UserFactory
from ..worker import WorkerProcess, purge_broker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_an_ingested_demo_request_is_scored_by_the_worker(api, celery_worker_process):
    api.force_authenticate(UserFactory(username="integration", roles=[MARKETING]))
    now = timezone.now()
    events = [
        {
            "type": "demo_request",
            "occurred_at": now.isoformat(),
            "email": "cto@bigco.example",
            "external_id": "d1",
            "contact": {"first_name": "Casey", "job_title": "CTO"},
        },
        {
            "type": "webinar_attended",
            "occurred_at": (now - timedelta(days=2)).isoformat(),
            "email": "cto@bigco.example",
            "external_id": "w1",
        },
    ]

    response = api.post("/api/activities/bulk/", {"events": events}, format="json")

    assert response.status_code == 200 and response.json()["created"] == 2
    contact = Contact.objects.get(email="cto@bigco.example")
    score = wait_for(
        lambda: ContactScore.objects.filter(contact=contact, engagement__gt=0).first(), worker=celery_worker_process
    )
    # 30 for today's demo request, 15 × 0.5^(2/90) = 14.8 for the webinar two days ago
    assert score.engagement == Decimal("44.8")
    assert "Demo request" in [c["rule"] for c in score.explanation]
    assert len(score_history(contact.pk)) == 1


def test_a_full_rescore_survives_its_worker_being_killed(settings, tmp_path, transactional_db):
    settings.RESCORE_CHUNK_SIZE = 300
    settings.RESCORE_CLAIM_TIMEOUT = 2
    Contact.objects.bulk_create(
        Contact(
            email=f"lead{n}@co{n % 40}.example",
            job_title="VP Sales" if n % 3 else "Intern",
            seniority="vp" if n % 3 else "intern",
            lifecycle_stage=LifecycleStage.LEAD,
        )
        for n in range(4500)
    )
    draft = draft_get_or_create(scoring_model=active_version().scoring_model)
    draft.fit_rules.filter(name="Executive seniority").update(points=35)
    purge_broker()
    worker_env = {"RESCORE_CLAIM_TIMEOUT": "2", "RESCORE_CHUNK_SIZE": "300"}
    worker = WorkerProcess(tmp_path, env=worker_env).start()

    run = version_publish(draft=draft)
    wait_for(lambda: RescoreRun.objects.get(pk=run.pk).done_chunks >= 2, worker=worker, interval=0.05)
    worker.kill()
    run.refresh_from_db()
    assert 0 < run.done_chunks < run.total_chunks == 15, "the worker must die in the middle of the run"

    replacement = WorkerProcess(tmp_path, env=worker_env).start()
    try:
        time.sleep(settings.RESCORE_CLAIM_TIMEOUT + 0.5)
        rescore_runs_sweep()  # what beat does every minute
        run = wait_for(
            lambda: RescoreRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
            worker=replacement,
            timeout=120,
        )
    finally:
        replacement.stop()

    assert run.done_chunks == run.total_chunks
    assert set(RescoreChunk.objects.filter(run=run).values_list("status", flat=True)) == {"done"}
    assert ContactScore.objects.filter(version=run.version).count() == 4500
    assert run.changed_contacts == 4500
    # Every change recorded once: rows (SQLite's path) or batches of a chunk (PostgreSQL's).
    changed = list(ScoreChange.objects.filter(version=run.version).values_list("contact_id", flat=True))
    changed += [c for batch in ScoreChangeBatch.objects.filter(version=run.version) for c in batch.contact_ids]
    assert len(changed) == len(set(changed)) == 4500  # nobody counted twice
    vp = ContactScore.objects.filter(contact__seniority="vp").first()
    assert any(c["rule"] == "Executive seniority" and c["points"] == "35.0" for c in vp.explanation)
