"""Scoring benchmark on PostgreSQL: generate contacts and activities, then time the engine.

Prints a table; targets live here, never in timed tests. Refuses to run on a database
whose name does not start with "bench", because it empties the CRM tables first.
"""

import os
import statistics
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Case, When
from django.utils import timezone

from config.benchmarks import start_workers, stop_workers
from leads.models import ActivityType
from leads.services import IngestEvent, activities_ingest
from scoring.models import ContactScore, RescoreRequest, RescoreRun
from scoring.selectors import active_version, run_new_mqls
from scoring.services import engagement_rebuild
from scoring.versions import draft_get_or_create, version_publish

TABLES = [
    "scoring_dailyengagement",
    "scoring_scorechange",
    "scoring_contactscore",
    "scoring_mqlqualification",
    "scoring_accountscore",
    "scoring_rescorechunk",
    "scoring_rescorerun",
    "leads_stagechange",
    "leads_outcome",
    "leads_activity",
    "leads_contact",
    "leads_account",
]
TYPE_WEIGHTS = [
    ("page_view", 45),
    ("email_open", 20),
    ("email_click", 8),
    ("pricing_page_view", 5),
    ("content_download", 6),
    ("form_submit", 4),
    ("webinar_registered", 3),
    ("webinar_attended", 2),
    ("demo_request", 1),
    ("trial_signup", 1),
    ("event_attended", 1),
    ("social_engagement", 3),
    ("unsubscribe", 1),
]


class Command(BaseCommand):
    help = "Benchmark the scoring engine on PostgreSQL (see README, Benchmarks)."

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=1_000_000)
        parser.add_argument("--activities-per-contact", type=int, default=10)
        parser.add_argument("--workers", type=int, default=2, help="Celery worker processes for the rescore.")
        parser.add_argument("--samples", type=int, default=200, help="Single events timed per path.")
        parser.add_argument("--reuse", action="store_true", help="Keep the data from the last run.")
        parser.add_argument("--mqls", type=int, default=50_000, help="Open MQLs for the queue page timing.")
        parser.add_argument(
            "--queue-only",
            action="store_true",
            help="Only the queue page: contacts and their scores written directly with SQL.",
        )

    def handle(self, *args, contacts, activities_per_contact, workers, samples, reuse, mqls, queue_only, **options):
        self._check_database()
        self.rows = []
        if queue_only:
            self._generate(contacts, 0)
            self._timed("write a score for every contact (SQL)", self._scores_in_sql)
            self._queue_page(mqls)
            self._print()
            return
        if not reuse:
            self._generate(contacts, contacts * activities_per_contact)
            self._timed("build engagement aggregates", engagement_rebuild)
        workers_ = start_workers(workers, name="bench")
        try:
            self._timed("initial score of every contact", self._publish_and_wait)
            # What autovacuum does on a live database after a load like this one. Left to itself it
            # starts on the million new scores and sums while the rule change is being timed, and
            # takes a core from it.
            self._timed("vacuum and analyze after loading", self._vacuum)
            # Timed from the publish: the marketer's draft and edit come before it.
            changed = []
            edit = lambda: changed.extend(self._draft_with_a_rule_change())  # noqa: E731
            self._timed("draft and rule edit, before the publish", edit)
            executive, clicks = changed
            rescore = self._timed("full rescore after a rule change", self._publish_and_wait)
            self._report_rule_change(executive, clicks)
            reference = self._timed("reference: one GROUP BY of rule points over all activities", self._reference)
            self.rows.append(("ratio rescore / reference (target ≤ 0.5)", f"{rescore / reference:.2f}"))
            self._single_events(samples)
            self._queue_page(mqls)
        finally:
            stop_workers(workers_)
        self._print()

    # --- setup ------------------------------------------------------------------------------

    def _check_database(self):
        if connection.vendor != "postgresql":
            raise CommandError("The scoring benchmark runs on PostgreSQL: set DATABASE_URL (see make bench-scoring).")
        if not connection.settings_dict["NAME"].startswith("bench"):
            raise CommandError("Refusing to empty a database whose name does not start with 'bench'.")
        if not settings.REDIS_URL:
            raise CommandError("Set REDIS_URL: the rescore runs on real Celery workers over Redis.")

    def _generate(self, contact_count: int, activity_count: int):
        types = dict(ActivityType.objects.values_list("key", "id"))
        cases, upper = [], 0
        for key, weight in TYPE_WEIGHTS:
            upper += weight
            cases.append(f"WHEN r < {upper} THEN {types[key]}")
        total_weight = upper
        with connection.cursor() as cursor:
            self.stdout.write(f"Generating {contact_count:,} contacts and {activity_count:,} activities …")
            cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
            cursor.execute("SELECT setseed(0.42)")
            started = time.perf_counter()
            cursor.execute(
                """INSERT INTO leads_account (name, domain, industry, employee_count, country, created_at, updated_at)
                SELECT 'Account ' || g, 'account' || g || '.bench.example',
                       (ARRAY['Software','SaaS','Financial Services','Retail','Manufacturing','Education'])[1 + g %% 6],
                       (ARRAY[8, 40, 120, 450, 1800, 9000])[1 + (g * 7) %% 6], 'Germany', now(), now()
                FROM generate_series(1, %s) g""",
                [max(contact_count // 20, 1)],
            )
            cursor.execute(
                """INSERT INTO leads_contact (email, first_name, last_name, job_title, seniority, department, phone,
                    country, city, account_id, lead_source, utm_source, utm_medium, utm_campaign, utm_term, utm_content,
                    lifecycle_stage, email_consent_status, email_consent_source, attributes, created_at, updated_at,
                    score_total, score_fit_grade, score_mql_level)
                SELECT 'person' || g || CASE WHEN g %% 9 = 0 THEN '@gmail.com' ELSE '@bench.example' END,
                       'First' || g, 'Last' || g,
                       (ARRAY['VP Marketing','Head of Sales','Engineer','Student','Director IT','Analyst'])[1 + g %% 6],
                       (ARRAY['vp','director','individual','student','director','individual'])[1 + g %% 6],
                       '', '', 'Germany', 'Berlin', 1 + g %% %s, 'Organic Search', '', '', '', '', '',
                       'lead', 'unknown', '', '{}'::jsonb, now(), now(), 0, '', ''
                FROM generate_series(1, %s) g""",
                [max(contact_count // 20, 1), contact_count],
            )
            cursor.execute(
                f"""INSERT INTO leads_activity (contact_id, type_id, occurred_at, properties, source, external_id,
                    dedupe_key, received_at)
                SELECT c, t, now() - (random() * interval '180 days'),
                       CASE WHEN t = {types["page_view"]}
                            THEN jsonb_build_object(
                                'url', (ARRAY['/pricing','/blog/a','/product','/docs'])[1 + (g %% 4)])
                            ELSE '{{}}'::jsonb END,
                       'bench', NULL, 'b' || g, now()
                FROM (SELECT g, 1 + floor(random() * %s)::int AS c, floor(random() * {total_weight})::int AS r
                      FROM generate_series(1, %s) g) s,
                     LATERAL (SELECT CASE {" ".join(cases)} END AS t) x""",
                [contact_count, activity_count],
            )
            cursor.execute("ANALYZE")
        self.rows.append(("generate data (SQL, server-side)", f"{time.perf_counter() - started:.1f} s"))

    def _scores_in_sql(self):
        """Scores as the engine stores them (row, the contact's copy of the keys),
        with plausible random values: what the queue page reads."""
        version = active_version()
        with connection.cursor() as cursor:
            cursor.execute(
                """INSERT INTO scoring_contactscore (contact_id, version_id, fit, engagement, total, fit_grade,
                       mql_level, as_of, computed_at, account_id)
                SELECT id, %s, f, e, f + e, CASE WHEN f >= 40 THEN 'A' WHEN f >= 25 THEN 'B' WHEN f >= 10 THEN 'C'
                       ELSE 'D' END, CASE WHEN f + e >= 90 THEN 'hot' WHEN f + e >= 60 THEN 'warm' ELSE '' END,
                       current_date, now(), account_id
                FROM (SELECT id, account_id, round((random() * 60)::numeric, 1) AS f,
                             round((random() * 100)::numeric, 1) AS e
                      FROM leads_contact) s""",
                [version.pk],
            )
            cursor.execute("""UPDATE leads_contact c SET score_total = s.total, score_fit_grade = s.fit_grade,
                              score_mql_level = s.mql_level FROM scoring_contactscore s WHERE s.contact_id = c.id""")

    def _vacuum(self):
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")

    def _timed(self, label: str, work) -> float:
        started = time.perf_counter()
        work()
        elapsed = time.perf_counter() - started
        self.rows.append((label, f"{elapsed:.2f} s"))
        self.stdout.write(f"  {label}: {elapsed:.2f} s")
        return elapsed

    def _draft_with_a_rule_change(self):
        """A draft of the active version with two rules' points changed; returns them. Toggled,
        so that every run changes the rules (versions outlive the bench's data) and runs stay
        comparable: 20 ↔ 25 and 3 ↔ 4 points."""
        draft = draft_get_or_create(scoring_model=active_version().scoring_model)
        executive = draft.fit_rules.filter(name="Executive seniority")
        executive.update(points=Case(When(points=25, then=20), default=25))
        clicks = draft.engagement_rules.filter(name="Email clicks")
        clicks.update(points=Case(When(points=4, then=3), default=4))
        return executive, clicks

    def _publish_and_wait(self):
        """Publish the draft (a copy of the active version if there is none) and wait for its
        full rescore to finish, on the Celery workers."""
        draft = draft_get_or_create(scoring_model=active_version().scoring_model)
        started = timezone.now()
        run = version_publish(draft=draft)
        while not RescoreRun.objects.filter(pk=run.pk, finished_at__isnull=False).exists():
            time.sleep(0.1)
        self._last_run = (run, started, timezone.now())

    def _report_rule_change(self, executive, clicks):
        """Which way the rule change went (the figures of a raise and a lowering differ), and
        where its time went: publishing, the chunks, and what follows the last chunk (the
        accounts' rollup, the reps' digests, the commit, this command's 0.1 s polling)."""
        run, started, seen = self._last_run
        run.refresh_from_db()
        points = [rules.values_list("points", flat=True).first() for rules in (executive, clicks)]
        self.rows.append(
            (
                "the rule change: executive seniority and email click points now",
                f"{points[0]}, {points[1]}; {run.changed_contacts:,} totals changed, {run_new_mqls(run):,} new MQLs",
            )
        )
        parts = [run.created_at - started, run.finished_at - run.created_at, seen - run.finished_at]
        self.rows.append(
            (
                "  of which publishing; chunks; after the last chunk",
                "; ".join(f"{part.total_seconds():.2f} s" for part in parts),
            )
        )

    def _reference(self):
        version = active_version()
        points = {rule.activity_type_id: rule.points for rule in version.engagement_rules.filter(property_name="")}
        cases = " ".join(f"WHEN {type_id} THEN {value}" for type_id, value in points.items())
        with connection.cursor() as cursor:
            cursor.execute(f"""CREATE TEMP TABLE bench_reference AS
                SELECT contact_id, SUM(CASE type_id {cases} ELSE 0 END) AS points
                FROM leads_activity GROUP BY contact_id""")
            cursor.execute("DROP TABLE bench_reference")

    def _single_events(self, samples: int):
        contact_ids = list(ContactScore.objects.order_by("?").values_list("contact_id", flat=True)[: samples * 2])
        direct, queued = [], []
        for n, contact_id in enumerate(contact_ids[:samples]):
            started = time.perf_counter()
            # What POST /api/activities/?score=now runs: store the event and rescore its contact
            # in one transaction, the score current when the call returns.
            activities_ingest(events=[self._event(n, contact_id, "direct")], score_now=True)
            direct.append(time.perf_counter() - started)
        for n, contact_id in enumerate(contact_ids[samples:]):
            started = time.perf_counter()
            activities_ingest(events=[self._event(n, contact_id, "queued")])  # the task is queued on commit
            # Done when the worker's transaction that scored it has committed: that deletes its
            # request. (Its score need not change: a rule already at its cap adds nothing.)
            while RescoreRequest.objects.filter(contact_id=contact_id).exists():
                time.sleep(0.005)
            queued.append(time.perf_counter() - started)
        for label, values in (
            ("single event, service call (target p95 ≤ 20 ms)", direct),
            ("single event via Redis + worker (target p95 ≤ 1 s)", queued),
        ):
            if values:
                p50, p95 = statistics.median(values), statistics.quantiles(values, n=20)[18]
                self.rows.append((label, f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms (n={len(values)})"))

    def _queue_page(self, mql_count: int):
        """Server time of a rep's queue page (first page and a filtered page) with `mql_count` open MQLs."""
        from django.test import Client

        from leads.roles import SALES
        from tests.factories import UserFactory

        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE leads_contact SET lifecycle_stage = 'lead', mql_at = NULL WHERE lifecycle_stage = 'mql'"
            )
            cursor.execute(
                "UPDATE leads_contact SET lifecycle_stage = 'mql', mql_at = now() - (random() * interval '72 hours') "
                "WHERE id IN (SELECT id FROM leads_contact ORDER BY random() LIMIT %s)",
                [mql_count],
            )
            cursor.execute("VACUUM ANALYZE leads_contact") if not connection.in_atomic_block else None
            cursor.execute("ANALYZE leads_contact")
        rep = UserFactory(username="bench-rep", roles=[SALES])
        type(rep).objects.filter(pk=rep.pk).update(is_active=True)  # reused data: whatever became of it
        client = Client()
        client.force_login(rep)
        for label, query in (
            ("queue page, first page", {}),
            ("queue page, filtered (country + grade)", {"country": "germany", "grade": "A"}),
        ):
            timings = []
            for _ in range(21):
                started = time.perf_counter()
                response = client.get("/queue/", query)
                timings.append(time.perf_counter() - started)
                assert response.status_code == 200, response.status_code
            timings = timings[1:]  # the first request warms caches
            p50, p95 = statistics.median(timings), statistics.quantiles(timings, n=20)[18]
            self.rows.append(
                (
                    f"{label}, {mql_count:,} open MQLs (target ≤ 150 ms)",
                    f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
                )
            )

    @staticmethod
    def _event(n: int, contact_id: int, prefix: str) -> IngestEvent:
        return IngestEvent(
            index=0,
            type_key="pricing_page_view",
            occurred_at=timezone.now() - timedelta(minutes=1),
            source="bench",
            external_id=f"{prefix}-{uuid.uuid4().hex}",
            properties={},
            contact_id=contact_id,
        )

    def _print(self):
        from leads.models import Activity, Contact

        self.stdout.write("")
        self.stdout.write(
            f"Scoring benchmark: {Contact.objects.count():,} contacts, "
            f"{Activity.objects.count():,} activities, PostgreSQL, {os.cpu_count()} cores"
        )
        width = max(len(label) for label, _ in self.rows)
        for label, value in self.rows:
            self.stdout.write(f"  {label:<{width}}  {value}")
