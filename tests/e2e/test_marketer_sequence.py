"""A marketer builds a nurture sequence in the browser, previews a step for a real contact,
sends a test to herself and activates the sequence."""

import re

import pytest
from playwright.sync_api import expect

from nurturing.models import OutboundEmail, Sequence

from ..factories import ContactFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "pass-for-tests-1"


def test_a_marketer_builds_previews_tests_and_activates_a_sequence(page, screenshot, marketer):
    ContactFactory(first_name="Ada", last_name="Lovelace", lifecycle_stage="lead", account__name="Analytical Engines")

    page.goto("/login/")
    page.get_by_label("Username").fill("marketer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    # Build the sequence: a segment of leads.
    page.get_by_role("link", name="Sequences").click()
    page.get_by_role("link", name="New sequence").first.click()
    page.get_by_label("Name").fill("Welcome track")
    page.locator("input[name=entry_stages][value=lead]").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Welcome track")).to_be_visible()

    # A first step with a merge field, then preview it for a real contact.
    page.get_by_role("link", name="Add step").click()
    page.get_by_label("Delay amount").fill("0")
    page.get_by_label("Delay unit").select_option("hours")
    page.get_by_label("Subject").fill("Hi {{ first_name | there }}")
    page.get_by_label("Body").fill("A guide for **{{ company | your team }}**: [read it](https://example.com/guide).")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved step 1.")).to_be_visible()
    page.get_by_role("link", name="Preview").click()
    expect(page.get_by_role("heading", name="Variant A: Hi Ada")).to_be_visible()
    expect(page.locator(".email-preview strong")).to_have_text("Analytical Engines")
    screenshot("marketer-sequence-preview")

    # Send a test to herself: it is queued for her, rendered for Ada.
    page.get_by_role("button", name=re.compile("Send a test")).click()
    expect(page.get_by_text(f"Test sent to {marketer.email}")).to_be_visible()

    # Activate the sequence.
    page.get_by_role("link", name="Welcome track").click()
    page.get_by_role("button", name="Activate").click()
    expect(page.get_by_text("“Welcome track” is now active.")).to_be_visible()
    screenshot("marketer-sequence-active")

    sequence = Sequence.objects.get(name="Welcome track")
    assert sequence.status == "active" and sequence.entry_stages == ["lead"]
    test_email = OutboundEmail.objects.get(to=marketer.email)
    assert test_email.subject == "[TEST] Hi Ada"
