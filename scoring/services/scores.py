"""Scores: a batch of contacts rescored (in Python, or in SQL for big batches), their writes and
the MQL transition."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from functools import partial

from django.db import connection, transaction
from django.utils import timezone

from config.bulk import bulk_insert
from leads.handoff import mqls_entered, mqls_hand_off_after_commit
from leads.models import Contact, LifecycleStage
from leads.services import contacts_set_stage

from .. import sql_rescore
from ..engine import ScoreResult, evaluate, evaluate_tallied
from ..models import (
    ContactScore,
    ModelVersion,
    MqlQualification,
    RescoreRequest,
    RescoreRun,
    ScoreChange,
)
from ..selectors import (
    DAILY_ROWS_SQL,
    PROFILES_SQL,
    active_version,
    contacts_may_qualify,
    engagement_for,
    engagement_from_rows,
    profiles_from_rows,
    ruleset_for,
    scoring_profiles,
)
from ._shared import commit_without_waiting
from .accounts import account_rollups_request, accounts_rescore
from .engagement import _fold_sql, engagement_fold

# Stages from which reaching an MQL level makes a contact an MQL. A recycled lead can
# qualify again; contacts sales already owns (SQL and later) are never touched by scoring.
QUALIFYING_STAGES = {LifecycleStage.SUBSCRIBER, LifecycleStage.LEAD, LifecycleStage.RECYCLED}


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
            commit_without_waiting()
            # In id order, as contacts_rescore; a chunk's id range is one index range scan.
            cursor.execute(
                f"SELECT id FROM {Contact._meta.db_table} c WHERE {sql_rescore.batch_sql('c.id', ids)} "
                "ORDER BY id FOR NO KEY UPDATE"
            )
        engagement_fold(contact_ids=ids)
        change = _rule_change(rules, run, version)
        changed, qualifying = _scores_write_in_sql(
            ids=ids,
            rules=rules,
            version=version,
            change=change,
            replaced=change.base if change else _replaced(run),
            as_of=as_of,
            now=now,
            reason=reason,
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


def _replaced(run: RescoreRun | None) -> sql_rescore.StandingFor | None:
    """The scores standing for the version a publish's run replaces: those that keep their
    numbers stay as they are."""
    if run is None or run.reason != RescoreRun.Reason.PUBLISH or run.base_version_id is None:
        return None
    return sql_rescore.standing_for(run.base_version_id)


def _scores_write_in_sql(
    *, ids: list[int], rules, version: ModelVersion, change, replaced, as_of: date, now, reason: str
) -> tuple[int, list[int]]:
    """The batch's new scores written (sql_rescore.scores_write); returns (contacts whose total
    changed, contacts at a level whose stage scoring may qualify). Under a rule change the
    stored scores that allow it are adjusted by the changed rules (scores_adjusted); the
    others, and every score without a change, are computed from the contacts' profiles."""
    write = partial(sql_rescore.scores_write, version_id=version.pk, as_of=as_of, now=now, reason=reason)
    adjusted = change and sql_rescore.scores_adjusted(rules=rules, change=change, ids=ids, as_of=as_of)
    changed, qualifying, held_back = write(adjusted, ids=ids) if adjusted else (0, [], ids)
    if held_back:
        computed = sql_rescore.scores_compute(
            rules=rules, ids=held_back, as_of=as_of, version_id=version.pk, change=change, replaced=replaced
        )
        changed_too, qualifying_too, _ = write(computed, ids=held_back)
        changed, qualifying = changed + changed_too, sorted(qualifying + qualifying_too)
    return changed, qualifying


def _rule_change(rules, run: RescoreRun | None, version: ModelVersion) -> sql_rescore.RuleChange | None:
    """What a publish's rules change against the version it replaced, which its contacts were
    scored with. None for any other run (a refresh, a manual rescore): those evaluate every
    rule, which is how a score that missed a change of its inputs gets repaired."""
    if run is None or not run.base_version_id:
        return None
    return sql_rescore.rule_change_from(rules, run.base_version)


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
