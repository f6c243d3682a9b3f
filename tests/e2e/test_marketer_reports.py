"""A marketer opens the funnel report, picks March 2025, enters what a campaign cost and
downloads the campaign table as CSV."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import expect

from leads.models import CampaignCost, Contact, StageChange

from ..factories import ContactFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "pass-for-tests-1"


def mql(day: int, campaign: str) -> None:
    """A contact that became a lead on 1 March 2025 and an MQL on `day` March."""
    contact = ContactFactory(lead_source="Paid Search", utm_campaign=campaign, lifecycle_stage="mql")
    for from_stage, to_stage, when in [("", "lead", 1), ("lead", "mql", day)]:
        StageChange.objects.create(
            contact=contact,
            from_stage=from_stage,
            to_stage=to_stage,
            changed_at=datetime(2025, 3, when, 10, tzinfo=UTC),
        )


def show_march(page) -> None:
    page.get_by_label("From", exact=True).fill("2025-03-01")
    page.get_by_label("To", exact=True).fill("2025-03-31")
    page.get_by_role("button", name="Show report").click()


def mqls_in_range(page):
    return page.locator(".report-summary div", has_text="MQLs in range").locator("dd")


def test_a_marketer_reads_the_report_enters_a_cost_and_downloads_a_csv(page, screenshot, marketer, settings):
    settings.TIME_ZONE = "UTC"
    mql(5, "brand-search")
    mql(12, "brand-search")
    mql(20, "=cmd|' /C calc'!A0")  # a hostile campaign key: must not run as a formula in a spreadsheet
    assert Contact.objects.count() == 3

    page.goto("/login/")
    page.get_by_label("Username").fill("marketer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    # The report opens on the last 90 days; March 2025 is long past, so it holds no MQLs.
    page.get_by_role("link", name="Reports").click()
    expect(page.get_by_role("heading", name="Funnel report")).to_be_visible()
    expect(mqls_in_range(page)).to_have_text("0")

    show_march(page)
    expect(page.get_by_text("1 Mar 2025 – 31 Mar 2025 (31 days)")).to_be_visible()
    expect(mqls_in_range(page)).to_have_text("3")

    # Enter March's spend on brand-search.
    page.get_by_role("link", name="Campaign costs").click()
    page.get_by_label("Campaign", exact=True).fill("brand-search")
    page.get_by_label("From", exact=True).fill("2025-03-01")
    page.get_by_label("To", exact=True).fill("2025-03-31")
    page.get_by_label("Amount").fill("1000")
    page.get_by_role("button", name="Add cost").click()
    expect(page.get_by_text("Cost for “brand-search” saved.")).to_be_visible()
    assert CampaignCost.objects.get().amount == 1000

    # Back to March: 1,000 over brand-search's 2 MQLs is 500 per MQL.
    page.get_by_role("link", name="Funnel report").click()
    show_march(page)
    row = page.locator("#table-campaigns tbody tr", has_text="brand-search")
    expect(row).to_contain_text("1,000.00")
    expect(row).to_contain_text("500.00")
    expect(page.get_by_text("No past MQL has a known result")).to_be_visible()  # nothing won or lost yet
    screenshot("marketer-funnel-report")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV of mqls and cost by campaign").click()
    download = download_info.value
    assert download.suggested_filename == "campaigns-2025-03-01-to-2025-03-31.csv"
    lines = Path(download.path()).read_text().splitlines()
    assert "brand-search,2,2.00,1000.00,EUR,500.00,500.00" in lines
    assert "'=cmd|' /C calc'!A0,1,1.00,,,," in lines
