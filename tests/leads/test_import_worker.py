"""The import page's flow end to end through a real Celery worker process."""

import pytest
from django.urls import reverse

from leads.models import Contact, ImportJob, Outcome
from scoring.models import ContactScore

from ..worker import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

CSV = (
    "Id,Email,First name,Visits,Converted\n"
    + "".join(
        f"id-{n},person{n}@import.example,Person{n},{n % 7},{'1' if n % 3 == 0 else '0'}\n" for n in range(1, 1201)
    )
    + "id-bad,not-an-email,Broken,x,maybe\n"
)


def _upload_and_map(client) -> ImportJob:
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(reverse("leads:import_upload"), {"file": SimpleUploadedFile("people.csv", CSV.encode())})
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("leads:import_mapping", args=[job.pk])
    form = {
        "null_values": "",
        "to_0": "external_id",
        "to_1": "email",
        "to_2": "contact.first_name",
        "to_3": "attribute",
        "key_3": "visits",
        "type_3": "number",
        "to_4": "outcome",
    }
    for index in range(5):
        form.setdefault(f"key_{index}", "")
        form.setdefault(f"type_{index}", "text")
    response = client.post(reverse("leads:import_mapping", args=[job.pk]), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    return job


def test_an_import_started_from_the_page_is_run_by_a_real_worker(marketer_client, celery_worker_process):
    job = _upload_and_map(marketer_client)

    response = marketer_client.post(reverse("leads:import_start", args=[job.pk]))
    assert response.status_code == 302

    job = wait_for(
        lambda: ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.DONE).first(),
        timeout=120,
        worker=celery_worker_process,
    )
    assert (job.created_count, job.updated_count, job.rejected_count) == (1200, 0, 1)
    assert job.processed_rows == job.total_rows == 1201
    assert Contact.objects.count() == 1200
    assert Contact.objects.get(external_id="id-7").attributes == {"visits": 0}
    assert Outcome.objects.filter(kind=Outcome.Kind.CONVERTED).count() == 400
    rejected = job.rejected_rows.get()
    assert set(rejected.errors) == {"Email", "Visits", "Converted"}
    # Every imported contact is scored by the worker after its chunk commits.
    wait_for(lambda: ContactScore.objects.count() == 1200, timeout=120, worker=celery_worker_process)
