"""A marketer retunes scoring from sales feedback in the browser: reads rule performance,
asks for a suggestion, reads its backtest and diff, publishes it and watches the rescore;
the leads the new model qualifies reach a rep's queue."""

import random

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from leads.models import Contact, LifecycleStage
from leads.services import outcome_record_imported

from ..factories import ContactFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "pass-for-tests-1"


def _history(count=300):
    """Decided leads: 'partner' leads converted 80% of the time, 'direct' ones 15%."""
    rng = random.Random(3)
    for number in range(count):
        partner = number % 2 == 0
        converted = rng.random() < (0.8 if partner else 0.15)
        contact = ContactFactory(
            email=f"old{number}@history.example",
            attributes={"segment": "partner" if partner else "direct"},
            lifecycle_stage=LifecycleStage.CUSTOMER if converted else LifecycleStage.DISQUALIFIED,
        )
        outcome_record_imported(contact=contact, converted=converted, occurred_at=timezone.now())


def _log_in(page, username):
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_a_marketer_tunes_the_model_from_feedback_and_publishes_it(
    page, screenshot, marketer, rep, celery_worker_process
):
    _history()
    newcomer = ContactFactory(
        first_name="Grace", last_name="Hopper", attributes={"segment": "partner"}, lifecycle_stage="lead"
    )

    _log_in(page, "marketer")
    page.get_by_role("link", name="Scoring").click()
    page.get_by_role("link", name="v1").click()
    page.get_by_role("link", name="Rule performance").click()
    expect(page.get_by_role("heading", name="Rule performance: Default B2B model v1")).to_be_visible()
    expect(page.get_by_text("leads with a known result (")).to_contain_text("300 leads with a known result")

    # Ask for a suggestion that passes 40% of leads to sales.
    page.get_by_role("link", name="Suggest a new model").click()
    expect(page.get_by_text("300 labelled leads")).to_be_visible()
    page.get_by_label("Target MQL volume").check()
    page.get_by_label("Target (%)").fill("40")
    page.get_by_label("At most this many rules").fill("5")
    page.get_by_role("button", name="Suggest a model").click()

    # The worker fits it while the page shows progress, then the page shows the results.
    expect(page.get_by_role("heading", name="Backtest on 90 held-out leads")).to_be_visible(timeout=60_000)
    suggested_row = page.get_by_role("row", name="Suggested (v2)")
    expect(suggested_row).to_be_visible()
    expect(
        page.get_by_role("cell", name="Segment is partner")
        .or_(page.get_by_role("cell", name="Segment is direct"))
        .first
    ).to_be_visible()
    expect(page.get_by_role("img", name="Score distribution of good and bad leads").first).to_be_visible()
    screenshot("marketer-suggestion-backtest")

    # Publish it and watch every contact being rescored.
    # The browser asks first: a publish replaces the active version and rescores everyone.
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Publish and rescore").click()
    expect(page.get_by_text("v2 is now active.")).to_be_visible()
    assert asked == ["Publish v2? It becomes the active version, and every contact is rescored with it."]
    expect(page.get_by_text("Finished.")).to_be_visible(timeout=60_000)
    screenshot("marketer-suggestion-published")

    newcomer.refresh_from_db()
    assert newcomer.lifecycle_stage == LifecycleStage.MQL
    assert newcomer.score.version.number == 2

    # The rep finds the newly qualified lead in the queue.
    page.get_by_role("button", name="Log out").click()
    _log_in(page, "rep")
    expect(page.get_by_role("link", name="Grace Hopper")).to_be_visible()
    assert Contact.objects.filter(lifecycle_stage=LifecycleStage.MQL).exclude(pk=newcomer.pk).count() == 0
