"""Shared by the benchmark commands (`make bench-…`): real Celery worker processes."""

import os
import subprocess
import sys
import time
import uuid


def start_workers(count: int, *, name: str, env: dict | None = None, nice: int = 0) -> list[subprocess.Popen]:
    """Start `count` single-process Celery workers with the current settings (plus `env`),
    at CPU priority `nice` (a positive number yields the CPU to everything else first)."""
    processes = [
        subprocess.Popen(
            [
                *(["nice", "-n", str(nice)] if nice else []),
                sys.executable,
                "-m",
                "celery",
                "--app",
                "config",
                "worker",
                "--loglevel",
                "WARNING",
                "--concurrency",
                "1",
                "--without-mingle",
                "--without-gossip",
                "--hostname",
                f"{name}{n}-{uuid.uuid4().hex[:6]}@%h",
            ],
            env={**os.environ, **(env or {})},
        )
        for n in range(count)
    ]
    time.sleep(4)  # let them connect before work is queued
    return processes


def stop_workers(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)
