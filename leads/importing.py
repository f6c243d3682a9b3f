"""CSV import: a column mapping, row conversion, and chunked, resumable processing.

A mapping says, for each column of the file, where its value goes:

    {"null_values": ["Select"],
     "columns": {"Prospect ID": {"to": "external_id"},
                 "Email": {"to": "email"},
                 "Lead Source": {"to": "contact.lead_source"},
                 "Company": {"to": "account.name"},
                 "TotalVisits": {"to": "attribute", "key": "total_visits", "type": "number"},
                 "Converted": {"to": "outcome"},
                 "Do Not Email": {"to": "do_not_email"},
                 "Tags": {"to": "ignore"}}}

Columns the mapping does not name are ignored. Every row is converted and validated
on its own: a bad row is rejected with reasons and never stops the others.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from .audit import audit_record
from .models import (
    Account,
    ConsentStatus,
    Contact,
    CustomAttribute,
    ImportJob,
    ImportRejectedRow,
    LifecycleStage,
    Seniority,
)
from .services import (
    CONTACT_FIELDS,
    ContactConflict,
    account_upsert,
    contact_upsert,
    contacts_queue_rescore,
    outcome_record_imported,
)

CHUNK_SIZE = 500
MAX_EMPLOYEE_COUNT = 2_147_483_647  # the largest PositiveIntegerField value on every database
TRUE_WORDS = {"1", "yes", "y", "true", "t", "x", "converted", "won"}
FALSE_WORDS = {"0", "no", "n", "false", "f", "not converted", "lost"}

CONTACT_TARGETS = sorted(CONTACT_FIELDS - {"email_consent_at"} | {"lifecycle_stage"})
ACCOUNT_TARGETS = ["name", "domain", "industry", "employee_count", "annual_revenue", "country"]
SIMPLE_TARGETS = {"ignore", "external_id", "email", "attribute", "outcome", "do_not_email"}


def target_choices() -> list[tuple[str, str]]:
    """Every place a column can go, for the mapping form."""
    return [
        ("ignore", "— ignore this column —"),
        ("external_id", "External id (the source system's key)"),
        ("email", "Email"),
        *[(f"contact.{name}", f"Contact: {name.replace('_', ' ')}") for name in CONTACT_TARGETS],
        *[(f"account.{name}", f"Account: {name.replace('_', ' ')}") for name in ACCOUNT_TARGETS],
        ("attribute", "Custom attribute (typed)"),
        ("do_not_email", "Do not email (yes/no)"),
        ("outcome", "Historical outcome: converted (yes/no)"),
    ]


class MappingError(ValueError):
    pass


def mapping_validate(mapping: dict, headers: list[str]) -> dict:
    """Check a mapping against the file's headers; returns it in canonical form."""
    if not isinstance(mapping, dict) or not isinstance(mapping.get("columns"), dict):
        raise MappingError('A mapping is a JSON object with a "columns" object.')
    problems, columns = [], {}
    for column, spec in mapping["columns"].items():
        if column not in headers:
            problems.append(f'Column "{column}" is not in the file.')
            continue
        spec = {"to": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or not isinstance(spec.get("to", "ignore"), str):
            problems.append(f'"{column}": give a target, e.g. "email" or {{"to": "email"}}.')
            continue
        spec = dict(spec)
        to = spec.get("to", "ignore")
        if to.startswith("contact."):
            if to[8:] not in CONTACT_TARGETS:
                problems.append(f'"{column}": unknown contact field "{to[8:]}".')
        elif to.startswith("account."):
            if to[8:] not in ACCOUNT_TARGETS:
                problems.append(f'"{column}": unknown account field "{to[8:]}".')
        elif to not in SIMPLE_TARGETS:
            problems.append(f'"{column}": unknown target "{to}".')
        if to == "attribute":
            spec["key"] = slugify(str(spec.get("key") or column)).replace("-", "_")[:80]
            if not spec["key"]:
                problems.append(f'"{column}": the attribute key needs letters or digits.')
            spec.setdefault("type", CustomAttribute.DataType.TEXT)
            if spec["type"] not in CustomAttribute.DataType.values:
                problems.append(
                    f'"{column}": attribute type must be one of {", ".join(CustomAttribute.DataType.values)}.'
                )
        columns[column] = spec
    targets = [spec["to"] for spec in columns.values()]
    if "external_id" not in targets and "email" not in targets:
        problems.append("Map one column to the email or to the external id, so rows can be matched on re-import.")
    for single in ("external_id", "email", "outcome", "do_not_email"):
        if targets.count(single) > 1:
            problems.append(f"Only one column can be mapped to {single}.")
    keys = [spec["key"] for spec in columns.values() if spec["to"] == "attribute"]
    if len(keys) != len(set(keys)):
        problems.append("Two columns map to the same custom attribute.")
    problems += _attribute_type_conflicts(columns)
    if problems:
        raise MappingError(" ".join(problems))
    null_values = [str(value) for value in mapping.get("null_values", [])]
    return {"columns": columns, "null_values": null_values}


def _attribute_type_conflicts(columns: dict) -> list[str]:
    wanted = {spec["key"]: spec["type"] for spec in columns.values() if spec["to"] == "attribute"}
    existing = dict(CustomAttribute.objects.filter(key__in=wanted).values_list("key", "data_type"))
    return [
        f'Custom attribute "{key}" already exists as {existing[key]}, not {kind}.'
        for key, kind in wanted.items()
        if key in existing and existing[key] != kind
    ]


def mapping_guess(headers: list[str]) -> dict:
    """A first mapping for the form: columns whose names match a field go there."""
    aliases = {
        "email address": "email",
        "e-mail": "email",
        "id": "external_id",
        "external id": "external_id",
        "company": "account.name",
        "company name": "account.name",
        "website": "account.domain",
        "domain": "account.domain",
        "title": "contact.job_title",
    }
    fields = {name.replace("_", " "): f"contact.{name}" for name in CONTACT_TARGETS}
    fields |= {"email": "email", "industry": "account.industry", "employees": "account.employee_count"}
    columns = {}
    for header in headers:
        name = header.strip().lower()
        to = aliases.get(name) or fields.get(name)
        columns[header] = {"to": to} if to else {"to": "ignore"}
    return {"columns": columns, "null_values": []}


def csv_headers(text: str) -> list[str]:
    reader = csv.reader(io.StringIO(text))
    headers = next(reader, None)
    if not headers or not any(h.strip() for h in headers):
        raise MappingError("The file has no header row.")
    headers = [h.strip() for h in headers]
    duplicates = sorted({h for h in headers if headers.count(h) > 1})
    if duplicates:
        raise MappingError(f"Column names must be unique; repeated: {', '.join(duplicates)}.")
    return headers


def csv_rows(text: str, *, start: int = 0, limit: int | None = None):
    """Yield (row_number, {header: value}) for data rows, skipping the first `start` of them.

    Blank lines are skipped and, like in csv_count_rows, not counted by `start` and
    `limit`; row_number is still the row's place in the file (header excluded).
    """
    reader = csv.reader(io.StringIO(text))
    headers = [h.strip() for h in next(reader, [])]
    data_rows = 0
    for number, values in enumerate(reader, start=1):
        if not any(value.strip() for value in values):
            continue
        data_rows += 1
        if data_rows <= start:
            continue
        if limit is not None and data_rows > start + limit:
            return
        yield number, dict(zip(headers, values + [""] * (len(headers) - len(values)), strict=False))


def csv_count_rows(text: str) -> int:
    return sum(1 for _ in csv_rows(text))


def decode_upload(raw: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


# --- row conversion ---------------------------------------------------------------------


@dataclass
class ConvertedRow:
    contact: dict[str, Any] = field(default_factory=dict)
    account: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    outcome: bool | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)


def row_convert(values: dict[str, str], mapping: dict) -> ConvertedRow:
    row = ConvertedRow()
    nulls = set(mapping.get("null_values", []))
    for column, spec in mapping["columns"].items():
        raw = (values.get(column) or "").strip()
        if raw == "" or raw in nulls:
            continue
        try:
            _place(row, spec, raw)
        except ValueError as error:
            row.errors.setdefault(column, []).append(str(error))
    if not row.errors and not row.contact.get("email") and not row.contact.get("external_id"):
        row.errors["row"] = ["Needs an email or an external id."]
    return row


def _place(row: ConvertedRow, spec: dict, raw: str) -> None:
    to = spec["to"]
    if to == "ignore":
        return
    if to == "external_id":
        row.contact["external_id"] = raw[:200]
    elif to == "email":
        try:
            validate_email(raw)
        except ValidationError:
            raise ValueError(f'"{raw}" is not a valid email address.') from None
        row.contact["email"] = raw
    elif to == "do_not_email":
        if parse_bool(raw):
            row.contact["email_consent_status"] = ConsentStatus.DO_NOT_EMAIL
    elif to == "outcome":
        row.outcome = parse_bool(raw)
    elif to == "attribute":
        row.attributes[spec["key"]] = parse_typed(raw, spec["type"])
    elif to.startswith("account."):
        name = to[8:]
        row.account[name] = _parse_account_field(name, raw)
    else:
        name = to[8:]
        row.contact[name] = _parse_contact_field(name, raw)


def _parse_contact_field(name: str, raw: str):
    if name == "seniority":
        return _parse_choice(raw, Seniority)
    if name == "lifecycle_stage":
        return _parse_choice(raw, LifecycleStage)
    if name == "email_consent_status":
        return _parse_choice(raw, ConsentStatus)
    return raw[: Contact._meta.get_field(name).max_length]


def _parse_account_field(name: str, raw: str):
    if name == "employee_count":
        number = parse_typed(raw, "number")
        if not 0 <= number <= MAX_EMPLOYEE_COUNT:
            raise ValueError(f"Employee count must be between 0 and {MAX_EMPLOYEE_COUNT:,}.")
        return int(number)
    if name == "annual_revenue":
        try:
            amount = Decimal(raw.replace(",", ""))
        except InvalidOperation:
            raise ValueError(f'"{raw}" is not a number.') from None
        # The column holds 16 digits, 2 of them after the point.
        if not amount.is_finite() or abs(amount) >= 10**14:
            raise ValueError(f'"{raw}" is not an amount below 100,000,000,000,000.')
        return amount.quantize(Decimal("0.01"))
    return raw[: Account._meta.get_field(name).max_length]


def _parse_choice(raw: str, choices) -> str:
    wanted = raw.strip().lower()
    for value, label in choices.choices:
        if wanted in {value.lower(), label.lower()}:
            return value
    allowed = ", ".join(value for value in choices.values if value)
    raise ValueError(f'"{raw}" is not one of: {allowed}.')


def parse_bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f'"{raw}" is not yes/no.')


def parse_typed(raw: str, data_type: str):
    if data_type == CustomAttribute.DataType.NUMBER:
        try:
            number = float(raw.replace(",", ""))
        except ValueError:
            raise ValueError(f'"{raw}" is not a number.') from None
        if not math.isfinite(number):  # "nan", "inf": not storable as JSON
            raise ValueError(f'"{raw}" is not a number.')
        return int(number) if number.is_integer() else number
    if data_type == CustomAttribute.DataType.BOOLEAN:
        return parse_bool(raw)
    if data_type == CustomAttribute.DataType.DATE:
        for parse in (date.fromisoformat, lambda v: datetime.strptime(v, "%d/%m/%Y").date()):
            try:
                return parse(raw).isoformat()
            except ValueError:
                continue
        raise ValueError(f'"{raw}" is not a date (YYYY-MM-DD).')
    return raw[:1000]


# --- running a job ------------------------------------------------------------------------


def import_job_create(*, filename: str, content: str, created_by=None) -> ImportJob:
    headers = csv_headers(content)
    return ImportJob.objects.create(
        filename=filename[:255],
        content=content,
        headers=headers,
        created_by=created_by,
        total_rows=csv_count_rows(content),
        mapping=mapping_guess(headers),
    )


def import_job_set_mapping(*, job: ImportJob, mapping: dict) -> ImportJob:
    job.mapping = mapping_validate(mapping, job.headers)
    job.save(update_fields=["mapping"])
    return job


def import_job_prepare(*, job: ImportJob) -> bool:
    """Validate the mapping, define its custom attributes and mark the job queued.

    Returns False when the job had already left the mapping step (a double click).
    """
    job.mapping = mapping_validate(job.mapping, job.headers)
    with transaction.atomic():
        _ensure_attributes(job.mapping)
        started = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.MAPPING).update(
            status=ImportJob.Status.QUEUED, mapping=job.mapping
        )
        if started:  # whoever uploaded the file starts it (the page checks it is a marketer)
            audit_record(actor=job.created_by, action="import.start", target=job, after=_audited(job, "mapping"))
        return bool(started)


def import_job_start(*, job: ImportJob) -> bool:
    """Prepare the job and queue its Celery task after commit; a second start does nothing."""
    from .tasks import import_job_run

    started = import_job_prepare(job=job)
    if started:
        transaction.on_commit(lambda: import_job_run.delay(job.pk))
    return started


def _ensure_attributes(mapping: dict) -> None:
    for column, spec in mapping["columns"].items():
        if spec["to"] == "attribute":
            CustomAttribute.objects.get_or_create(
                key=spec["key"], defaults={"label": spec.get("label") or column, "data_type": spec["type"]}
            )


def import_job_run_next_chunk(*, job_id: int) -> bool:
    """Import the next chunk of rows; returns True while rows remain.

    The chunk's rows and the job's progress are written in one transaction under a lock
    on the job row, so a task that runs twice, or a worker that dies mid-chunk, never
    imports a row twice or skips one: the next run starts at the stored progress.
    """
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.is_finished:
            return False
        if job.started_at is None:
            job.started_at = timezone.now()
        counts, touched = {"created": 0, "updated": 0, "rejected": 0}, []
        for number, values in csv_rows(job.content, start=job.processed_rows, limit=CHUNK_SIZE):
            status, contact_id = _import_row(job, number, values)
            counts[status] += 1
            if contact_id:
                touched.append(contact_id)
        # processed_rows counts data rows (blank lines excluded), as total_rows does.
        processed = job.processed_rows + sum(counts.values())
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.RUNNING,
            started_at=job.started_at,
            processed_rows=processed,
            created_count=F("created_count") + counts["created"],
            updated_count=F("updated_count") + counts["updated"],
            rejected_count=F("rejected_count") + counts["rejected"],
        )
        contacts_queue_rescore(touched, reason="imported")
        if processed >= job.total_rows or not any(counts.values()):
            ImportJob.objects.filter(pk=job.pk).update(
                status=ImportJob.Status.DONE, finished_at=timezone.now(), processed_rows=job.total_rows
            )
            audit_record(actor=None, action="import.finish", target=job, after=_audited(job, *FINISH_FIELDS))
            return False
    return True


def import_job_fail(*, job_id: int, error: str) -> None:
    if (
        ImportJob.objects.filter(pk=job_id)
        .exclude(status=ImportJob.Status.DONE)
        .update(status=ImportJob.Status.FAILED, error=error[:5000], finished_at=timezone.now())
    ):
        audit_record(actor=None, action="import.fail", target=ImportJob(pk=job_id), after={"error": error[:500]})


FINISH_FIELDS = ("status", "total_rows", "created_count", "updated_count", "rejected_count")


def _audited(job: ImportJob, *fields: str) -> dict:
    """What an import's audit entry records: the file, plus the given fields as stored now."""
    return {"file": job.filename, **ImportJob.objects.values(*fields).get(pk=job.pk)}


def _import_row(job: ImportJob, number: int, values: dict[str, str]) -> tuple[str, int | None]:
    """Import one row; returns "created" / "updated" / "rejected" and the contact's id."""
    row = row_convert(values, job.mapping)
    if row.errors:
        ImportRejectedRow.objects.update_or_create(
            job=job, row_number=number, defaults={"values": values, "errors": row.errors}
        )
        return "rejected", None
    try:
        with transaction.atomic():
            has_account = row.account.get("name") or row.account.get("domain")
            account = account_upsert(**row.account) if has_account else None
            result = contact_upsert(
                account=account, attributes=row.attributes, changed_by=job.created_by, **row.contact
            )
            if row.outcome is not None:
                outcome_record_imported(contact=result.contact, converted=row.outcome)
    except ContactConflict as error:
        ImportRejectedRow.objects.update_or_create(
            job=job, row_number=number, defaults={"values": values, "errors": {"row": [str(error)]}}
        )
        return "rejected", None
    except DatabaseError as error:
        # The row's savepoint is rolled back; the rest of the chunk goes on.
        ImportRejectedRow.objects.update_or_create(
            job=job,
            row_number=number,
            defaults={"values": values, "errors": {"row": [f"The database refused this row: {error}"[:500]]}},
        )
        return "rejected", None
    return ("created" if result.created else "updated"), result.contact.pk


def import_run_to_end(*, job_id: int, progress=None) -> ImportJob:
    """Run every remaining chunk in this process (the management command's path)."""
    while import_job_run_next_chunk(job_id=job_id):
        if progress:
            progress(ImportJob.objects.get(pk=job_id))
    job = ImportJob.objects.get(pk=job_id)
    if progress:
        progress(job)
    return job


def _spreadsheet_safe(value: str) -> str:
    """Keep a cell from running as a formula when the file is opened in a spreadsheet."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def rejected_rows_csv(job: ImportJob) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["row", *job.headers, "errors"])
    for rejected in job.rejected_rows.all():
        reasons = "; ".join(f"{column}: {' '.join(messages)}" for column, messages in rejected.errors.items())
        cells = [rejected.values.get(h, "") for h in job.headers]
        writer.writerow([rejected.row_number, *map(_spreadsheet_safe, cells), _spreadsheet_safe(reasons)])
    return out.getvalue()
