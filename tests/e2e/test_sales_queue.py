"""A sales rep works the MQL queue in a real browser: log in, filter, open a lead, accept, reject."""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from leads.models import Contact, HandoffDecision, LifecycleStage
from leads.services import IngestEvent, account_upsert, activities_ingest, contact_upsert
from scoring.services import contacts_rescore

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "pass-for-tests-1"  # tests/factories.py's UserFactory


def _engaged_vp(first_name: str, last_name: str, *, country: str, activities: list[str]) -> Contact:
    """A VP at a 900-person software company (a strong fit) with some engagement, not yet scored."""
    company = last_name.lower()
    account = account_upsert(
        name=f"{last_name} Systems", domain=f"{company}.example", industry="Software", employee_count=900
    )
    contact = contact_upsert(
        email=f"{first_name.lower()}@{company}.example",
        first_name=first_name,
        last_name=last_name,
        seniority="vp",
        job_title="VP Marketing",
        country=country,
        lead_source="Website",
        account=account,
    ).contact
    activities_ingest(
        events=[
            IngestEvent(
                index=n,
                type_key=type_key,
                occurred_at=timezone.now(),
                source="e2e",
                external_id=f"{company}-{n}",
                properties={},
                contact_id=contact.pk,
            )
            for n, type_key in enumerate(activities)
        ]
    )
    return contact


@pytest.fixture
def mqls(rep):
    """Four MQLs, best score first, routed by scoring to the only rep; one of them in France."""
    contacts = {
        "ada": _engaged_vp(
            "Ada", "Lovelace", country="Germany", activities=["demo_request", "trial_signup", "webinar_attended"]
        ),
        "grace": _engaged_vp("Grace", "Hopper", country="Germany", activities=["demo_request", "trial_signup"]),
        "margaret": _engaged_vp(
            "Margaret", "Hamilton", country="Germany", activities=["demo_request", "webinar_attended"]
        ),
        "katherine": _engaged_vp("Katherine", "Johnson", country="France", activities=["demo_request"]),
    }
    contacts_rescore(contact_ids=[contact.pk for contact in contacts.values()], reason="test")
    for contact in contacts.values():
        contact.refresh_from_db()
        assert (contact.lifecycle_stage, contact.owner) == (LifecycleStage.MQL, rep)
    return contacts


def _log_in_as_rep(page) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill("rep")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/queue/$"))  # home sends a rep to the queue


def _row(page, contact: Contact):
    return page.locator(f"#lead-{contact.pk}")


def _lead_names(page) -> list[str]:
    return page.locator("#queue-results tbody tr td:first-child strong").all_inner_texts()


def test_a_rep_filters_the_queue_opens_a_lead_accepts_one_and_rejects_another(page, screenshot, rep, mqls):
    ada, grace, margaret = mqls["ada"], mqls["grace"], mqls["margaret"]
    everyone = ["Ada Lovelace", "Grace Hopper", "Margaret Hamilton", "Katherine Johnson"]

    # Log in: a rep lands on the queue, best score first.
    _log_in_as_rep(page)
    expect(page.get_by_role("heading", name="MQL queue")).to_be_visible()
    expect(page.get_by_text("4 MQLs waiting")).to_be_visible()
    assert _lead_names(page) == everyone
    expect(_row(page, ada)).to_contain_text("Demo request")  # why it qualified
    screenshot("rep-queue")

    # Filter by country: only the French lead is left, and the URL can be shared.
    page.get_by_label("Country").fill("france")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("1 MQL waiting")).to_be_visible()
    assert _lead_names(page) == ["Katherine Johnson"]
    expect(page).to_have_url(re.compile(r"country=france"))
    screenshot("rep-queue-filtered")

    # Clear the filter.
    page.get_by_label("Country").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("4 MQLs waiting")).to_be_visible()
    assert _lead_names(page) == everyone

    # Search as you type: no Enter, no button.
    page.get_by_label("Search").press_sequentially("Hopper")
    expect(page.get_by_text("1 MQL waiting")).to_be_visible()
    assert _lead_names(page) == ["Grace Hopper"]
    page.get_by_label("Search").fill("")
    expect(page.get_by_text("4 MQLs waiting")).to_be_visible()

    # Open a lead from its row, then come back.
    _row(page, ada).get_by_role("link", name="Ada Lovelace").click()
    expect(page).to_have_url(re.compile(rf"/contacts/{ada.pk}/$"))
    expect(page.get_by_role("heading", name="Ada Lovelace", level=1)).to_be_visible()
    expect(page.locator(".record-title")).to_contain_text("Marketing-qualified lead")
    expect(page.get_by_role("button", name="Accept as SQL")).to_be_visible()
    expect(page.get_by_role("heading", name="Why: every rule's contribution")).to_be_visible()
    page.go_back()
    expect(page.get_by_text("4 MQLs waiting")).to_be_visible()

    # Accept one: htmx swaps the row in place, the page is not reloaded.
    page.evaluate("window.__marker = 1")
    _row(page, grace).get_by_role("button", name="Accept").click()
    expect(_row(page, grace)).to_contain_text("Accepted: it is your sales-qualified lead now.")
    expect(_row(page, grace).get_by_role("button", name="Accept")).to_have_count(0)
    expect(page.get_by_text("3 MQLs waiting")).to_be_visible()  # counted again, in place
    assert page.evaluate("window.__marker") == 1

    # Reject another with a reason.
    _row(page, margaret).get_by_label("Reason").select_option(label="Bad timing")
    _row(page, margaret).get_by_role("button", name="Reject").click()
    expect(_row(page, margaret)).to_contain_text("Rejected and handed back to marketing.")
    expect(page.get_by_text("2 MQLs waiting")).to_be_visible()
    assert page.evaluate("window.__marker") == 1
    screenshot("rep-after-actions")

    # The queue has moved on: the two handled leads are gone.
    page.reload()
    expect(page.get_by_text("2 MQLs waiting")).to_be_visible()
    assert _lead_names(page) == ["Ada Lovelace", "Katherine Johnson"]
    screenshot("rep-queue-updated")

    grace.refresh_from_db()
    margaret.refresh_from_db()
    assert (grace.lifecycle_stage, grace.owner) == (LifecycleStage.SQL, rep)
    assert (margaret.lifecycle_stage, margaret.owner) == (LifecycleStage.RECYCLED, None)
    decisions = HandoffDecision.objects.order_by("decided_at").values_list(
        "contact", "decision", "reason", "decided_by"
    )
    assert list(decisions) == [
        (grace.pk, HandoffDecision.Decision.ACCEPTED, "", rep.pk),
        (margaret.pk, HandoffDecision.Decision.REJECTED, "bad_timing", rep.pk),
    ]
    assert Contact.objects.filter(lifecycle_stage=LifecycleStage.MQL).count() == 2
