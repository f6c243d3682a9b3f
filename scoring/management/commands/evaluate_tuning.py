"""Benchmark of model tuning on a labelled CSV: default rules versus the suggested scorecard.

Runs in a fresh database (a temporary SQLite file, or --database-url) through the same
services the marketer's pages use: import → labels → suggestion → draft → publish →
rescore. Metrics are computed from the scores the engine stored for the held-out leads.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

INNER_FLAG = "--inside-fresh-database"


class Command(BaseCommand):
    help = "Import a labelled CSV into a fresh database, tune the scoring model on 70%, report holdout metrics."

    def add_arguments(self, parser):
        parser.add_argument("--csv", type=Path, required=True)
        parser.add_argument("--mapping", type=Path, required=True)
        parser.add_argument("--target", choices=["precision", "volume"], default="volume")
        parser.add_argument("--target-value", type=float, default=0.31, help="Precision, or share of leads to flag.")
        parser.add_argument("--max-rules", type=int, default=30)
        parser.add_argument("--points-to-double", type=int, default=20)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--database-url", help="An empty database to use instead of a temporary SQLite file.")
        parser.add_argument(INNER_FLAG, action="store_true", help="(internal) run the evaluation here.")

    def handle(self, *args, **options):
        if not options["csv"].is_file() or not options["mapping"].is_file():
            raise CommandError("--csv and --mapping must be existing files.")
        if options["inside_fresh_database"]:
            return self.evaluate(**options)
        return self.run_in_fresh_database(options)

    def run_in_fresh_database(self, options) -> None:
        with tempfile.TemporaryDirectory(prefix="evaluate-tuning-") as scratch:
            env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
            env["DATABASE_URL"] = options["database_url"] or f"sqlite:///{scratch}/evaluate.sqlite3"
            env["VAR_DIR"] = scratch  # a private filesystem broker: nothing reaches real workers
            manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
            self.stdout.write(f"Fresh database: {env['DATABASE_URL']}")
            subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True)
            arguments = [
                "--csv",
                str(options["csv"].resolve()),
                "--mapping",
                str(options["mapping"].resolve()),
                "--target",
                options["target"],
                "--target-value",
                str(options["target_value"]),
                "--max-rules",
                str(options["max_rules"]),
                "--points-to-double",
                str(options["points_to_double"]),
                "--seed",
                str(options["seed"]),
                INNER_FLAG,
            ]
            result = subprocess.run([*manage, "evaluate_tuning", *arguments], env=env)
            if result.returncode:
                raise CommandError(f"The evaluation failed (exit {result.returncode}).")

    def evaluate(self, *, csv: Path, mapping: Path, target, target_value, max_rules, points_to_double, seed, **_):
        from leads import importing
        from scoring.models import ModelVersion, ScoringModel
        from scoring.services import rescore_run_to_end
        from scoring.tuning.labels import stratified_split, training_labels
        from scoring.tuning.suggest import suggestion_compute, suggestion_request
        from scoring.versions import version_publish

        started = time.monotonic()
        job = importing.import_job_create(filename=csv.name, content=importing.decode_upload(csv.read_bytes()))
        importing.import_job_set_mapping(job=job, mapping=json.loads(mapping.read_text()))
        importing.import_job_prepare(job=job)
        with tqdm(total=job.total_rows, unit="row", desc="Import (scored with the default rules)") as bar:
            job = importing.import_run_to_end(job_id=job.pk, progress=lambda j: bar.update(j.processed_rows - bar.n))
        self.stdout.write(f"Imported {job.created_count} leads, {job.rejected_count} rejected.")

        labels = training_labels()
        _, held_out = stratified_split(labels, holdout=0.3, seed=seed)
        self.stdout.write(f"{len(labels)} labelled leads ({sum(labels.values())} good); holdout {len(held_out)}.")
        default = self.stored_metrics(held_out, labels)

        scoring_model = ScoringModel.objects.order_by("id").first()
        suggestion = suggestion_request(
            scoring_model=scoring_model,
            target_kind=target,
            target_value=target_value,
            max_rules=max_rules,
            points_to_double=points_to_double,
        )
        suggestion.seed = seed
        suggestion.save(update_fields=["seed"])
        with tqdm(total=100, unit="%", desc="Suggesting a model") as bar:

            def progress(current):
                bar.update(current.progress - bar.n)
                bar.set_postfix_str(current.stage[:40])

            suggestion = suggestion_compute(suggestion, progress=progress)
        if suggestion.draft is None:
            raise CommandError(f"No suggestion: {suggestion.message}")
        assert suggestion.result["holdout_ids"] == held_out  # the same split the pages use
        draft = ModelVersion.objects.get(pk=suggestion.draft.pk)
        run = version_publish(draft=draft)
        with tqdm(total=run.total_chunks, unit="chunk", desc="Rescore with the suggested model") as bar:
            rescore_run_to_end(run=run, progress=lambda r: bar.update(r.done_chunks - bar.n))
        tuned = self.stored_metrics(held_out, labels)
        self.report(draft, suggestion, default, tuned, time.monotonic() - started)

    def stored_metrics(self, held_out: list[int], labels: dict[int, int]) -> dict:
        """AUC, precision and recall at the MQL levels, from the scores the engine stored."""
        from scoring.models import ContactScore
        from scoring.tuning.suggest import model_metrics

        rows = ContactScore.objects.filter(contact_id__in=held_out).values_list("contact_id", "total", "mql_level")
        stored = {contact_id: (total, level) for contact_id, total, level in rows}
        totals = np.array([float(stored.get(cid, (0, ""))[0]) for cid in held_out])
        flags = np.array([bool(stored.get(cid, (0, ""))[1]) for cid in held_out])
        return model_metrics(totals, flags, np.array([labels[cid] for cid in held_out]))

    def report(self, draft, suggestion, default: dict, tuned: dict, seconds: float) -> None:
        self.stdout.write("")
        self.stdout.write(
            f"Suggested model: v{draft.number}, {draft.fit_rules.count()} fit + "
            f"{draft.engagement_rules.count()} engagement rules, MQL threshold "
            f"{suggestion.result['threshold']['threshold']} points "
            f"({suggestion.points_to_double} points double the odds)"
        )
        self.stdout.write(f"{'holdout':<16}{'ROC AUC':>9}{'precision':>11}{'recall':>8}{'flagged':>9}")
        for name, metrics in (("default rules", default), ("tuned model", tuned)):
            auc, precision = (("n/a" if metrics[k] is None else f"{metrics[k]:.3f}") for k in ("auc", "precision"))
            self.stdout.write(f"{name:<16}{auc:>9}{precision:>11}{metrics['recall']:>8.3f}{metrics['mql_share']:>9.1%}")
        self.stdout.write(f"Took {seconds:.0f} s.")
