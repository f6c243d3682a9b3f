"""Outbox benchmark on PostgreSQL: N due emails dispatched by real Celery workers.

Prints wall time, throughput and duplicates (Message-IDs delivered more than once).
Refuses to run on a database whose name does not start with "bench".
"""

import os
import tempfile
import time
from collections import Counter

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from config.benchmarks import start_workers, stop_workers
from nurturing.models import OutboundEmail
from nurturing.tasks import outbox_send


def _tasks_waiting() -> bool:
    import redis

    return bool(redis.Redis.from_url(settings.REDIS_URL).llen("celery"))


class Command(BaseCommand):
    help = "Benchmark the email outbox with real workers (see README, Benchmarks)."

    def add_arguments(self, parser):
        parser.add_argument("--emails", type=int, default=100_000)
        parser.add_argument("--workers", type=int, default=2)

    def handle(self, *args, emails, workers, **options):
        if connection.vendor != "postgresql" or not connection.settings_dict["NAME"].startswith("bench"):
            raise CommandError("Run on PostgreSQL, in a database whose name starts with 'bench' (make bench-nurture).")
        if not settings.REDIS_URL:
            raise CommandError("Set REDIS_URL: the workers take their tasks from Redis.")
        sink = tempfile.NamedTemporaryFile(prefix="bench-sink-", delete=False).name
        self._queue_emails(emails)
        processes = start_workers(
            workers,
            name="nurture",
            env={"EMAIL_BACKEND": "nurturing.bench_backend.MessageIdSinkBackend", "BENCH_SINK": sink},
        )
        try:
            started = time.perf_counter()
            for _ in range(workers * 2):  # each task sends until nothing is due (or 50 s pass)
                outbox_send.delay()
            while OutboundEmail.objects.filter(status__in=["queued", "sending"]).exists():
                if not _tasks_waiting():
                    outbox_send.delay()  # a task ran out of time budget: queue another
                time.sleep(0.5)
            elapsed = time.perf_counter() - started
        finally:
            stop_workers(processes)
        delivered = Counter(line.strip() for line in open(sink) if line.strip())
        os.unlink(sink)
        duplicates = sum(count - 1 for count in delivered.values())
        sent = OutboundEmail.objects.filter(status="sent").count()
        self.stdout.write(f"\nOutbox benchmark: {emails:,} due emails, {workers} worker processes, PostgreSQL + Redis")
        self.stdout.write(f"  wall time            {elapsed:.1f} s (target ≤ 60 s)")
        self.stdout.write(f"  throughput           {emails / elapsed:,.0f} emails/s")
        self.stdout.write(f"  marked sent          {sent:,}")
        self.stdout.write(f"  delivered (unique)   {len(delivered):,}")
        self.stdout.write(f"  duplicates           {duplicates} (target 0)")

    def _queue_emails(self, count: int):
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE nurturing_outboundemail RESTART IDENTITY CASCADE")
            cursor.execute(
                """INSERT INTO nurturing_outboundemail (key, "to", subject, body_text, body_html, headers, marketing,
                       status, attempts, next_attempt_at, claimed_by, error, created_at)
                SELECT 'bench-' || g, 'person' || g || '@bench.example', 'Hello ' || g, 'Body ' || g, '', '{}',
                       false, 'queued', 0, now(), '', '', now()
                FROM generate_series(1, %s) g""",
                [count],
            )
            # As autovacuum would within a minute. With statistics from before the insert, the
            # planner may sort every queued row for each claim until it does: the figure then
            # depends on autovacuum's timing (30 to 80 s on the same code).
            cursor.execute("ANALYZE nurturing_outboundemail")
