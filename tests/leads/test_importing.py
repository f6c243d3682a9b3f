import csv
import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from hypothesis import given
from hypothesis import strategies as st

from leads import importing
from leads.importing import (
    MappingError,
    import_job_create,
    import_job_prepare,
    import_job_set_mapping,
    import_run_to_end,
    rejected_rows_csv,
    row_convert,
)
from leads.models import Account, Contact, CustomAttribute, ImportJob, Outcome
from leads.normalise import normalise_domain
from tests.factories import ContactFactory

CSV_TEXT = """\
Prospect ID,Email,First Name,Lead Source,Company,Website,Employees,TotalVisits,Paying,\
Converted,Do Not Email,Tags
p-1,ann@acme.example,Ann,Google,Acme,https://www.Acme.com,250,5,yes,1,No,vip
p-2,bob@beta.example,Bob,Select,Beta,beta.example,40,2.5,no,0,Yes,
p-3,not-an-email,Cid,Google,Gamma,,10,3,no,0,No,
p-4,dee@delta.example,Dee,Google,Delta,,12,many,no,1,No,
p-5,eve@acme.example,Eve,Referral,Acme,acme.com,,0,,,No,
"""

MAPPING = {
    "null_values": ["Select"],
    "columns": {
        "Prospect ID": {"to": "external_id"},
        "Email": {"to": "email"},
        "First Name": {"to": "contact.first_name"},
        "Lead Source": {"to": "contact.lead_source"},
        "Company": {"to": "account.name"},
        "Website": {"to": "account.domain"},
        "Employees": {"to": "account.employee_count"},
        "TotalVisits": {"to": "attribute", "key": "total_visits", "type": "number"},
        "Paying": {"to": "attribute", "key": "paying", "type": "boolean"},
        "Converted": {"to": "outcome"},
        "Do Not Email": {"to": "do_not_email"},
        "Tags": {"to": "ignore"},
    },
}


def _import(text: str = CSV_TEXT, mapping: dict = MAPPING) -> ImportJob:
    """The management command's path: no Celery, every chunk run in this process."""
    job = import_job_create(filename="leads.csv", content=text)
    import_job_set_mapping(job=job, mapping=mapping)
    import_job_prepare(job=job)
    return import_run_to_end(job_id=job.pk)


def _counts(job: ImportJob) -> tuple[int, int, int]:
    return job.created_count, job.updated_count, job.rejected_count


# --- running an import -------------------------------------------------------------------


def test_it_counts_created_and_rejected_rows(db):
    job = _import()

    assert job.status == ImportJob.Status.DONE
    assert (job.total_rows, job.processed_rows) == (5, 5)
    assert _counts(job) == (3, 0, 2)
    assert set(Contact.objects.values_list("external_id", flat=True)) == {"p-1", "p-2", "p-5"}


def test_it_gives_the_reason_for_each_rejected_row(db):
    job = _import()

    rejected = {row.row_number: row.errors for row in job.rejected_rows.all()}
    assert rejected == {
        3: {"Email": ['"not-an-email" is not a valid email address.']},
        4: {"TotalVisits": ['"many" is not a number.']},
    }


def test_it_creates_nothing_and_updates_every_row_when_the_same_file_is_imported_again(db):
    _import()

    again = _import()

    assert _counts(again) == (0, 3, 2)
    assert Contact.objects.count() == 3
    assert Account.objects.count() == 2


def test_it_updates_contacts_that_already_exist_by_email_in_another_case(db):
    ContactFactory(email="ANN@acme.example", external_id=None, job_title="CEO")

    job = _import()

    assert _counts(job) == (2, 1, 2)
    ann = Contact.objects.get(email__iexact="ann@acme.example")
    assert (ann.external_id, ann.first_name, ann.job_title) == ("p-1", "Ann", "CEO")


def test_it_stores_typed_attributes_as_numbers_and_booleans(db):
    _import()

    attributes = dict(Contact.objects.values_list("external_id", "attributes"))
    assert attributes["p-1"] == {"total_visits": 5, "paying": True}
    assert attributes["p-2"] == {"total_visits": 2.5, "paying": False}
    assert attributes["p-5"] == {"total_visits": 0}


def test_it_fills_accounts_and_finds_them_again_by_domain(db):
    _import()

    acme = Account.objects.get(domain="acme.com")
    assert (acme.name, acme.employee_count) == ("Acme", 250)
    assert set(acme.contacts.values_list("external_id", flat=True)) == {"p-1", "p-5"}


def test_it_marks_do_not_email(db):
    _import()

    assert Contact.objects.get(external_id="p-2").email_consent_status == "do_not_email"
    assert Contact.objects.get(external_id="p-1").email_consent_status == "unknown"


def test_it_records_one_outcome_per_contact_even_after_a_reimport(db):
    _import()
    _import()

    outcomes = dict(Outcome.objects.values_list("contact__external_id", "kind"))
    assert outcomes == {"p-1": "converted", "p-2": "not_converted"}
    assert Outcome.objects.count() == 2
    assert set(Outcome.objects.values_list("source", flat=True)) == {"import"}


def test_it_treats_a_null_value_as_empty_and_keeps_the_stored_value(db):
    ContactFactory(email="bob@beta.example", lead_source="Webinar")

    _import()

    assert Contact.objects.get(email="bob@beta.example").lead_source == "Webinar"
    assert Contact.objects.get(email="eve@acme.example").lead_source == "Referral"


def test_it_imports_every_row_of_a_file_with_blank_lines_in_several_chunks(db, monkeypatch):
    monkeypatch.setattr(importing, "CHUNK_SIZE", 2)
    text = "Email,First Name\n\n\na@x.example,A\nb@x.example,B\n\nc@x.example,C\nd@x.example,D\n"
    text += "e@x.example,E\n"

    job = _import(text, {"columns": {"Email": "email", "First Name": "contact.first_name"}})

    assert job.status == ImportJob.Status.DONE
    assert _counts(job) == (5, 0, 0)
    assert Contact.objects.count() == 5
    assert job.processed_rows == job.total_rows == 5


def test_it_cuts_text_to_the_length_of_its_column(db):
    text = f"Email,Phone\nann@acme.example,{'1' * 80}\n"

    _import(text, {"columns": {"Email": "email", "Phone": "contact.phone"}})

    assert Contact.objects.get().phone == "1" * 50


@pytest.mark.parametrize(
    ("cell", "column"),
    [
        ("inf", "Employees"),
        ("3000000000", "Employees"),
        ("-4", "Employees"),
        ("NaN", "Revenue"),
        ("1e30", "Revenue"),
        ("nan", "Visits"),
        ("-inf", "Visits"),
    ],
)
def test_it_rejects_numbers_that_cannot_be_stored(db, cell, column):
    text = f"Email,Company,Employees,Revenue,Visits\nann@acme.example,Acme,{cell},{cell},{cell}\n"
    mapping = {
        "columns": {
            "Email": "email",
            "Company": "account.name",
            column: {
                "Employees": {"to": "account.employee_count"},
                "Revenue": {"to": "account.annual_revenue"},
                "Visits": {"to": "attribute", "key": "visits", "type": "number"},
            }[column],
        }
    }

    job = _import(text, mapping)

    assert _counts(job) == (0, 0, 1)
    assert list(job.rejected_rows.get().errors) == [column]
    assert not Contact.objects.exists()


def test_it_rejects_a_row_whose_external_id_and_email_name_two_contacts(db):
    ContactFactory(email=None, external_id="p-1")
    ContactFactory(email="ann@acme.example", external_id=None)

    job = _import()

    assert job.status == ImportJob.Status.DONE
    assert _counts(job) == (2, 0, 3)
    assert job.rejected_rows.get(row_number=1).errors == {
        "row": ["Another contact already has this email; its external id differs."]
    }


def test_it_writes_the_rejected_rows_with_their_reasons_as_csv(db):
    job = _import()

    rows = list(csv.reader(io.StringIO(rejected_rows_csv(job))))
    assert rows[0] == ["row", *job.headers, "errors"]
    assert [row[0] for row in rows[1:]] == ["3", "4"]
    assert rows[1][1:3] == ["p-3", "not-an-email"]
    assert rows[1][-1] == 'Email: "not-an-email" is not a valid email address.'
    assert rows[2][-1] == 'TotalVisits: "many" is not a number.'


def test_it_defines_the_custom_attributes_of_the_mapping(db):
    _import()

    assert dict(CustomAttribute.objects.values_list("key", "data_type")) == {
        "total_visits": "number",
        "paying": "boolean",
    }


def test_the_import_command_imports_a_file(db, tmp_path, capsys):
    (tmp_path / "leads.csv").write_text(CSV_TEXT)
    (tmp_path / "mapping.json").write_text(json.dumps(MAPPING))

    call_command("import_contacts", str(tmp_path / "leads.csv"), mapping=tmp_path / "mapping.json")

    assert "3 created, 0 updated, 2 rejected of 5 rows" in capsys.readouterr().out
    assert Contact.objects.count() == 3
    assert CustomAttribute.objects.filter(key="total_visits", data_type="number").exists()


# --- mappings ----------------------------------------------------------------------------


def _mapping_error(mapping: dict) -> str:
    job = import_job_create(filename="leads.csv", content=CSV_TEXT)
    with pytest.raises(MappingError) as error:
        import_job_set_mapping(job=job, mapping=mapping)
    return str(error.value)


def test_it_rejects_a_mapping_of_a_column_not_in_the_file(db):
    message = _mapping_error({"columns": {"Email": "email", "Phone number": "contact.phone"}})

    assert message == 'Column "Phone number" is not in the file.'


def test_it_rejects_a_mapping_without_email_or_external_id(db):
    message = _mapping_error({"columns": {"First Name": "contact.first_name"}})

    assert "Map one column to the email or to the external id" in message


def test_it_rejects_a_mapping_to_an_unknown_field(db):
    message = _mapping_error({"columns": {"Email": "email", "Tags": "contact.shoe_size"}})

    assert message == '"Tags": unknown contact field "shoe_size".'


def test_it_rejects_an_attribute_of_another_type_than_the_stored_one(db):
    CustomAttribute.objects.create(key="total_visits", label="Total visits", data_type="text")

    message = _mapping_error(MAPPING)

    assert message == 'Custom attribute "total_visits" already exists as text, not number.'


@pytest.mark.parametrize("spec", [None, 42, ["email"], {"to": None}, {"to": 7}])
def test_it_rejects_a_malformed_column_spec_with_a_mapping_error(db, spec):
    message = _mapping_error({"columns": {"Email": "email", "Tags": spec}})

    assert message.startswith('"Tags": ')


def test_it_rejects_a_file_without_header():
    with pytest.raises(MappingError, match="no header row"):
        import_job_create(filename="empty.csv", content="")


# --- properties --------------------------------------------------------------------------

EVERY_TARGET = {
    "null_values": ["Select"],
    "columns": {
        "external_id": {"to": "external_id"},
        "email": {"to": "email"},
        **{f"contact.{name}": {"to": f"contact.{name}"} for name in importing.CONTACT_TARGETS},
        **{f"account.{name}": {"to": f"account.{name}"} for name in importing.ACCOUNT_TARGETS},
        **{
            f"attribute.{kind}": {"to": "attribute", "key": f"a_{kind}", "type": kind}
            for kind in CustomAttribute.DataType.values
        },
        "outcome": {"to": "outcome"},
        "do_not_email": {"to": "do_not_email"},
    },
}
CELL_TEXT = st.one_of(
    st.text(),
    st.floats().map(str),
    st.decimals().map(str),
    st.integers().map(str),
    st.sampled_from(["yes", "No", "Select", "ann@acme.example", "2024-02-30", "1,5", "mql"]),
)


def _storable(row) -> bool:
    """The converted values fit the columns they go to."""
    json.dumps(row.attributes, allow_nan=False)
    for name, value in row.contact.items():
        max_length = Contact._meta.get_field(name).max_length
        if isinstance(value, str) and max_length and len(value) > max_length:
            return False
    employees = row.account.get("employee_count", 0)
    revenue = row.account.get("annual_revenue", Decimal(0))
    return 0 <= employees <= 2_147_483_647 and revenue.is_finite() and abs(revenue) < 10**14


@given(values=st.fixed_dictionaries({column: CELL_TEXT for column in EVERY_TARGET["columns"]}))
def test_row_convert_turns_any_cell_text_into_storable_values_or_errors(values):
    row = row_convert(values, EVERY_TARGET)

    assert row.errors or row.contact.get("email") or row.contact.get("external_id")
    if not row.errors:
        assert _storable(row)


DOMAIN_TEXT = st.one_of(
    st.text(),
    st.lists(
        st.sampled_from(
            [
                "www.",
                "WWW2.",
                ".",
                " ",
                "acme",
                "com",
                "https://",
                "//",
                "@",
                "/",
                ":",
                "[",
                "]",
                "::1",
                "?",
                "#",
                "-",
                "8080",
                "\t",
                "münchen",
            ]
        )
    ).map("".join),
)


@given(value=DOMAIN_TEXT)
def test_normalise_domain_gives_a_domain_that_normalises_to_itself(value):
    domain = normalise_domain(value)

    assert normalise_domain(domain) == domain
