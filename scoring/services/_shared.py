"""Helpers the services' modules share."""

from datetime import timedelta

from django.conf import settings
from django.db import connection


def claim_timeout() -> timedelta:
    return timedelta(seconds=settings.RESCORE_CLAIM_TIMEOUT)


def commit_without_waiting() -> None:
    """This transaction commits without waiting for its WAL to reach the disk (PostgreSQL)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
