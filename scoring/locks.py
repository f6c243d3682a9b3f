"""Advisory locks that writers in several modules take (PostgreSQL; SQLite writes one at a time)."""

from django.db import connection

# One key for every writer of account scores (pg_advisory_xact_lock takes a bigint).
ACCOUNT_SCORES_LOCK = 0x5C0_AC_5C0


def account_scores_lock(*, alone: bool = False) -> None:
    """Until the transaction ends. Rollups of a few accounts share it: they write accounts in
    id order, so they wait for each other without deadlocking. A full rescore's rollup of every
    account takes it `alone`: its UPDATE locks accounts in the table's order, not by id, and a
    rollup that held one of them while wanting another it held deadlocked with it (PostgreSQL
    then cancelled one of the two after a second)."""
    if connection.vendor == "postgresql":
        function = "pg_advisory_xact_lock" if alone else "pg_advisory_xact_lock_shared"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {function}(%s)", [ACCOUNT_SCORES_LOCK])
