"""Start real processes against the test database and the configured broker: Celery
workers, and a web server for tests that need one.

Used by tests marked `worker`: on the default suite the broker is kombu's filesystem
transport and the database the SQLite test file; in the services suite they are Redis
and the PostgreSQL test database.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

from config.celery import app as celery_app


def test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class WorkerProcess:
    def __init__(self, log_dir: Path, concurrency: int = 1, env: dict | None = None):
        self.extra_env = env or {}
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.log_path = log_dir / f"worker-{uuid.uuid4().hex[:8]}.log"
        self.concurrency = concurrency
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "WorkerProcess":
        env = {**os.environ, "DATABASE_URL": test_database_url(), "VAR_DIR": str(settings.VAR_DIR), **self.extra_env}
        command = [
            sys.executable,
            "-m",
            "celery",
            "--app",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(self.concurrency),
            "--without-mingle",
            "--without-gossip",
            "--hostname",
            self.name,
        ]
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Celery worker exited early:\n{self.output()}")
            if b" ready." in self.log_path.read_bytes():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"Celery worker did not become ready in {timeout}s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL, as a crashed machine would: no clean shutdown, unacknowledged work stays queued."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WebServerProcess:
    """The app served by gunicorn (one sync worker), as in production."""

    def __init__(self, log_dir: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = env or {}
        self.log_path = log_dir / f"web-{uuid.uuid4().hex[:8]}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "WebServerProcess":
        env = {**os.environ, "DATABASE_URL": test_database_url(), "VAR_DIR": str(settings.VAR_DIR), **self.extra_env}
        command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{self.port}"]
        command += ["--workers", "1", "--timeout", "120", "--access-logfile", "-"]
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.output()}")
            if b"Booting worker" in self.log_path.read_bytes():
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not listen in {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def purge_broker() -> None:
    """Drop messages queued by earlier tests, whose rows no longer exist, and the flags that
    say a rescore drain or an outbox send is queued (they were among those messages)."""
    from django.core.cache import cache

    from nurturing.services import OUTBOX_SEND_QUEUED_FLAG
    from scoring.services import DRAIN_QUEUED_FLAG

    celery_app.control.purge()
    cache.delete_many([DRAIN_QUEUED_FLAG, OUTBOX_SEND_QUEUED_FLAG])


def wait_for(condition, *, timeout: float = 60, interval: float = 0.2, worker: WorkerProcess | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    detail = f"\nworker log:\n{worker.output()}" if worker else ""
    raise AssertionError(f"condition not met within {timeout}s{detail}")
