"""Engagement aggregates: activities counted per contact, matcher and day, folded and backfilled."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from config.bulk import models_where
from leads.models import Activity, ActivityType

from .. import sql_rescore
from ..engine import property_matches
from ..matchers import matcher_key
from ..models import (
    DailyEngagement,
    EngagementRule,
    EngagementSums,
    Matcher,
    ModelVersion,
    PendingEngagement,
)


def matcher_for_type(activity_type: ActivityType) -> Matcher:
    matcher, _ = Matcher.objects.get_or_create(
        key=matcher_key(activity_type.key), defaults={"activity_type": activity_type, "backfilled": True}
    )
    return matcher


def matcher_for_rule(rule: EngagementRule) -> Matcher:
    key = matcher_key(rule.activity_type.key, rule.property_name, rule.property_operator, rule.property_value)
    matcher, _ = Matcher.objects.get_or_create(
        key=key,
        defaults={
            "activity_type": rule.activity_type,
            "property_name": rule.property_name,
            "property_operator": rule.property_operator,
            "property_value": rule.property_value,
            "backfilled": not rule.property_name,
        },
    )
    return matcher


def engagement_record(*, activities: Sequence[Activity]) -> None:
    """Count newly stored activities into the daily aggregates, in the caller's transaction.

    Called by the ingest service in the transaction that inserted the activities, so an
    activity is counted exactly when it is stored. Holds a share lock on the matchers so
    that a concurrent backfill of one of them (which takes an exclusive lock) sees either
    all of this transaction or none of it.
    """
    if not activities:
        return
    type_ids = {a.type_id for a in activities}
    matchers = _matchers_after_list_lock(type_ids)
    # Every type counts under its plain matcher; a type's first activity creates it.
    missing = type_ids - {m.activity_type_id for m in matchers if not m.property_name}
    if missing:
        for activity_type in ActivityType.objects.filter(id__in=missing):
            matcher_for_type(activity_type)
        matchers = _matchers_of_types(type_ids)
    by_type = defaultdict(list)
    for matcher in matchers:
        by_type[matcher.activity_type_id].append(matcher)
    counts: dict[tuple[int, int, date], int] = defaultdict(int)
    for activity in activities:
        day = timezone.localdate(activity.occurred_at)
        for matcher in by_type[activity.type_id]:
            if matcher.property_name and not property_matches(
                matcher.property_operator, matcher.property_value, activity.properties, matcher.property_name
            ):
                continue
            counts[(activity.contact_id, matcher.pk, day)] += 1
    _insert_pending(counts, locking=matchers)


def _matchers_after_list_lock(type_ids: set[int]) -> list[Matcher]:
    """_lock_matcher_list_shared, then the matchers of these activity types; on PostgreSQL in
    one round trip (two statements: the read's snapshot is taken after the lock)."""
    if connection.vendor != "postgresql":
        _lock_matcher_list_shared()
        return _matchers_of_types(type_ids)
    names = [field.attname for field in Matcher._meta.concrete_fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT pg_advisory_xact_lock_shared(%s, 0); "
            f"SELECT {', '.join(names)} FROM {Matcher._meta.db_table} WHERE activity_type_id = ANY(%s)",
            [MATCHER_LOCKS, sorted(type_ids)],
        )
        cursor.nextset()
        return [Matcher.from_db(connection.alias, names, row) for row in cursor.fetchall()]


def _matchers_of_types(type_ids: set[int]) -> list[Matcher]:
    ids = sorted(type_ids)
    return models_where(
        Matcher, "activity_type_id = ANY(%s)", [ids], fallback=Matcher.objects.filter(activity_type_id__in=ids)
    )


def _insert_pending(counts: dict[tuple[int, int, date], int], *, locking: list[Matcher]) -> None:
    """Share-lock the `locking` matchers (_lock_shared), then insert the counts; on PostgreSQL
    in one round trip."""
    if connection.vendor != "postgresql":
        _lock_shared(locking)
        PendingEngagement.objects.bulk_create(
            [PendingEngagement(contact_id=c, matcher_id=m, day=d, count=n) for (c, m, d), n in counts.items()],
            batch_size=1000,
        )
        return
    keys = list(counts)
    with connection.cursor() as cursor:  # what bulk_create does, without a model instance per row
        cursor.execute(
            "SELECT pg_advisory_xact_lock_shared(%s, id) FROM unnest(%s::int[]) AS id ORDER BY id; "
            f"INSERT INTO {PendingEngagement._meta.db_table} (contact_id, matcher_id, day, count) "
            f"SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::date[], %s::int[])",
            [
                MATCHER_LOCKS,
                sorted(matcher.pk for matcher in locking),
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [counts[k] for k in keys],
            ],
        )


def engagement_fold(*, contact_ids: list[int]) -> None:
    """Add these contacts' pending counts to their daily aggregates, and drop the engagement
    sums of those whose aggregates change. The caller holds the contacts' locks (every
    rescore does), so two folds of one contact never interleave; ingests only insert new
    pending rows and never wait here."""
    if not contact_ids:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_fold_sql(contact_ids))
        return
    rows = PendingEngagement.objects.filter(contact_id__in=contact_ids)
    counts: dict[tuple[int, int, date], int] = defaultdict(int)
    for contact_id, matcher_id, day, count in rows.values_list("contact_id", "matcher_id", "day", "count"):
        counts[(contact_id, matcher_id, day)] += count
    rows.delete()
    EngagementSums.objects.filter(contact_id__in={contact_id for contact_id, _, _ in counts}).delete()
    _add_counts(counts)


def _fold_sql(contact_ids: list[int]) -> str:
    """engagement_fold's statement on PostgreSQL (the ids written in, through batch_sql: a full
    rescore's chunk is an id range, one range scan of the nearly empty index)."""
    daily, pending = DailyEngagement._meta.db_table, PendingEngagement._meta.db_table
    batch = sql_rescore.batch_sql("contact_id", sorted(contact_ids))
    return (
        f"WITH moved AS (DELETE FROM {pending} WHERE {batch} "
        f"RETURNING contact_id, matcher_id, day, count), "
        f"stale AS (DELETE FROM {EngagementSums._meta.db_table} "
        f"WHERE contact_id IN (SELECT contact_id FROM moved)) "
        f"INSERT INTO {daily} (contact_id, matcher_id, day, count) "
        f"SELECT contact_id, matcher_id, day, sum(count) FROM moved GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
        f"ON CONFLICT (contact_id, matcher_id, day) DO UPDATE SET count = {daily}.count + excluded.count"
    )


# Advisory-lock namespace for matchers (the second key is the matcher id).
MATCHER_LOCKS = 7201


def _lock_shared(matchers: list[Matcher]) -> None:
    """Shared advisory locks, not FOR SHARE on the rows: every ingest takes them, and row
    share locks taken by many transactions at once cost a MultiXact each in PostgreSQL."""
    if connection.vendor == "postgresql" and matchers:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock_shared(%s, id) FROM unnest(%s::int[]) AS id ORDER BY id",
                [MATCHER_LOCKS, sorted(m.pk for m in matchers)],
            )


def _lock_matcher_list_shared() -> None:
    """Held by an ingest from before it reads the list of matchers until it commits."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, 0)", [MATCHER_LOCKS])


def _lock_exclusive(matcher: Matcher) -> None:
    """Wait for every ingest that read the matcher list before this matcher existed (a
    barrier: the list lock taken and released at once), then hold the matcher's own lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, 0)", [MATCHER_LOCKS])
            cursor.execute("SELECT pg_advisory_unlock(%s, 0)", [MATCHER_LOCKS])
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [MATCHER_LOCKS, matcher.pk])


def _add_counts(counts: dict[tuple[int, int, date], int]) -> None:
    """Add to (contact, matcher, day) counters with one upsert per 500 rows.

    Rows go in key order: two ingests touching the same counters then lock them in the
    same order, so one waits for the other instead of both deadlocking (seen under load)."""
    table = DailyEngagement._meta.db_table
    rows = [(contact_id, matcher_id, day, n) for (contact_id, matcher_id, day), n in sorted(counts.items())]
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 500):
            batch = rows[start : start + 500]
            placeholders = ", ".join(["(%s, %s, %s, %s)"] * len(batch))
            cursor.execute(
                f"INSERT INTO {table} (contact_id, matcher_id, day, count) VALUES {placeholders} "
                f"ON CONFLICT (contact_id, matcher_id, day) DO UPDATE SET count = {table}.count + excluded.count",
                [value for row in batch for value in row],
            )


@transaction.atomic
def matcher_backfill(*, matcher_id: int) -> None:
    """Build a filtered matcher's aggregates once, from its activity type's activities.

    Takes the matcher's lock exclusively (ingests take it shared): ingests wait until it
    commits and then add their own counts on top, so no activity is counted twice or missed.
    """
    matcher = Matcher.objects.select_for_update().get(pk=matcher_id)
    if matcher.backfilled:
        return
    _lock_exclusive(matcher)  # waits for ingests counting into this matcher; later ones wait for us
    # Counted from scratch below, committed ingests' pending counts included; every sum
    # read from the old counts goes with them.
    DailyEngagement.objects.filter(matcher=matcher).delete()
    EngagementSums.objects.all().delete()
    PendingEngagement.objects.filter(matcher=matcher).delete()
    if connection.vendor == "postgresql":
        _backfill_in_sql(matcher)
    else:
        _backfill_in_python(matcher)
    matcher.backfilled = True
    matcher.save(update_fields=["backfilled"])


def _backfill_in_sql(matcher: Matcher) -> None:
    """One INSERT … SELECT … GROUP BY: the database counts, nothing crosses the wire.

    The property test mirrors engine.property_matches: compared as lower-case text.
    """
    tests = {"contains": "LIKE '%%' || %s || '%%'", "starts_with": "LIKE %s || '%%'", "equals": "= %s"}
    where, params = "", []
    if matcher.property_name:
        escaped = matcher.property_value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        value = escaped if matcher.property_operator != "equals" else matcher.property_value.lower()
        where = f" AND lower(properties ->> %s) {tests[matcher.property_operator]}"
        params = [matcher.property_name, value]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DailyEngagement._meta.db_table} (contact_id, matcher_id, day, count) "
            f"SELECT contact_id, %s, (occurred_at AT TIME ZONE %s)::date, count(*) "
            f"FROM {Activity._meta.db_table} WHERE type_id = %s{where} GROUP BY 1, 3",
            [matcher.pk, settings.TIME_ZONE, matcher.activity_type_id, *params],
        )


def _backfill_in_python(matcher: Matcher) -> None:
    counts: dict[tuple[int, int, date], int] = defaultdict(int)
    rows = Activity.objects.filter(type_id=matcher.activity_type_id).values_list(
        "contact_id", "occurred_at", "properties"
    )
    for contact_id, occurred_at, properties in rows.iterator(chunk_size=5000):
        if not matcher.property_name or property_matches(
            matcher.property_operator, matcher.property_value, properties, matcher.property_name
        ):
            counts[(contact_id, matcher.pk, timezone.localdate(occurred_at))] += 1
    _add_counts(counts)


def engagement_rebuild() -> None:
    """Recompute every daily aggregate from the activities.

    For bulk loads that bypass the ingest service (demo data, benchmarks); not meant to
    run while events are being ingested.
    """
    for activity_type in ActivityType.objects.all():
        matcher_for_type(activity_type)
    Matcher.objects.update(backfilled=False)
    for matcher_id in Matcher.objects.values_list("id", flat=True):
        matcher_backfill(matcher_id=matcher_id)
    if connection.vendor == "postgresql":
        # Millions of rows that autovacuum has not seen yet: plans made now would treat
        # the table as empty until it does.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {DailyEngagement._meta.db_table}")


def matchers_prepare(*, version: ModelVersion) -> None:
    """Make sure every engagement rule of `version` has complete aggregates."""
    for rule in version.engagement_rules.select_related("activity_type"):
        matcher = matcher_for_rule(rule)
        if not matcher.backfilled:
            matcher_backfill(matcher_id=matcher.pk)
