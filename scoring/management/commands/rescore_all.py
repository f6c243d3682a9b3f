from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from scoring.models import RescoreRun
from scoring.selectors import active_version
from scoring.services import matchers_prepare, rescore_run_start, rescore_run_to_end


class Command(BaseCommand):
    help = "Rescore every contact with the active model, in this process, with a progress bar."

    def add_arguments(self, parser):
        parser.add_argument(
            "--if-unscored", action="store_true", help="Do nothing unless some contact has no score yet (for make run)."
        )

    def handle(self, *args, if_unscored: bool, **options):
        from leads.models import Contact

        version = active_version()
        if version is None:
            raise CommandError("No active scoring model version.")
        if if_unscored and not Contact.objects.filter(score__isnull=True).exists():
            self.stdout.write("Every contact has a score; nothing to do.")
            return
        matchers_prepare(version=version)
        # Chunks are queued for workers after commit too; running them here first is
        # harmless: a worker finds each chunk done and skips it.
        run = rescore_run_start(version=version, reason=RescoreRun.Reason.MANUAL)
        with tqdm(total=run.total_chunks, unit="chunk", desc=f"Rescoring {run.total_contacts} contacts") as bar:
            run = rescore_run_to_end(run=run, progress=lambda current: bar.update(current.done_chunks - bar.n))
        self.stdout.write(f"Rescored {run.total_contacts} contacts with {version}: {run.changed_contacts} changed.")
