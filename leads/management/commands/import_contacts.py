import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from leads import importing


class Command(BaseCommand):
    help = "Import contacts from a CSV file with a column mapping (the same service as the import page)."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--mapping", type=Path, required=True, help="A mapping JSON file (see leads/importing.py).")

    def handle(self, *args, file: Path, mapping: Path, **options):
        try:
            text = importing.decode_upload(file.read_bytes())
            mapping_spec = json.loads(mapping.read_text())
            job = importing.import_job_create(filename=file.name, content=text)
            importing.import_job_set_mapping(job=job, mapping=mapping_spec)
            importing.import_job_prepare(job=job)
        except (OSError, json.JSONDecodeError, importing.MappingError) as error:
            raise CommandError(str(error)) from error
        with tqdm(total=job.total_rows, unit="row", desc=f"Importing {file.name}") as bar:

            def progress(current):
                bar.update(current.processed_rows - bar.n)

            job = importing.import_run_to_end(job_id=job.pk, progress=progress)
        self.stdout.write(
            f"Import #{job.pk}: {job.created_count} created, {job.updated_count} updated, "
            f"{job.rejected_count} rejected of {job.total_rows} rows."
        )
        for rejected in job.rejected_rows.all()[:10]:
            self.stdout.write(f"  row {rejected.row_number}: {rejected.errors}")
