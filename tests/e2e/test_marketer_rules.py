"""A marketer edits a rule on a draft in the browser, previews what it would do, publishes
it and watches the rescore's progress bar while a real worker rescores every contact."""

import pytest
from playwright.sync_api import expect

from leads.models import LifecycleStage
from scoring.services import contacts_rescore

from ..factories import ContactFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "pass-for-tests-1"


def test_a_marketer_edits_previews_and_publishes_a_rule(page, screenshot, marketer, rep, celery_worker_process):
    shopkeeper = ContactFactory(
        first_name="Ada", last_name="Shop", job_title="Store clerk", lifecycle_stage="lead", account__industry="Retail"
    )
    contacts_rescore(contact_ids=[shopkeeper.pk], reason="setup")
    shopkeeper.refresh_from_db()
    assert shopkeeper.lifecycle_stage == LifecycleStage.LEAD

    page.goto("/login/")
    page.get_by_label("Username").fill("marketer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    # A draft, and a fit rule on it: retail is now the ideal industry.
    page.get_by_role("link", name="Scoring").click()
    page.get_by_role("button", name="Create a draft to edit rules").click()
    page.get_by_role("link", name="Add fit rule").click()
    page.get_by_label("Name").fill("Retail is our market now")
    page.get_by_label("Field").select_option(label="Account: industry")
    page.get_by_label("Operator").select_option("equals")
    page.get_by_label("Value").fill("Retail")
    page.get_by_label("Points").fill("60")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("cell", name="Retail is our market now").first).to_be_visible()

    # Preview: one new MQL, and it is Ada.
    page.get_by_role("link", name="Preview impact").click()
    expect(page.locator(".counts .created dd")).to_have_text("1")
    expect(page.get_by_role("link", name="Ada Shop")).to_be_visible()
    screenshot("marketer-rule-preview")

    # Publish and watch the rescore finish.
    # The browser asks first: a publish replaces the active version and rescores everyone.
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Publish and rescore").click()
    expect(page.get_by_text("is now active. Every contact is rescored with it: progress below.")).to_be_visible()
    assert asked == ["Publish v2? It becomes the active version, and every contact is rescored with it."]
    expect(page.get_by_role("progressbar", name="Rescore progress")).to_be_visible()
    expect(page.get_by_text("Finished.")).to_be_visible(timeout=60_000)
    expect(page.get_by_role("progressbar", name="Rescore progress")).to_have_attribute("value", "100")
    screenshot("marketer-rule-published")

    shopkeeper.refresh_from_db()
    assert shopkeeper.lifecycle_stage == LifecycleStage.MQL
    assert shopkeeper.score.total == 60
