"""`make bench-load`: gunicorn + PostgreSQL + Redis + Celery workers on loopback, and a
bounded load generator sending activity ingest and email-tracking requests for a fixed time.

Prints requests/s, events/s, latency percentiles, errors, and events acknowledged versus
events stored. A benchmark, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

from config.benchmarks import start_workers, stop_workers
from leads.models import Activity, Contact
from leads.roles import MARKETING
from nurturing.models import EmailLink, OutboundEmail
from nurturing.tracking import make_token

SOURCE = "bench-load"
EMAIL_DOMAIN = "load.example"


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"ingest": [], "open": [], "click": []})
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    events_acknowledged: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, *, ok: bool, events: int, detail: str = "") -> None:
        with self.lock:
            self.requests += 1
            self.latencies[kind].append(seconds)
            if ok:
                self.events_acknowledged += events
            else:
                self.errors += 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(detail[:200])


class Command(BaseCommand):
    help = "Load benchmark: ingest and tracking requests against gunicorn for a fixed time."

    def add_arguments(self, parser):
        parser.add_argument("--seconds", type=int, default=60)
        parser.add_argument("--rate", type=int, default=2200, help="Events per second offered (open loop).")
        parser.add_argument("--clients", type=int, default=48, help="Most requests in flight at once.")
        parser.add_argument("--batch", type=int, default=100, help="Events per ingest request.")
        parser.add_argument("--tracking-share", type=float, default=0.3, help="Share of requests that are tracking.")
        parser.add_argument("--contacts", type=int, default=5000)
        parser.add_argument("--emails", type=int, default=30000, help="Sent emails whose pixels and links get hit.")
        parser.add_argument("--web-workers", type=int, default=3)
        parser.add_argument("--web-threads", type=int, default=4)
        parser.add_argument("--celery-workers", type=int, default=1)
        parser.add_argument(
            "--workers-nice",
            type=int,
            default=10,
            help="CPU priority of the Celery workers (e.g. 10: they take what the web tier leaves, as workers "
            "on machines of their own would not compete with it at all).",
        )

    def handle(self, *args, **options):
        if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis"):
            raise CommandError("Run it on PostgreSQL and Redis (make bench-load sets DATABASE_URL and REDIS_URL).")
        # Production settings for the server; tracking tokens signed here with its key.
        env = {
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-load-" + os.urandom(16).hex(),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        }
        settings.SECRET_KEY = env["DJANGO_SECRET_KEY"]
        token = self.prepare(options)
        opens, clicks = self.tracking_tokens(options["emails"])
        port = free_port()
        web = self.start_gunicorn(port, env, options)
        workers = start_workers(options["celery_workers"], name="bench-load", env=env, nice=options["workers_nice"])
        try:
            self.warm_up(port, options)
            stored_before = self.stored_events()
            cpu_before = cpu_seconds_by_tier()
            tally = self.generate_load(port, token, opens, clicks, options)
            tally.cpu = {tier: seconds - cpu_before.get(tier, 0) for tier, seconds in cpu_seconds_by_tier().items()}
            caught_up = self.wait_for_workers()
        finally:
            web.terminate()
            web.wait(timeout=30)
            stop_workers(workers)
        self.report(tally, self.stored_events() - stored_before, caught_up, options)

    # --- setup -----------------------------------------------------------------------------------

    def prepare(self, options) -> str:
        user, _ = get_user_model().objects.get_or_create(
            username="bench-load", defaults={"email": "bench@load.example"}
        )
        user.groups.add(Group.objects.get(name=MARKETING))
        existing = Contact.objects.filter(email__endswith="@" + EMAIL_DOMAIN).count()
        Contact.objects.bulk_create(
            [
                Contact(email=f"lead{n}@{EMAIL_DOMAIN}", first_name=f"Lead{n}")
                for n in range(existing, options["contacts"])
            ],
            batch_size=2000,
        )
        return Token.objects.get_or_create(user=user)[0].key

    def tracking_tokens(self, count: int) -> tuple[list[str], list[str]]:
        """Fresh sent marketing emails, one link each: every pixel and link is hit once, so each
        tracking request is a new event (repeats would be duplicates that count once)."""
        contacts = list(Contact.objects.filter(email__endswith="@" + EMAIL_DOMAIN).values_list("id", "email"))
        run = os.urandom(4).hex()
        now = timezone.now()
        emails = OutboundEmail.objects.bulk_create(
            [
                OutboundEmail(
                    key=f"bench-load-{run}-{n}",
                    to=contacts[n % len(contacts)][1],
                    contact_id=contacts[n % len(contacts)][0],
                    subject="Load test",
                    body_text="…",
                    marketing=True,
                    status=OutboundEmail.Status.SENT,
                    next_attempt_at=now,
                    sent_at=now,
                )
                for n in range(count)
            ],
            batch_size=2000,
        )
        links = EmailLink.objects.bulk_create(
            [EmailLink(email=email, position=1, url="https://example.com/guide") for email in emails], batch_size=2000
        )
        opens = [make_token(email.pk, purpose="open") for email in emails]
        clicks = [make_token(link.pk, purpose="click") for link in links]
        return opens, clicks

    def stored_events(self) -> int:
        return Activity.objects.filter(source__in=[SOURCE, "email"]).count()

    def start_gunicorn(self, port: int, env: dict, options) -> subprocess.Popen:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(options["web_workers"]),
            "--worker-class",
            "gthread",
            "--threads",
            str(options["web_threads"]),
            "--log-level",
            "warning",
        ]
        process = subprocess.Popen(command, env={**os.environ, **env}, cwd=settings.BASE_DIR)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return process
            except OSError:
                time.sleep(0.2)
        process.terminate()
        raise CommandError("gunicorn did not start.")

    def warm_up(self, port: int, options) -> None:
        """Let every gunicorn worker import the app and open its database connection before
        the clock starts: the first request of a fresh process is not what the load measures."""
        for _ in range(options["web_workers"] * options["web_threads"] * 2):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/e/o/warm-up/", headers={"X-Forwarded-Proto": "https"})
            conn.getresponse().read()
            conn.close()

    # --- load ------------------------------------------------------------------------------------

    def generate_load(self, port: int, token: str, opens: list[str], clicks: list[str], options) -> Tally:
        """Open loop: request k is due at k / request-rate seconds, whatever the server does,
        and its latency counts from that moment — a slow server cannot slow the load down and
        hide its own queueing (no coordinated omission). Clients are only the concurrency
        available to send what is due."""
        tally = Tally()
        batch, share = options["batch"], options["tracking_share"]
        request_rate = options["rate"] / ((1 - share) * batch + share)
        total_requests = int(request_rate * options["seconds"])
        tokens = {"open": iter(opens), "click": iter(clicks)}
        schedule = {"next": 0}
        schedule_lock = threading.Lock()
        contacts = options["contacts"]
        run = os.urandom(4).hex()  # event ids unique to this run: none is a duplicate of an earlier run's
        self.stdout.write(
            f"Offering {options['rate']:,} events/s for {options['seconds']} s ({request_rate:.0f} requests/s: "
            f"{1 - share:.0%} ingest batches of {batch}, {share:.0%} tracking) from up to {options['clients']} "
            f"connections, against gunicorn ({options['web_workers']} workers × {options['web_threads']} threads) "
            f"and {options['celery_workers']} Celery workers…"
        )

        def next_request() -> tuple[int, str | None] | None:
            """The next due request's number and, for tracking, its token (None: none left)."""
            with schedule_lock:
                number = schedule["next"]
                if number >= total_requests:
                    return None
                schedule["next"] += 1
                rng = random.Random(number)
                if rng.random() < share:
                    kind = "open" if rng.random() < 0.6 else "click"
                    return number, kind, next(tokens[kind], None)
                return number, "ingest", None

        def ingest_body(number: int, rng: random.Random) -> str:
            events = [
                {
                    "type": "page_view",
                    "email": f"lead{rng.randrange(contacts)}@{EMAIL_DOMAIN}",
                    "occurred_at": timezone.now().isoformat(),
                    "source": SOURCE,
                    "external_id": f"{run}-{number}-{n}",
                    "properties": {"url": "/pricing" if rng.random() < 0.2 else "/blog"},
                }
                for n in range(batch)
            ]
            return json.dumps({"events": events})

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while (due := next_request()) is not None:
                number, kind, value = due
                if kind != "ingest" and value is None:
                    continue  # out of fresh tracking tokens
                rng = random.Random(-number)
                if kind == "ingest":
                    events = batch
                    headers = {
                        "Authorization": f"Token {token}",
                        "Content-Type": "application/json",
                        "X-Forwarded-Proto": "https",
                    }
                    request = ("POST", "/api/activities/bulk/", ingest_body(number, rng), headers)
                else:
                    events = 1
                    request = ("GET", f"/e/{kind[0]}/{value}/", None, {"X-Forwarded-Proto": "https"})
                due_at = started + number / request_rate
                time.sleep(max(0.0, due_at - time.perf_counter()))
                try:
                    conn.request(*request)
                    response = conn.getresponse()
                    body = response.read()
                    ok = 200 <= response.status < 300 or (kind == "click" and response.status == 302)
                    acknowledged = events
                    if ok and kind == "ingest":
                        counts = json.loads(body)
                        acknowledged = counts["created"] + counts["duplicate"]
                        ok = counts["error"] == 0
                    detail = f"{response.status} {body[:150]!r}"
                except (OSError, http.client.HTTPException, ValueError) as error:
                    ok, acknowledged, detail = False, 0, repr(error)
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                tally.record(kind, time.perf_counter() - due_at, ok=ok, events=acknowledged, detail=detail)
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(options["clients"])]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        tally.elapsed = time.perf_counter() - started
        return tally

    def wait_for_workers(self, timeout: float = 120) -> float | None:
        """Seconds until the Celery queue is empty (the scores caught up), or None."""
        import redis

        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if client.llen("celery") == 0:
                return time.monotonic() - started
            time.sleep(0.5)
        return None

    # --- report ----------------------------------------------------------------------------------

    def report(self, tally: Tally, stored: int, caught_up: float | None, options) -> None:
        elapsed = tally.elapsed
        all_latencies = sorted(x for values in tally.latencies.values() for x in values)
        self.stdout.write("")
        self.stdout.write(f"{'figure':<44}{'result':>22}")
        rows = [
            ("duration", f"{elapsed:.1f} s"),
            ("requests", f"{tally.requests:,} ({tally.requests / elapsed:,.0f}/s)"),
            ("events acknowledged", f"{tally.events_acknowledged:,} ({tally.events_acknowledged / elapsed:,.0f}/s)"),
            ("events stored", f"{stored:,}"),
            ("lost (acknowledged − stored)", f"{tally.events_acknowledged - stored:,}"),
            ("errors", f"{tally.errors:,}"),
            ("latency, all requests p50 / p95", f"{pct(all_latencies, 50)} / {pct(all_latencies, 95)}"),
        ]
        for kind, values in tally.latencies.items():
            values = sorted(values)
            if values:
                rows.append(
                    (
                        f"  {kind} ({len(values):,}) p50 / p95 / p99",
                        f"{pct(values, 50)} / {pct(values, 95)} / {pct(values, 99)}",
                    )
                )
        rows.append(
            ("score queue drained after the load", f"{caught_up:.1f} s" if caught_up is not None else "not in 120 s")
        )
        for name, value in rows:
            self.stdout.write(f"{name:<44}{value:>22}")
        busy = ", ".join(f"{tier} {seconds / elapsed:.2f}" for tier, seconds in sorted(tally.cpu.items()))
        self.stdout.write(f"CPU cores busy during the load, by process: {busy} (of {os.cpu_count()})")
        for sample in tally.error_samples:
            self.stdout.write(f"  error: {sample}")
        verdict = (
            tally.events_acknowledged / elapsed >= 2000
            and pct_value(all_latencies, 95) <= 0.2
            and tally.events_acknowledged == stored
        )
        self.stdout.write(f"Target ≥ 2,000 events/s, p95 ≤ 200 ms, zero lost: {'met' if verdict else 'NOT met'}.")


def pct_value(values: list[float], percentile: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percentile - 1]


def pct(values: list[float], percentile: int) -> str:
    return f"{pct_value(values, percentile) * 1000:.0f} ms"


def cpu_seconds_by_tier() -> dict[str, float]:
    """CPU seconds (user + system) used so far by the processes on this machine, grouped:
    the web tier, Celery workers, PostgreSQL, Redis, this load generator, everything else."""
    tick = os.sysconf("SC_CLK_TCK")
    tiers: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                command = file.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(entry) == os.getpid():
            tier = "load generator"
        elif "gunicorn" in command:
            tier = "web"
        elif "celery" in command:
            tier = "workers"
        elif command.startswith(("postgres", "/usr/lib/postgresql")):
            tier = "postgresql"
        elif "redis-server" in command:
            tier = "redis"
        else:
            tier = "other"
        tiers[tier] = tiers.get(tier, 0) + seconds
    return tiers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
