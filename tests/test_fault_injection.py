"""Fault injection with real processes (gunicorn, Celery workers, redis-server): a broker
restart during ingest, a database connection cut in the middle of a request and between
requests. Services suite only: the Redis test needs REDIS_URL, the database tests PostgreSQL.

The other faults of the list have their own tests: kill -9 a worker during a full rescore
(tests/scoring/test_worker.py::test_a_full_rescore_survives_its_worker_being_killed) and
during an outbox batch (tests/nurturing/test_outbox_worker.py).
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

from leads.models import Activity, Contact
from leads.roles import MARKETING
from scoring.models import ContactScore, DailyEngagement, PendingEngagement, RescoreRequest, ScoreChange

from .factories import UserFactory
from .worker import WebServerProcess, WorkerProcess, free_port, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


# --- the client: an integration posting events ------------------------------------------


def post_once(url: str, token: str, events: list[dict]) -> tuple[int | None, dict | None]:
    request = urllib.request.Request(
        f"{url}/api/activities/bulk/",
        data=json.dumps({"events": events}).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None, None  # no answer at all: the client cannot know whether it was stored


def post_until_stored(url: str, token: str, events: list[dict], timeout: float = 60) -> dict:
    """What an integration does: send the batch again until the API confirms it (5xx or no
    answer means "try again"; the events' ids make a resend harmless)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = post_once(url, token, events)
        if status == 200:
            return body
        assert status is None or status >= 500, f"the API refused the batch: {status}"
        assert time.monotonic() < deadline, f"the API did not accept the batch in {timeout}s (last: {status})"
        time.sleep(0.5)  # the client's back-off before it resends


def webinar(n: int) -> dict:
    """One webinar attendance today by a new lead: 15 engagement points, counted once."""
    return {
        "type": "webinar_attended",
        "occurred_at": timezone.now().isoformat(),
        "email": f"attendee{n}@prospect{n}.example",
        "source": "webinar-platform",
        "external_id": f"attendance-{n}",
    }


@pytest.fixture
def token(transactional_db):
    return Token.objects.create(user=UserFactory(username="integration", roles=[MARKETING])).key


# --- Redis restart during ingest ---------------------------------------------------------


class RedisServer:
    """A throwaway redis-server of this test's own (no persistence, like a cache-only
    broker): restarting the shared one would disturb everybody else's tests."""

    def __init__(self, log_dir):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_dir / "redis.log"
        self.process = None

    def start(self) -> "RedisServer":
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: self._answers(client), timeout=20)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()  # as a crash or an abrupt restart: everything it held is gone
            self.process.wait(timeout=10)

    @staticmethod
    def _answers(client) -> bool:
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    def queued_tasks(self) -> int:
        return redis.Redis.from_url(self.url).llen("celery")


@pytest.fixture
def own_redis(tmp_path):
    if not os.environ.get("REDIS_URL"):
        pytest.skip("services suite only (REDIS_URL unset): the fault is a restart of the Redis broker")
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def beat_runs(task: str, env: dict) -> None:
    """Send a beat task to the workers, as celery beat does on its schedule."""
    subprocess.run(
        [sys.executable, "-m", "celery", "--app", "config", "call", task],
        env={**os.environ, **env},
        cwd=settings.BASE_DIR,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_events_posted_across_a_redis_restart_are_stored_once_and_scored(tmp_path, own_redis, token):
    app_env = {"REDIS_URL": own_redis.url, "RESCORE_CLAIM_TIMEOUT": "1"}
    web = WebServerProcess(tmp_path, env=app_env).start()
    worker = WorkerProcess(tmp_path, env=app_env).start()
    batches = [[webinar(n) for n in range(start, start + 10)] for start in range(0, 40, 10)]
    try:
        assert post_until_stored(web.url, token, batches[0])["created"] == 10
        wait_for(lambda: ContactScore.objects.filter(engagement__gt=0).count() == 10, worker=worker)
        worker.stop()  # busy elsewhere, or being deployed: new work waits in Redis

        assert post_until_stored(web.url, token, batches[1])["created"] == 10
        assert own_redis.queued_tasks() == 1  # batch 1's rescore, waiting in Redis...
        own_redis.stop()  # ...and gone with it
        during_outage = post_once(web.url, token, batches[2])
        own_redis.start()
        # The integration replays what it sent around the incident; then carries on.
        replayed = [post_until_stored(web.url, token, batch) for batch in batches[1:3]]
        assert post_until_stored(web.url, token, batches[3])["created"] == 10

        worker = WorkerProcess(tmp_path, env=app_env).start()
        # Beat's sweep, every minute, once the lost rescores are older than RESCORE_CLAIM_TIMEOUT.
        recent = timedelta(seconds=1)
        wait_for(lambda: not RescoreRequest.objects.filter(requested_at__gt=timezone.now() - recent).exists())
        beat_runs("scoring.tasks.rescore_sweep", app_env)
        wait_for(lambda: ContactScore.objects.filter(engagement__gt=0).count() == 40, worker=worker, timeout=90)
    finally:
        web.stop()
        worker.stop()

    status, body = during_outage
    assert status == 200  # stored and acknowledged while the broker was down
    assert body["created"] == 10
    assert [result["duplicate"] for result in replayed] == [10, 10]
    events = [event for batch in batches for event in batch]
    stored = Counter(Activity.objects.values_list("dedupe_key", flat=True))
    assert stored == Counter({event["external_id"]: 1 for event in events})  # each event once
    assert Contact.objects.count() == 40
    engagement = Counter(ContactScore.objects.values_list("engagement", flat=True))
    assert engagement == {Decimal("15.0"): 40}  # one webinar each, never counted twice
    assert ScoreChange.objects.count() == 40
    assert not RescoreRequest.objects.exists()


# --- the database connection cut in the middle of a request ------------------------------


def blocked_backend(table: str) -> int | None:
    """The server process of a statement that waits for a lock on `table`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            " AND query LIKE %s",
            [f"%{table}%"],
        )
        row = cursor.fetchone()
    return row[0] if row else None


@pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"), reason="needs PostgreSQL")
def test_a_request_whose_database_connection_is_cut_stores_nothing_and_the_next_one_works(tmp_path, token):
    """The connection is cut while the request's transaction has stored its activities and
    counts and waits to request the contact's rescore: another transaction (the test's) holds
    that contact's request row, so the cut lands mid-transaction every time."""
    web = WebServerProcess(tmp_path).start()
    try:
        regular = {**webinar(0), "email": "regular@customer.example", "external_id": "attendance-r0"}
        assert post_until_stored(web.url, token, [regular])["created"] == 1
        regular_contact = Contact.objects.get(email="regular@customer.example")
        assert webinars_counted(regular_contact) == 1
        batch = [webinar(n) for n in range(1, 6)] + [{**regular, "external_id": "attendance-r1"}]

        with psycopg.connect(_conninfo(), autocommit=False) as holder:
            holder.execute(
                "SELECT 1 FROM scoring_rescorerequest WHERE contact_id = %s FOR UPDATE", [regular_contact.pk]
            )
            answers = []
            request = threading.Thread(target=lambda: answers.append(post_once(web.url, token, batch)))
            request.start()
            pid = wait_for(lambda: blocked_backend("scoring_rescorerequest"), timeout=30)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            request.join(timeout=60)
            holder.rollback()

        [(status, _)] = answers
        assert status == 500  # the client is told it failed...
        assert not Activity.objects.filter(dedupe_key__in=[e["external_id"] for e in batch]).exists()  # ...and it did
        assert webinars_counted(regular_contact) == 1

        retried = post_until_stored(web.url, token, batch)  # a new connection serves the next request
    finally:
        web.stop()

    assert (retried["created"], retried["duplicate"]) == (6, 0)
    assert Activity.objects.filter(dedupe_key__in=[e["external_id"] for e in batch]).count() == 6
    assert webinars_counted(regular_contact) == 2


def webinars_counted(contact) -> int:
    """What scoring counts of the contact's activities: daily aggregates plus pending counts."""
    rows = {"contact": contact, "matcher__property_name": ""}
    return sum(DailyEngagement.objects.filter(**rows).values_list("count", flat=True)) + sum(
        PendingEngagement.objects.filter(**rows).values_list("count", flat=True)
    )


def _conninfo() -> str:
    db = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
    )


@pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"), reason="needs PostgreSQL")
def test_a_request_after_the_database_dropped_the_apps_connection_is_served(tmp_path, token):
    web = WebServerProcess(tmp_path).start()
    try:
        assert post_until_stored(web.url, token, [webinar(1)])["created"] == 1
        with connection.cursor() as cursor:  # the app keeps its connection open between requests...
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] == 1  # ...until the database (a restart, a failover) drops it

        status, body = post_once(web.url, token, [webinar(2)])
    finally:
        web.stop()

    assert status == 200  # served on a new connection, not a 500
    assert body["created"] == 1
    assert Activity.objects.filter(dedupe_key__in=["attendance-1", "attendance-2"]).count() == 2
