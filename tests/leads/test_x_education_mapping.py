"""The committed mapping for the X Education data set, on rows shaped like that file."""

import csv
import io
import json
from pathlib import Path

import pytest
from django.conf import settings

from leads import importing
from leads.models import ConsentStatus, Contact, Outcome

HEADERS = [
    "Prospect ID",
    "Lead Number",
    "Lead Origin",
    "Lead Source",
    "Do Not Email",
    "Do Not Call",
    "Converted",
    "TotalVisits",
    "Total Time Spent on Website",
    "Page Views Per Visit",
    "Last Activity",
    "Country",
    "Specialization",
    "How did you hear about X Education",
    "What is your current occupation",
    "What matters most to you in choosing a course",
    "Search",
    "Magazine",
    "Newspaper Article",
    "X Education Forums",
    "Newspaper",
    "Digital Advertisement",
    "Through Recommendations",
    "Receive More Updates About Our Courses",
    "Tags",
    "Lead Quality",
    "Update me on Supply Chain Content",
    "Get updates on DM Content",
    "Lead Profile",
    "City",
    "Asymmetrique Activity Index",
    "Asymmetrique Profile Index",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
    "I agree to pay the amount through cheque",
    "A free copy of Mastering The Interview",
    "Last Notable Activity",
]
POST_CONTACT_COLUMNS = {
    "Tags",
    "Lead Quality",
    "Lead Profile",
    "Asymmetrique Activity Index",
    "Asymmetrique Profile Index",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
}


def _row(prospect_id: str, **overrides) -> dict:
    row = dict.fromkeys(HEADERS, "No")
    row.update(
        {
            "Prospect ID": prospect_id,
            "Lead Number": "660737",
            "Lead Origin": "API",
            "Lead Source": "Olark Chat",
            "Converted": "0",
            "TotalVisits": "5",
            "Total Time Spent on Website": "674",
            "Page Views Per Visit": "2.5",
            "Last Activity": "Email Opened",
            "Country": "India",
            "Specialization": "Select",
            "How did you hear about X Education": "Select",
            "What is your current occupation": "Unemployed",
            "What matters most to you in choosing a course": "Better Career Prospects",
            "Tags": "Ringing",
            "Lead Quality": "Low in Relevance",
            "Lead Profile": "Select",
            "City": "Mumbai",
            "Asymmetrique Activity Index": "02.Medium",
            "Asymmetrique Profile Index": "02.Medium",
            "Asymmetrique Activity Score": "15",
            "Asymmetrique Profile Score": "15",
            "Last Notable Activity": "Modified",
        }
    )
    row.update(overrides)
    return row


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADERS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _import(text: str):
    mapping = json.loads((Path(settings.BASE_DIR) / "leads/mappings/x_education_leads.json").read_text())
    job = importing.import_job_create(filename="Leads.csv", content=text)
    importing.import_job_set_mapping(job=job, mapping=mapping)
    importing.import_job_prepare(job=job)
    return importing.import_run_to_end(job_id=job.pk)


@pytest.mark.django_db
def test_it_imports_each_lead_keyed_by_prospect_id_with_its_outcome():
    text = _csv(
        [
            _row("id-1", Converted="1", **{"Do Not Email": "Yes"}),
            _row("id-2", TotalVisits="", **{"Page Views Per Visit": ""}),
        ]
    )

    job = _import(text)

    assert (job.created_count, job.updated_count, job.rejected_count) == (2, 0, 0)
    first = Contact.objects.get(external_id="id-1")
    assert first.email_consent_status == ConsentStatus.DO_NOT_EMAIL
    assert first.country == "India" and first.lead_source == "Olark Chat"
    assert first.attributes["total_visits"] == 5 and first.attributes["page_views_per_visit"] == 2.5
    assert "specialization" not in first.attributes  # "Select" means the field was left empty
    assert Outcome.objects.get(contact=first).kind == Outcome.Kind.CONVERTED
    second = Contact.objects.get(external_id="id-2")
    assert "total_visits" not in second.attributes
    assert Outcome.objects.get(contact=second).kind == Outcome.Kind.NOT_CONVERTED


@pytest.mark.django_db
def test_importing_the_same_file_again_creates_no_contacts():
    text = _csv([_row(f"id-{n}") for n in range(30)])
    _import(text)

    again = _import(text)

    assert (again.created_count, again.updated_count) == (0, 30)
    assert Contact.objects.count() == 30
    assert Outcome.objects.count() == 30


@pytest.mark.django_db
def test_post_contact_columns_never_reach_the_contact():
    _import(_csv([_row("id-1")]))

    stored = json.dumps(Contact.objects.get().attributes)
    assert "Ringing" not in stored and "Low in Relevance" not in stored
    mapping = json.loads((Path(settings.BASE_DIR) / "leads/mappings/x_education_leads.json").read_text())
    assert not POST_CONTACT_COLUMNS & set(mapping["columns"])
