"""Writes for scoring: engagement aggregates, scores, MQL transitions, rescore runs."""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from config.bulk import bulk_insert, models_where
from config.coalesce import task_queue_once, task_started
from leads.handoff import mqls_entered, mqls_hand_off_after_commit
from leads.models import Account, Activity, ActivityType, Contact, LifecycleStage
from leads.services import contacts_set_stage

from . import sql_rescore
from .engine import ScoreResult, evaluate, evaluate_tallied, property_matches
from .matchers import matcher_key
from .models import (
    AccountRollupRequest,
    AccountScore,
    ContactScore,
    DailyEngagement,
    EngagementRule,
    EngagementSums,
    Matcher,
    ModelVersion,
    MqlQualification,
    PendingEngagement,
    RescoreChunk,
    RescoreRequest,
    RescoreRun,
    ScoreChange,
)
from .selectors import (
    DAILY_ROWS_SQL,
    PROFILES_SQL,
    account_fit_rules,
    active_version,
    contacts_may_qualify,
    engagement_for,
    engagement_from_rows,
    profiles_from_rows,
    ruleset_for,
    scoring_profiles,
)

logger = logging.getLogger(__name__)

# Stages from which reaching an MQL level makes a contact an MQL. A recycled lead can
# qualify again; contacts sales already owns (SQL and later) are never touched by scoring.
QUALIFYING_STAGES = {LifecycleStage.SUBSCRIBER, LifecycleStage.LEAD, LifecycleStage.RECYCLED}


# --- engagement aggregates ------------------------------------------------------------------


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


# --- scores -----------------------------------------------------------------------------


def contacts_rescore(
    *,
    contact_ids: Iterable[int],
    reason: str,
    as_of: date | None = None,
    version: ModelVersion | None = None,
    in_sql: bool = False,
    clear_requests: bool = True,
    run: RescoreRun | None = None,
    hand_off_later: bool = False,
) -> int:
    """Recompute the scores of these contacts; returns how many changed.

    `in_sql` (for full rescores' chunks) evaluates the batch set-based in PostgreSQL with
    the same results (scoring.sql_rescore); elsewhere, and for a few contacts, Python is
    faster to start and runs the engine directly.

    Locks the contacts (in id order, so two workers never deadlock) before reading the
    old scores, so a score change is recorded once even when two workers rescore the
    same contact at the same moment. Contacts reaching an MQL level become MQLs;
    `hand_off_later` leaves their routing (the rep, the rep's email, the audit entry) to a
    worker after commit, for a caller whose answer someone is waiting for.
    """
    version = version or active_version()
    ids = sorted(set(contact_ids))
    if version is None or not ids:
        return 0
    rules = ruleset_for(version)
    as_of = as_of or timezone.localdate()
    if in_sql and connection.vendor == "postgresql":
        return _contacts_rescore_in_sql(ids=ids, rules=rules, version=version, as_of=as_of, reason=reason, run=run)
    # Inside a caller's transaction (an ingest that scores now) no savepoint: a failure here
    # must undo the caller's writes as well.
    with transaction.atomic(savepoint=False):
        # FOR NO KEY UPDATE: serialises rescores of a contact without blocking the inserts that
        # reference it (an activity's foreign key takes FOR KEY SHARE), so ingest never waits here.
        _contacts_lock(ids)
        # Before reading: a request committed by now has its data visible to the reads below;
        # one committed later stays, for its own task (or the sweep).
        if clear_requests:
            RescoreRequest.objects.filter(contact_id__in=ids).delete()
        # Folded under the contacts' locks: pending counts committed since then come with
        # rescore requests of their own, so they are not read here.
        profiles, engagement, stored = _rescore_inputs(ids, rules.matcher_keys)
        writes = _ScoreWrites(version=version, as_of=as_of, now=timezone.now(), reason=reason)
        reaching = {}
        for contact_id, profile in profiles.items():
            result = evaluate(rules, profile, engagement.get(contact_id, {}), as_of)
            if writes.add(contact_id, result, stored.get(contact_id), profile["account_id"]):
                writes.accounts.add(profile["account_id"])
            if result.mql_level and profile["contact.lifecycle_stage"] in QUALIFYING_STAGES:
                reaching[contact_id] = result
        # Scores first: a new MQL's stage change copies its new score onto the contact.
        writes.save(in_queue={c for c, p in profiles.items() if p["contact.lifecycle_stage"] == LifecycleStage.MQL})
        qualifying = contacts_may_qualify(reaching, profiles, rules)
        stages = {c: profiles[c]["contact.lifecycle_stage"] for c in qualifying}  # read under the locks above
        _qualify(
            {c: reaching[c] for c in qualifying}, stages, version, rules.version_label, writes.now, run, hand_off_later
        )
        if run is None:  # one contact's change: its account follows after commit, once per burst
            account_rollups_request(account_ids=writes.accounts - {None})
        else:
            accounts_rescore(account_ids=writes.accounts - {None}, version=version)
    return writes.changed


def _contacts_lock(ids: list[int]) -> None:
    """Lock these contacts for a rescore (FOR NO KEY UPDATE), in id order."""
    if connection.vendor != "postgresql":
        list(Contact.objects.select_for_update(no_key=True).filter(id__in=ids).order_by("id").values_list("id"))
        return
    # Plain SQL on PostgreSQL, here and in _rescore_inputs and _ScoreWrites.save: an ingest
    # that scores runs these for one contact, where building the ORM's query took longer than
    # running it.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {Contact._meta.db_table} WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", [ids]
        )


STORED_SCORE_FIELDS = [field.attname for field in ContactScore._meta.concrete_fields]


def _rescore_inputs(ids: list[int], matcher_keys: set[str]) -> tuple[dict, dict, dict[int, ContactScore]]:
    """Fold the contacts' pending counts, then read their profiles, daily aggregates and
    stored scores. On PostgreSQL the four statements travel in one round trip (they take
    their parameters client-side, and each sees the one before: the reads see the fold)."""
    if connection.vendor != "postgresql":
        engagement_fold(contact_ids=ids)
        stored = ContactScore.objects.in_bulk(ids)
        return scoring_profiles(ids), engagement_for(ids, matcher_keys, pending=False), stored
    stored_sql = (
        f"SELECT {', '.join(STORED_SCORE_FIELDS)} FROM {ContactScore._meta.db_table} WHERE contact_id = ANY(%s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "; ".join([_fold_sql(ids), PROFILES_SQL, DAILY_ROWS_SQL, stored_sql]),
            [ids, ids, sorted(matcher_keys), ids],
        )
        cursor.nextset()  # past the fold's
        profiles = profiles_from_rows(cursor.fetchall())
        cursor.nextset()
        engagement = engagement_from_rows(cursor.fetchall())
        cursor.nextset()
        stored = {row[0]: ContactScore.from_db(connection.alias, STORED_SCORE_FIELDS, row) for row in cursor.fetchall()}
    return profiles, engagement, stored


def _contacts_rescore_in_sql(
    *, ids: list[int], rules, version: ModelVersion, as_of: date, reason: str, run: RescoreRun | None
) -> int:
    """contacts_rescore for a big batch on PostgreSQL; same locks, writes and side effects,
    except account scores: the caller (a full rescore's last chunk) rolls them up at once."""
    now = timezone.now()
    with transaction.atomic(), sql_rescore.layouts_shared():
        with connection.cursor() as cursor:
            # A chunk is small work, and workers already run one chunk per core: parallel query
            # workers only add start-up time.
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            # Everything written here derives from committed data, and the chunk's "done" mark
            # commits with it: a crash that loses this commit leaves the chunk to be run again.
            _commit_without_waiting()
            # In id order, as contacts_rescore; a chunk's id range is one index range scan.
            cursor.execute(
                f"SELECT id FROM {Contact._meta.db_table} c WHERE {sql_rescore.batch_sql('c.id', ids)} "
                "ORDER BY id FOR NO KEY UPDATE"
            )
        engagement_fold(contact_ids=ids)
        computed = sql_rescore.scores_compute(
            rules=rules,
            ids=ids,
            as_of=as_of,
            version_id=version.pk,
            change=_rule_change(rules, run, version),
            certify_version_id=_replaced_version_id(run),
        )
        changed, qualifying = sql_rescore.scores_write(
            computed, ids=ids, version_id=version.pk, as_of=as_of, now=now, reason=reason
        )
        if qualifying:  # the engine's own result drives the MQL transition and its snapshot
            profiles = scoring_profiles(qualifying)
            # From the engagement sums just brought up to date: one row per new MQL, where its
            # daily aggregates lie on a page per day.
            tallies = sql_rescore.engagement_tallies(rules, qualifying, as_of)
            reaching = {
                contact_id: evaluate_tallied(rules, profile, tallies[contact_id])
                for contact_id, profile in profiles.items()
            }
            qualifying = contacts_may_qualify(reaching, profiles, rules)
            stages = {c: profiles[c]["contact.lifecycle_stage"] for c in qualifying}  # under the chunk's locks
            _qualify({c: reaching[c] for c in qualifying}, stages, version, rules.version_label, now, run)
    return changed


def _replaced_version_id(run: RescoreRun | None) -> int | None:
    """The version a publish's run replaces: its scores that keep their numbers stay as they are."""
    if run is None or run.reason != RescoreRun.Reason.PUBLISH:
        return None
    return run.base_version_id


def _commit_without_waiting() -> None:
    """This transaction commits without waiting for its WAL to reach the disk (PostgreSQL)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")


def _rule_change(rules, run: RescoreRun | None, version: ModelVersion) -> sql_rescore.RuleChange | None:
    """What a publish's rules change against the version it replaced, which its contacts were
    scored with. None for any other run (a refresh, a manual rescore): those evaluate every
    rule, which is how a score that missed a change of its inputs gets repaired."""
    if run is None or not run.base_version_id:
        return None
    change = sql_rescore.rule_change(rules, ruleset_for(run.base_version))
    if change is None:
        return None
    # The scores the base's own publish left as they were stand for it too.
    certified = (
        RescoreRun.objects.filter(
            version_id=run.base_version_id, reason=RescoreRun.Reason.PUBLISH, finished_at__isnull=False
        )
        .exclude(base_version_id=run.base_version_id)
        .order_by("-created_at")
        .values_list("base_version_id", "created_at")
        .first()
    )
    if certified is None:
        return change
    return dataclasses.replace(change, certified_version_id=certified[0], certified_before=certified[1])


class _ScoreWrites:
    """Collects a batch's score writes so they reach the database in a few statements."""

    FIELDS = [
        "version",
        "fit",
        "engagement",
        "total",
        "fit_grade",
        "mql_level",
        "fit_uncapped",
        "engagement_uncapped_tenths",
        "account",
        "as_of",
        "computed_at",
    ]

    def __init__(self, *, version, as_of, now, reason):
        self.version, self.as_of, self.now, self.reason = version, as_of, now, reason[:200]
        self.created, self.updated, self.changes, self.only_dated = [], [], [], []
        self.accounts: set = set()

    @property
    def changed(self) -> int:
        """Contacts whose total changed (rewriting a row only to stamp the new version does not count)."""
        return len(self.changes)

    def add(self, contact_id: int, result: ScoreResult, old: ContactScore | None, account_id: int | None) -> bool:
        """Queue the write for one contact (of the account `account_id`); False when its score
        did not change. A contact that moved to another account has both accounts rolled up."""
        # Explanations are computed on read (selectors.scores_explain): only numbers decide.
        fit_uncapped, engagement_uncapped_tenths = int(result.fit_uncapped), int(result.engagement_uncapped * 10)
        unchanged = old is not None and (
            old.fit,
            old.engagement,
            old.fit_grade,
            old.mql_level,
            old.version_id,
            old.fit_uncapped,
            old.engagement_uncapped_tenths,
            old.account_id,
        ) == (
            result.fit,
            result.engagement,
            result.fit_grade,
            result.mql_level,
            self.version.pk,
            fit_uncapped,
            engagement_uncapped_tenths,
            account_id,
        )
        if old is not None and old.account_id != account_id:
            self.accounts.add(old.account_id)
        if unchanged:
            if old.as_of != self.as_of:
                self.only_dated.append(contact_id)
            return False
        row = ContactScore(
            contact_id=contact_id,
            version=self.version,
            fit=result.fit,
            engagement=result.engagement,
            total=result.total,
            fit_grade=result.fit_grade,
            mql_level=result.mql_level,
            fit_uncapped=fit_uncapped,
            engagement_uncapped_tenths=engagement_uncapped_tenths,
            account_id=account_id,
            as_of=self.as_of,
            computed_at=self.now,
        )
        (self.created if old is None else self.updated).append(row)
        old_total = old.total if old else Decimal(0)
        if old is None or old_total != result.total:
            self.changes.append(
                ScoreChange(
                    contact_id=contact_id,
                    version=self.version,
                    changed_at=self.now,
                    old_total=old_total,
                    new_total=result.total,
                    delta=result.total - old_total,
                    fit_grade=result.fit_grade,
                    reason=self.reason,
                )
            )
        return True

    def save(self, *, in_queue: set[int]) -> None:
        """Write the batch; `in_queue`: its contacts in the MQL stage (read under their locks),
        whose queue copy follows their score (_copy_queue_keys)."""
        if connection.vendor == "postgresql":
            self._save_in_sql()
        else:
            # One INSERT … ON CONFLICT DO UPDATE per 1,000 rows; the contacts are locked, so
            # nobody else writes these rows meanwhile.
            ContactScore.objects.bulk_create(
                self.created + self.updated,
                batch_size=1000,
                update_conflicts=True,
                unique_fields=["contact"],
                update_fields=self.FIELDS,
            )
            ScoreChange.objects.bulk_create(self.changes, batch_size=1000)
        _copy_queue_keys([score for score in self.created + self.updated if score.contact_id in in_queue])
        if self.only_dated:
            ContactScore.objects.filter(pk__in=self.only_dated).update(as_of=self.as_of, computed_at=self.now)

    def _save_in_sql(self) -> None:
        """The scores (upserted: the contacts are locked, so nobody else writes these rows
        meanwhile) and their history in one statement, columns as arrays."""
        scores, changes = self.created + self.updated, self.changes
        if not scores and not changes:
            return
        columns = ["contact_id", *(ContactScore._meta.get_field(name).attname for name in self.FIELDS)]
        types = ["bigint", "bigint", "numeric", "numeric", "numeric", "text", "text", "int", "bigint", "bigint", "date"]
        history = ["contact_id", "old_total", "new_total", "delta", "fit_grade"]
        history_types = ["bigint", "numeric", "numeric", "numeric", "text"]
        updates = ", ".join(f"{name} = excluded.{name}" for name in columns[1:])
        with connection.cursor() as cursor:
            cursor.execute(
                f"""WITH scores AS (
                    INSERT INTO {ContactScore._meta.db_table} ({", ".join(columns)})
                    SELECT *, %s::timestamptz FROM unnest({", ".join(f"%s::{t}[]" for t in types)})
                    ON CONFLICT (contact_id) DO UPDATE SET {updates}
                )
                INSERT INTO {ScoreChange._meta.db_table} ({", ".join(history)}, version_id, changed_at, reason)
                SELECT *, %s, %s::timestamptz, %s FROM unnest({", ".join(f"%s::{t}[]" for t in history_types)})""",
                [
                    self.now,
                    *([getattr(score, name) for score in scores] for name in columns[:-1]),
                    self.version.pk,
                    self.now,
                    self.reason,
                    *([getattr(change, name) for change in changes] for name in history),
                ],
            )


def _copy_queue_keys(scores: list[ContactScore]) -> None:
    """Write each score's total, grade and level onto its contact, which is in the queue (the
    queue's read model: Contact.score_total), 500 rows per UPDATE … FROM (VALUES …): the form
    both PostgreSQL and SQLite accept. Contacts that become MQLs after it get the copy with
    their stage change (leads.services.contacts_set_stage)."""
    table = Contact._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(scores), 500):
            batch = scores[start : start + 500]
            values = ", ".join(["(%s, %s, %s, %s)"] * len(batch))
            cursor.execute(
                f"WITH v(id, total, grade, level) AS (VALUES {values}) "
                f"UPDATE {table} SET score_total = CAST(v.total AS NUMERIC), score_fit_grade = v.grade, "
                f"score_mql_level = v.level FROM v WHERE {table}.id = v.id",
                [value for s in batch for value in (s.contact_id, str(s.total), s.fit_grade, s.mql_level)],
            )


def _qualify(
    reaching: dict[int, ScoreResult],
    stages: dict[int, str],
    version: ModelVersion,
    label: str,
    now,
    run=None,
    hand_off_later: bool = False,
) -> None:
    """Make these contacts (locked by the caller, who read their `stages` under the locks;
    each reaching a level) MQLs in a few statements: stage and its history, the hand-off
    (clock, nurture exits, routing) and the qualification snapshot. A full rescore's chunk
    passes its `run`: reps then get one digest when the run ends (mql_digests_send) instead
    of one email per lead. `hand_off_later`: the routing runs in a worker after commit."""
    changes = contacts_set_stage(
        transitions={
            contact_id: (
                f"{label}: {result.mql_level}",
                f"Score {result.total} (fit {result.fit}, grade {result.fit_grade}; engagement {result.engagement})",
            )
            for contact_id, result in reaching.items()
        },
        to_stage=LifecycleStage.MQL,
        changed_at=now,
        locked_stages=stages,
    )
    if not changes:
        return
    from_stages = {change.contact_id: change.from_stage for change in changes}
    if hand_off_later:
        mqls_hand_off_after_commit(from_stages=from_stages, at=now)
    else:
        mqls_entered(from_stages=from_stages, at=now, notify=run is None)
    bulk_insert(
        MqlQualification,
        [_qualification(change.contact_id, reaching[change.contact_id], version, now, run) for change in changes],
    )


def _qualification(contact_id: int, result: ScoreResult, version: ModelVersion, now, run) -> MqlQualification:
    return MqlQualification(
        contact_id=contact_id,
        version=version,
        run=run,
        level=result.mql_level,
        total=result.total,
        fit=result.fit,
        engagement=result.engagement,
        fit_grade=result.fit_grade,
        explanation=[c.as_json() for c in result.contributions],
        top_reasons=[c.as_json() for c in result.top_reasons()],
        qualified_at=now,
    )


MQL_DIGEST_LISTED = 20


def mql_digests_send(*, run: RescoreRun) -> int:
    """One email per rep listing the leads this full rescore made MQLs and routed to them
    (still theirs and still waiting); returns how many were queued. Keyed per run and rep."""
    from nurturing.services import email_enqueue

    # The run's contacts as a list of ids, not a join: a run can qualify tens of thousands in
    # tables whose statistics lag behind, and a misjudged join then compares every pair. One
    # array (`__any_of`), and one query for every rep's count and best leads: the ids as
    # literals, once per rep, took 0.15 s a rep at 13,500 new MQLs.
    qualified = list(MqlQualification.objects.filter(run=run).values_list("contact_id", flat=True))
    by_rep = (
        Contact.objects.filter(pk__any_of=qualified, lifecycle_stage=LifecycleStage.MQL, owner__isnull=False)
        .annotate(
            waiting=Window(Count("pk"), partition_by=[F("owner")]),
            rank=Window(RowNumber(), partition_by=[F("owner")], order_by=[F("score_total").desc(), F("pk")]),
        )
        .filter(rank__lte=MQL_DIGEST_LISTED)
        .select_related("account")
        .order_by("owner", "rank")
    )
    best: dict[int, list[Contact]] = {}
    for contact in by_rep:
        best.setdefault(contact.owner_id, []).append(contact)
    sent = 0
    for rep in get_user_model().objects.filter(pk__in=best).exclude(email=""):
        email_enqueue(
            key=f"mql-digest:{run.pk}:{rep.pk}",
            to=rep.email,
            template="emails/mql_digest",
            context={
                "rep": rep,
                "count": best[rep.pk][0].waiting,
                "contacts": best[rep.pk],
                "run": run,
                "site_url": settings.SITE_URL,
            },
        )
        sent += 1
    return sent


ACCOUNT_PROFILE = ["id", "name", "domain", "industry", "employee_count", "annual_revenue", "country"]


def accounts_rescore(*, account_ids: Iterable[int], version: ModelVersion) -> None:
    """Roll contacts' engagement up to their accounts and add the account's own fit."""
    ids = list(account_ids)
    if not ids:
        return
    account_only = account_fit_rules(ruleset_for(version))
    # Each account's profile with its contacts' scores summed, in one query.
    accounts = (
        Account.objects.filter(id__in=ids)
        .values(*ACCOUNT_PROFILE)
        .annotate(
            engagement_sum=Sum("contacts__score__engagement"),
            engaged=Count("contacts__score", filter=Q(contacts__score__engagement__gt=0)),
        )
    )
    now = timezone.now()
    rows = []
    for account in accounts:
        profile = {f"account.{key}": account[key] for key in ACCOUNT_PROFILE}
        fit = evaluate(account_only, profile, {}, timezone.localdate()).fit
        engagement = account["engagement_sum"] or Decimal(0)
        rows.append(
            AccountScore(
                account_id=account["id"],
                version=version,
                fit=fit,
                engagement=engagement,
                total=fit + engagement,
                engaged_contacts=account["engaged"],
                is_mqa=fit + engagement >= version.mqa_threshold,
                computed_at=now,
            )
        )
    AccountScore.objects.bulk_create(
        rows,
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["account"],
        update_fields=["version", "fit", "engagement", "total", "engaged_contacts", "is_mqa", "computed_at"],
    )


ROLLUP_QUEUED_FLAG = "scoring:account-rollup-queued"


def account_rollups_request(*, account_ids: Iterable[int]) -> None:
    """Record, in the caller's transaction, that these accounts must be rolled up again, and
    queue the rollup after commit (see AccountRollupRequest): an ingest pays one insert for
    its account instead of summing every contact of it, and two contacts of one account
    rescored at the same moment cannot leave the older sum as the last one written."""
    ids = sorted(set(account_ids))
    if not ids:
        return
    now = timezone.now()
    if connection.vendor == "postgresql":  # plain SQL: see _contacts_lock
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {AccountRollupRequest._meta.db_table} (account_id, requested_at) "
                "SELECT id, %s FROM unnest(%s::bigint[]) AS id "
                "ON CONFLICT (account_id) DO UPDATE SET requested_at = excluded.requested_at",
                [now, ids],
            )
    else:
        AccountRollupRequest.objects.bulk_create(
            [AccountRollupRequest(account_id=account_id, requested_at=now) for account_id in ids],
            update_conflicts=True,
            unique_fields=["account"],
            update_fields=["requested_at"],
        )
    transaction.on_commit(account_rollups_queue, robust=True)


ROLLUP_DELAY_SECONDS = 1


def account_rollups_queue() -> None:
    """Make sure a rollup task is queued (config.coalesce), run a second later, so the events
    of that second, however many, cost one task: an account's score may lag its contacts' by
    a second, never by an event."""
    from .tasks import account_rollups

    task_queue_once(ROLLUP_QUEUED_FLAG, account_rollups, countdown=ROLLUP_DELAY_SECONDS)


def account_rollups_drain(*, limit: int = 500) -> int:
    """Roll up the requested accounts, oldest request first, `limit` per transaction; returns
    how many. Requests another rollup holds are left for a task queued a second later."""
    from .tasks import account_rollups

    task_started(ROLLUP_QUEUED_FLAG)
    done = 0
    while True:
        served, skipped = _account_rollups_serve(limit=limit)
        done += served
        if skipped:
            account_rollups.apply_async(countdown=1)
            return done
        if served < limit:
            return done


@transaction.atomic
def _account_rollups_serve(*, limit: int) -> tuple[int, bool]:
    """Lock up to `limit` requests (SKIP LOCKED: another rollup has those), roll their accounts
    up from the committed contact scores and delete them. A contact rescored after the read
    re-requests its account: its upsert waits for this commit, then inserts a new request."""
    version = active_version()
    if version is None:  # nothing is scored: the requests wait for a published model
        return 0, False
    pending = AccountRollupRequest.objects.order_by("requested_at")
    locked = list(pending.select_for_update(skip_locked=True).values_list("account_id", flat=True)[:limit])
    skipped = len(locked) < limit and pending.exclude(account_id__in=locked).exists()
    accounts_rescore(account_ids=locked, version=version)  # returns at once when there are none
    AccountRollupRequest.objects.filter(account_id__in=locked).delete()
    return len(locked), skipped


def account_rollups_sweep() -> int:
    """Queue a rollup for requests older than RESCORE_CLAIM_TIMEOUT, whose task must have been
    lost (beat, every minute); returns how many. Re-stamped, so they are counted once."""
    from .tasks import account_rollups

    stale = AccountRollupRequest.objects.filter(requested_at__lt=timezone.now() - _claim_timeout())
    count = stale.update(requested_at=timezone.now())
    if count:
        account_rollups.delay()
    return count


# --- full rescores in chunks --------------------------------------------------------------


def rescore_run_start(
    *,
    version: ModelVersion,
    reason: str,
    started_by=None,
    contacts=None,
    as_of: date | None = None,
    base_version: ModelVersion | None = None,
) -> RescoreRun:
    """Split the contacts into id-range chunks and queue one task per chunk after commit."""
    from .tasks import rescore_chunk

    contacts = Contact.objects.all() if contacts is None else contacts
    ranges = _id_ranges(contacts, settings.RESCORE_CHUNK_SIZE)
    with transaction.atomic():
        run = RescoreRun.objects.create(
            version=version,
            reason=reason,
            started_by=started_by,
            base_version=base_version,
            as_of=as_of or timezone.localdate(),
            total_contacts=sum(count for _, _, count in ranges),
        )
        chunks = RescoreChunk.objects.bulk_create(
            [RescoreChunk(run=run, first_contact_id=first, last_contact_id=last) for first, last, _ in ranges]
        )
        run.total_chunks = len(chunks)
        if not chunks:
            run.finished_at = timezone.now()
        run.save(update_fields=["total_chunks", "finished_at"])
        chunk_ids = list(run.chunks.values_list("id", flat=True))
        transaction.on_commit(lambda: [rescore_chunk.delay(chunk_id) for chunk_id in chunk_ids])
    return run


def _id_ranges(contacts, size: int) -> list[tuple[int, int, int]]:
    """(first id, last id, count) of each run of `size` consecutive contacts in id order,
    computed by the database: a million ids need not travel to Python to be cut in chunks.
    It hops along the primary key: each chunk's last id is `size` - 1 entries after its first,
    the next chunk starts after it (numbering every id with a window function took 0.65 s at
    a million contacts; hopping, 0.15 s). The last chunk, shorter than `size`, gets its end
    and count in the same statement, so every chunk is cut from one snapshot."""
    inner, params = contacts.order_by().values("id").query.sql_with_params()
    after = "WHERE x.id > cut.last_id"
    tail = f"FROM ({inner}) x WHERE x.id >= cut.first_id"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH RECURSIVE cut(first_id, last_id) AS (
                SELECT (SELECT min(id) FROM ({inner}) x),
                       (SELECT id FROM ({inner}) x ORDER BY id LIMIT 1 OFFSET %s)
              UNION ALL
                SELECT (SELECT min(id) FROM ({inner}) x {after}),
                       (SELECT id FROM ({inner}) x {after} ORDER BY id LIMIT 1 OFFSET %s)
                FROM cut WHERE cut.last_id IS NOT NULL
            )
            SELECT first_id, coalesce(last_id, (SELECT max(id) {tail})),
                   CASE WHEN last_id IS NULL THEN (SELECT count(*) {tail}) ELSE %s END
            FROM cut WHERE first_id IS NOT NULL ORDER BY first_id""",
            [*params, *params, size - 1, *params, *params, size - 1, *params, *params, size],
        )
        return [tuple(row) for row in cursor.fetchall()]


def _claim_timeout() -> timedelta:
    return timedelta(seconds=settings.RESCORE_CLAIM_TIMEOUT)


def rescore_chunk_run(*, chunk_id: int) -> bool:
    """Rescore one chunk if it is not done and not held by a live worker; True if it ran.

    The claim is a conditional update; the scores, the chunk's "done" mark and the run's
    progress commit in one transaction, so a chunk re-run after a crash is never counted
    twice, and a chunk whose worker died is claimed again after settings.RESCORE_CLAIM_TIMEOUT seconds.
    """
    now = timezone.now()
    claimable = Q(status=RescoreChunk.Status.PENDING) | Q(
        status=RescoreChunk.Status.RUNNING, claimed_at__lt=now - _claim_timeout()
    )
    with transaction.atomic():
        # A claim lost in a crash leaves the chunk pending, to be claimed again: no need to
        # wait for the disk. A synchronous commit here waited for the WAL of the chunk before,
        # committed asynchronously (several megabytes): 4 ms a chunk.
        _commit_without_waiting()
        claimed = RescoreChunk.objects.filter(claimable, pk=chunk_id).update(
            status=RescoreChunk.Status.RUNNING, claimed_at=now, attempts=F("attempts") + 1
        )
    if not claimed:
        return False
    chunk = RescoreChunk.objects.select_related("run__version", "run__base_version").get(pk=chunk_id)
    ids = Contact.objects.filter(id__gte=chunk.first_contact_id, id__lte=chunk.last_contact_id).values_list(
        "id", flat=True
    )
    try:
        return _rescore_chunk_claimed(chunk, claimed_at=now, contact_ids=list(ids))
    except Exception:
        # Give the claim back, so that the task's retry (seconds away) can take the chunk
        # again instead of the sweep after the claim timeout; a killed worker still needs the sweep.
        logger.warning("Rescore chunk %s failed; released for its retry", chunk_id, exc_info=True)
        RescoreChunk.objects.filter(pk=chunk_id, status=RescoreChunk.Status.RUNNING, claimed_at=now).update(
            status=RescoreChunk.Status.PENDING
        )
        raise


def _rescore_chunk_claimed(chunk: RescoreChunk, *, claimed_at, contact_ids: list[int]) -> bool:
    """The chunk's scores, its "done" mark (only if still held by this claim) and the run's
    progress, in one transaction."""
    run = chunk.run
    with transaction.atomic():
        changed = contacts_rescore(
            contact_ids=contact_ids,
            reason=f"rescore: {run.get_reason_display()}",
            as_of=run.as_of,
            version=run.version,
            in_sql=True,
            run=run,
        )
        done = RescoreChunk.objects.filter(
            pk=chunk.pk, status=RescoreChunk.Status.RUNNING, claimed_at=claimed_at
        ).update(status=RescoreChunk.Status.DONE, changed_contacts=changed)
        if not done:  # another worker re-claimed it meanwhile: let its result stand alone
            transaction.set_rollback(True)
            return False
        RescoreRun.objects.filter(pk=run.pk).update(
            done_chunks=F("done_chunks") + 1, changed_contacts=F("changed_contacts") + changed
        )
        finished = RescoreRun.objects.filter(pk=run.pk, done_chunks=F("total_chunks"), finished_at__isnull=True).update(
            finished_at=timezone.now()
        )
        if finished and connection.vendor == "postgresql":
            # The SQL path leaves accounts to the run's last chunk: one rollup of them all.
            sql_rescore.accounts_rescore_all(
                rules=ruleset_for(run.version),
                version_id=run.version_id,
                mqa_threshold=run.version.mqa_threshold,
                now=timezone.now(),
            )
        if finished:
            mql_digests_send(run=run)
    return True


def rescore_requests_record(*, contact_ids: Iterable[int], reason: str) -> None:
    """Record, in the caller's transaction, that these contacts' scores must be recomputed
    (see RescoreRequest). A contact already waiting keeps one request, with the newest reason
    and a new generation."""
    table = RescoreRequest._meta.db_table
    ids = sorted(set(contact_ids))
    now = timezone.now()
    upsert = (
        "ON CONFLICT (contact_id) DO UPDATE SET reason = excluded.reason, "
        f"requested_at = excluded.requested_at, generation = {table}.generation + 1"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # in contact order (unnest keeps it): see ingest's locking
            cursor.execute(
                f"INSERT INTO {table} (contact_id, reason, requested_at, generation) "
                f"SELECT id, %s, %s, 0 FROM unnest(%s::bigint[]) AS id {upsert}",
                [reason[:200], now, ids],
            )
            return
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            cursor.execute(
                f"INSERT INTO {table} (contact_id, reason, requested_at, generation) "
                f"VALUES {', '.join(['(%s, %s, %s, 0)'] * len(batch))} {upsert}",
                [value for contact_id in batch for value in (contact_id, reason[:200], now)],
            )


DRAIN_QUEUED_FLAG = "scoring:drain-queued"


def rescore_drain_queue() -> None:
    """Make sure a drain of the pending rescore requests is queued (after a commit that
    recorded some), coalesced (config.coalesce): a burst of ingests costs one task, and a
    contact touched ten times meanwhile is scored once."""
    from .tasks import score_pending

    task_queue_once(DRAIN_QUEUED_FLAG, score_pending)


def rescore_requests_drain(*, batches: int = 20) -> int:
    """Rescore pending requests, oldest first, up to `batches` × RESCORE_DRAIN_BATCH contacts;
    queues another drain if some remain. Returns how many contacts were rescored."""
    from .tasks import score_pending

    # Before claiming: a request committed after this point queues its own drain, and one
    # committed before it is visible to the claim below, so none is left waiting.
    task_started(DRAIN_QUEUED_FLAG)
    done = 0
    for _ in range(batches):
        claimed, skipped = _rescore_requests_claim_and_run(limit=settings.RESCORE_DRAIN_BATCH)
        done += claimed
        if skipped:  # held by another transaction (a stage change, a drain): look again shortly
            score_pending.apply_async(countdown=1)
            return done
        if claimed < settings.RESCORE_DRAIN_BATCH:
            return done
    rescore_drain_queue()
    return done


@transaction.atomic
def _rescore_requests_claim_and_run(*, limit: int) -> tuple[int, int]:
    """Lock up to `limit` requested contacts, skipping those another drain (or any rescore)
    holds, and rescore them in this transaction: a worker that dies leaves the requests in
    place. Locks contacts, not requests, as every rescore does, so lock orders never cross.

    Commits without waiting for the WAL flush: everything written here is derived from data
    already committed, and the requests' deletion is in the same transaction, so a database
    crash that loses this commit loses the requests' deletion with it and the drain runs
    again; meanwhile, ingests that re-request these contacts do not wait on the flush."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
    pending = list(RescoreRequest.objects.order_by("requested_at").values_list("contact_id", flat=True)[:limit])
    locked = list(
        Contact.objects.select_for_update(no_key=True, skip_locked=True)
        .filter(id__in=pending)
        .values_list("id", flat=True)
    )
    requests = list(
        RescoreRequest.objects.filter(contact_id__in=locked).values_list("contact_id", "reason", "generation")
    )
    reasons = defaultdict(list)
    for contact_id, reason, _ in requests:
        reasons[reason].append(contact_id)
    for reason, contact_ids in reasons.items():
        contacts_rescore(contact_ids=contact_ids, reason=reason, clear_requests=False)
    _rescore_requests_delete_served(requests)
    return len(locked), len(pending) - len(locked)


def _rescore_requests_delete_served(requests: list[tuple[int, str, int]]) -> None:
    """Delete the requests this drain served, at the end of its transaction (an ingest that
    re-requests one of these contacts waits on that row lock only for the commit), and only
    in the generation read: a request renewed meanwhile stays for the next drain. Rows are
    locked in contact order first, the order ingests write them in, so the two never deadlock."""
    table = RescoreRequest._meta.db_table
    served = sorted((contact_id, generation) for contact_id, _, generation in requests)
    with connection.cursor() as cursor:
        for start in range(0, len(served), 500):
            batch = served[start : start + 500]
            matching = f"(contact_id, generation) IN (VALUES {', '.join(['(%s, %s)'] * len(batch))})"
            params = [value for pair in batch for value in pair]
            if connection.features.has_select_for_update:
                cursor.execute(f"SELECT 1 FROM {table} WHERE {matching} ORDER BY contact_id FOR UPDATE", params)
            cursor.execute(f"DELETE FROM {table} WHERE {matching}", params)


def rescore_requests_sweep() -> int:
    """Queue a drain for the rescores requested longer than RESCORE_CLAIM_TIMEOUT ago, whose
    task must have been lost (beat, every minute); returns how many contacts. They are
    stamped as requested now, so the next minute's sweep does not count them again."""
    from .tasks import score_pending

    stale = RescoreRequest.objects.filter(requested_at__lt=timezone.now() - _claim_timeout())
    count = stale.update(requested_at=timezone.now())
    if count:
        score_pending.delay()
    return count


def rescore_runs_sweep() -> int:
    """Re-queue chunks whose worker died (beat, every minute); returns how many."""
    from .tasks import rescore_chunk

    stale = timezone.now() - _claim_timeout()
    chunk_ids = list(
        RescoreChunk.objects.filter(
            Q(status=RescoreChunk.Status.PENDING, run__created_at__lt=stale)
            | Q(status=RescoreChunk.Status.RUNNING, claimed_at__lt=stale)
        ).values_list("id", flat=True)[:1000]
    )
    for chunk_id in chunk_ids:
        rescore_chunk.delay(chunk_id)
    return len(chunk_ids)


def rescore_run_to_end(*, run: RescoreRun, progress=None) -> RescoreRun:
    """Run every chunk in this process (management commands and tests)."""
    for chunk_id in run.chunks.filter(status=RescoreChunk.Status.PENDING).values_list("id", flat=True):
        rescore_chunk_run(chunk_id=chunk_id)
        if progress:
            progress(RescoreRun.objects.get(pk=run.pk))
    return RescoreRun.objects.get(pk=run.pk)


def scores_refresh_start(*, as_of: date | None = None) -> RescoreRun | None:
    """Daily: rescore contacts whose stored score is older than today and has engagement,
    so look-back windows and decay stay true without waiting for new activity."""
    version = active_version()
    as_of = as_of or timezone.localdate()
    if version is None:
        return None
    stale = Contact.objects.filter(score__as_of__lt=as_of).exclude(score__engagement=0)
    if not stale.exists():
        return None
    return rescore_run_start(version=version, reason=RescoreRun.Reason.REFRESH, contacts=stale, as_of=as_of)
