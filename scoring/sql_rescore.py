"""Rescoring many contacts in PostgreSQL, set-based, with exactly the engine's results.

`scoring.engine.evaluate` stays the definition of a score; this module reproduces it for
a batch of contacts in a few statements instead of one Python evaluation per contact:

- Fit: for every fit rule, the batch's *distinct* values of the rule's field are read and
  judged by the engine's own `fit_test` in Python; SQL then only looks each contact's value
  up in the list of matching values (`array_position`, which compares NULLs as equal).
  No operator is re-implemented in SQL, so text, number and boolean semantics cannot drift.
- Engagement: per contact, one row of sums (EngagementSums): for every (matcher, window or
  half-life) of the rules, occurrences times the engine's decay weight (`engine.decay_weight`,
  exact in millionths). Built from `DailyEngagement` when missing or stale, so a rule change
  that keeps its rules' activities and timing (points, caps, fit, levels) reads one row per
  contact, not every day of every contact. Each rule is a term of one expression, in integer
  arithmetic, its cap and Decimal's ROUND_HALF_EVEN to a tenth written out.
- Caps (greatest(least(sum, cap), -cap) per dimension, the engine's "cap" line), grades and MQL levels
  follow `engine.evaluate`. Only numbers are computed: explanations are the engine's, on
  read (selectors.scores_explain).

A publish's rule change takes a shorter way for the scores that allow it (scores_adjusted):
its changed rules' terms added to the stored sums before the caps, in one statement with the
writes, without the profile table.

Only rows whose numbers differ from the stored score are written. Contacts that reach a
level in a stage where scoring may qualify them are handed back to the caller, which
evaluates them with the engine (for the snapshot) and hands them off in bulk (`_qualify`).
The engine reads their tallies from the same sums (`engagement_tallies`; a decaying rule's
sums carry its matcher's plain count too, the occurrences its explanation names), not
their daily aggregates, which lie on a page per day: a new MQL costs one row read.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from functools import cache

from django.db import connection

from leads.models import Account, Contact, LifecycleStage

from .engine import RuleSet, Tally, decay_weight, fit_test
from .locks import account_scores_lock
from .models import (
    AccountScore,
    ContactScore,
    DailyEngagement,
    EngagementSums,
    Matcher,
    RescoreRequest,
    ScoreChangeBatch,
)
from .selectors import PROFILE_ACCOUNT_FIELDS, PROFILE_CONTACT_FIELDS, publish_successions

EMAIL_OPERATORS = ("free_mail", "domain_in")
PROFILE = "scoring_rescore_profile"
MILLION = 1_000_000


def batch_sql(column: str, ids: list[int]) -> str:
    """SQL that selects the batch's contacts by `column`. Consecutive ids (a full rescore's
    chunk, unless contacts were deleted) become a range: one index range scan instead of one
    index probe per id. The ids are written into the statement, each through int(), so
    every statement of the batch takes it whatever its style of parameters."""
    if ids[-1] - ids[0] + 1 == len(ids):
        return f"{column} BETWEEN {int(ids[0])} AND {int(ids[-1])}"
    return f"{column} = ANY('{{{','.join(str(int(i)) for i in ids)}}}'::bigint[])"


def _field_sql(field: str, params: list) -> tuple[str, bool]:
    """SQL for a profile field's raw value (c = contact, a = account), and whether it is JSON."""
    if field == "email":
        return "c.email", False
    if field == "account_id":
        return "c.account_id", False
    prefix, _, name = field.partition(".")
    if prefix == "contact" and name in PROFILE_CONTACT_FIELDS:
        return f"c.{name}", False
    if prefix == "account" and name in PROFILE_ACCOUNT_FIELDS:
        return f"a.{name}", False
    if prefix == "attribute" and name:
        params.append(name)
        return "(c.attributes -> %s)", True
    return "NULL", False


def _fit_fields(rules: RuleSet, change: RuleChange | None) -> list[_FitField]:
    """The fields the fit rules test (and those the rules a change removes tested), each with
    its rules. Seniority, job title and email have several."""
    fields: dict[tuple, _FitField] = {}

    def field_of(rule) -> _FitField:
        key, params, value, is_json = _fit_key(rule)
        return fields.setdefault((key, tuple(params), value, is_json), _FitField(key, tuple(params), value, is_json))

    for rule in rules.fit_rules:
        field_of(rule).rules.append(rule)
    for rule in change.fit_added if change else ():
        field_of(rule).added.append(rule)
    for rule in change.fit_removed if change else ():
        field_of(rule).removed.append(rule)
    return list(fields.values())


@dataclass
class _FitField:
    """A field the fit rules test: its SQL key (contacts with the same key have the same
    value for these rules), its params, its raw value, whether that is JSON; the rules that
    test it, and those a rule change adds and removes (see RuleChange)."""

    key: str
    params: tuple
    value: str
    is_json: bool
    rules: list = field(default_factory=list)
    added: list = field(default_factory=list)
    removed: list = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


@dataclass(frozen=True)
class RuleChange:
    """How a rule set differs from the one the stored scores were computed with (`base`): the
    rules it adds and those it removes, identical rules cancelling out (a changed rule is one
    of each). A score stored under the base version on the same day, from engagement sums
    that have not changed since, only needs those rules: its sums before the caps
    (ContactScore.fit_uncapped, engagement_uncapped_tenths) plus what the added rules give,
    minus what the removed ones gave. Integers, so exactly the full evaluation's sums."""

    base_version_id: int
    fit_added: tuple = ()
    fit_removed: tuple = ()
    engagement_added: tuple = ()
    engagement_removed: tuple = ()
    # The stored scores of earlier versions that stand for the base (StandingFor.earlier).
    earlier: tuple[tuple[int, datetime], ...] = ()

    @property
    def base(self) -> StandingFor:
        return StandingFor(self.base_version_id, self.earlier)


@dataclass(frozen=True)
class StandingFor:
    """The stored scores that stand for a published version: its own, and those of the
    versions before it that every publish since left as they were, its rules giving the same
    numbers, sums before the caps included (selectors.effective_versions_assign). `earlier`
    holds (version id, start of the run of the publish that replaced it): a score of that
    version computed before then stands for `version_id` once those runs have finished. A
    publish therefore rewrites only the scores whose numbers change, however many publishes
    left a score alone before (rewriting the others only to stamp the version cost a publish
    that changes half the totals a rewrite of every row)."""

    version_id: int
    earlier: tuple[tuple[int, datetime], ...] = ()

    def sql(self, alias: str) -> str:
        """A condition on the stored score `alias`: true when it stands for the version, never NULL."""
        own = f"{alias}.version_id = {int(self.version_id)}"
        if not self.earlier:
            return f"coalesce({own}, false)"
        versions = ", ".join(str(int(version_id)) for version_id, _ in self.earlier)
        cutoffs = ", ".join(f"'{before.isoformat()}'::timestamptz" for _, before in self.earlier)
        return (
            f"coalesce({own} OR {alias}.computed_at < (ARRAY[{cutoffs}])"
            f"[array_position(ARRAY[{versions}]::bigint[], {alias}.version_id)], false)"
        )


def standing_for(version_id: int) -> StandingFor:
    """StandingFor of a published version: back along the finished publish runs, each to the
    version it replaced, while there is one."""
    replaced = {version: (base, started) for base, version, started in publish_successions()}
    earlier, current = [], version_id
    while current in replaced and len(earlier) < len(replaced):  # a cycle cannot be, but must not hang
        current, started = replaced[current]
        earlier.append((current, started))
    return StandingFor(version_id, tuple(earlier))


def rule_change(rules: RuleSet, base: RuleSet | None) -> RuleChange | None:
    """The change from `base` to `rules`, or None when scores must be evaluated in full: no
    base, or rules that read other engagement sums (then every contact's sums are rebuilt)."""
    if base is None or _sum_layout(base).signature != _sum_layout(rules).signature:
        return None

    def fit_identity(rule) -> tuple:
        return (rule.field, rule.operator, json.dumps(rule.value, sort_keys=True), rule.points)

    def engagement_identity(rule) -> tuple:
        return (rule.matcher_key, rule.points, rule.cap, rule.window_days, rule.half_life_days)

    fit_added, fit_removed = _multiset_difference(rules.fit_rules, base.fit_rules, fit_identity)
    engagement_added, engagement_removed = _multiset_difference(
        rules.engagement_rules, base.engagement_rules, engagement_identity
    )
    return RuleChange(base.version_id, fit_added, fit_removed, engagement_added, engagement_removed)


def rule_change_from(rules: RuleSet, base_version) -> RuleChange | None:
    """rule_change against a published version, whose stored scores it can then adjust: those
    computed with it, and those its own publish left as they were (they stand for it)."""
    from .selectors import ruleset_for

    change = rule_change(rules, ruleset_for(base_version))
    if change is None:
        return None
    return replace(change, earlier=standing_for(base_version.pk).earlier)


def _multiset_difference(new, old, identity) -> tuple[tuple, tuple]:
    """(rules of `new` not matched by an identical rule of `old`, and the other way round)."""
    new_counts, old_counts = Counter(map(identity, new)), Counter(map(identity, old))
    return _unmatched(new, new_counts - old_counts, identity), _unmatched(old, old_counts - new_counts, identity)


def _unmatched(rules, surplus: Counter, identity) -> tuple:
    """The rules whose identity `surplus` counts, as many of each as it counts."""
    kept = []
    for rule in rules:
        if surplus[identity(rule)] > 0:
            surplus[identity(rule)] -= 1
            kept.append(rule)
    return tuple(kept)


def _profile_create(
    cursor, fields: list[_FitField], ids: list[int], layout: _SumLayout, as_of: date, change: RuleChange | None
) -> None:
    """Fill the temporary table scoring_rescore_profile with the batch's contacts: id, stage,
    whether its engagement sums must be rebuilt (missing, of another day or for other keys:
    _sums_refresh), whether its stored score can be adjusted by the rule change (`delta`, with
    the stored sums before the caps: RuleChange), and per field the rules test its key (k0,
    k1, …) and raw value (v0, v1, …). A field no changed rule tests is only read for the
    contacts evaluated in full. One pass over the contacts and their ranges of sums and
    scores, probing an account only for a contact that needs one of its fields."""
    columns, column_params = [], []
    for n, item in enumerate(fields):
        if item.changed:
            columns.append(f", {item.key} AS k{n}, {item.value} AS v{n}")
        else:
            columns.append(
                f", CASE WHEN c.delta THEN NULL ELSE {item.key} END AS k{n}, "
                f"CASE WHEN c.delta THEN NULL ELSE {item.value} END AS v{n}"
            )
        column_params += [*item.params, *item.params]
    account_reads = [item for item in fields if _reads_account(item)]
    scores = _stored_scores(ids, layout, as_of, change, bool(account_reads))
    joins, stale, delta = scores.joins, scores.stale, scores.delta
    inner_params = scores.stale_params + scores.delta_params
    stored = "NULL::int AS o_fit, NULL::bigint AS o_engagement"
    if change is not None:
        stored = "o.fit_uncapped AS o_fit, o.engagement_uncapped_tenths AS o_engagement"
    account = ""
    if account_reads:
        # Only for the contacts evaluated in full, unless a changed rule reads the account.
        needed = "" if any(item.changed for item in account_reads) else "AND NOT c.delta"
        account = (
            f"LEFT JOIN LATERAL (SELECT * FROM {Account._meta.db_table} a WHERE a.id = c.account_id {needed} "
            "OFFSET 0) a ON true"
        )
    # Only the contact columns the keys read: the rows travel through the joins.
    read = sorted(
        {"account_id"} | {name for item in fields for name in re.findall(r"\bc\.(\w+)", item.key + item.value)}
    )
    cursor.execute(f"DROP TABLE IF EXISTS {PROFILE}")
    cursor.execute(
        f"CREATE TEMP TABLE {PROFILE} ON COMMIT DROP AS "
        f"SELECT c.id, c.lifecycle_stage, c.account_id, c.stale, c.delta, c.o_fit, c.o_engagement{''.join(columns)} "
        f"FROM (SELECT c.id, c.lifecycle_stage, {', '.join(f'c.{name}' for name in read)}, "
        f"{stale} AS stale, {delta} AS delta, {stored} "
        f"FROM {Contact._meta.db_table} c {joins} WHERE {batch_sql('c.id', ids)} OFFSET 0) c {account}",
        column_params + inner_params,
    )


def _reads_account(item: _FitField) -> bool:
    return bool(re.search(r"\ba\.", item.key + item.value))


@dataclass(frozen=True)
class _StoredScores:
    """Joins of a batch's contacts (c) to their engagement sums (s), and under a rule change to
    their stored scores (o), pending rescores (r) and edited accounts; whether a contact's sums
    must be rebuilt (`stale`), and whether its stored score can be adjusted by the change
    (`delta`, RuleChange), each with its params."""

    joins: str
    stale: str
    stale_params: list
    delta: str
    delta_params: list


def _stored_scores(
    ids: list[int], layout: _SumLayout, as_of: date, change: RuleChange | None, reads_account: bool
) -> _StoredScores:
    joins, stale, stale_params, delta_params = "", "false", [], []
    if layout.specs:
        sums_table = EngagementSums._meta.db_table
        joins = f"LEFT JOIN {sums_table} s ON s.contact_id = c.id AND {batch_sql('s.contact_id', ids)}"
        stale = "(s.contact_id IS NULL OR s.as_of <> %s::date OR s.signature <> %s)"
        stale_params = [as_of, layout.signature]
    if change is None:
        return _StoredScores(joins, stale, stale_params, "false", [])
    joins += (
        f" LEFT JOIN {ContactScore._meta.db_table} o ON o.contact_id = c.id AND {batch_sql('o.contact_id', ids)}"
        f" LEFT JOIN {RescoreRequest._meta.db_table} r ON r.contact_id = c.id AND {batch_sql('r.contact_id', ids)}"
    )
    # The stored sums must still be those of the contact's profile: nothing changed on the
    # contact (or its account, when a rule reads it) since, and no rescore is pending.
    fresh = "c.updated_at <= o.computed_at AND r.contact_id IS NULL"
    if reads_account:
        # Accounts edited since the batch's oldest stored score: few or none, found by an
        # index, where probing every contact's account cost a chunk 8 ms. A contact of one
        # of them is evaluated in full, even if its own score is newer: exact either way.
        # Joined by hash, so that even every account edited (an import) costs one pass.
        account, score = Account._meta.db_table, ContactScore._meta.db_table
        joins += (
            f" LEFT JOIN (SELECT a0.id FROM {account} a0 WHERE a0.updated_at > (SELECT min(o0.computed_at) "
            f"FROM {score} o0 WHERE {batch_sql('o0.contact_id', ids)})) edited ON edited.id = c.account_id"
        )
        fresh += " AND edited.id IS NULL"
    delta = (
        f"({change.base.sql('o')} AND o.as_of = %s::date AND o.fit_uncapped IS NOT NULL "
        f"AND o.engagement_uncapped_tenths IS NOT NULL AND {fresh} AND NOT {stale})"
    )
    delta_params = [as_of, *stale_params]
    return _StoredScores(joins, stale, stale_params, delta, delta_params)


def _fit_lookups(cursor, fields: list[_FitField]) -> list[tuple[int, list[str], list[int], list[int]]]:
    """Per field the fit rules test: (its column in the profile table, the batch's keys that
    score, the points each scores in full: the sum over that field's rules, and what each
    adds to a stored score under a rule change: its added rules' points minus its removed
    rules' points)."""
    lookups = []
    if not fields:
        return lookups
    # One round trip for all fields: the statements take no parameters, so they can travel
    # together, each with its own result set. A field no changed rule tests is only read for
    # the contacts evaluated in full (the others' keys are NULL, _profile_create): under a rule
    # change, a handful of a chunk's 5,000, which no longer need sorting (2 ms a field).
    needed = {True: "", False: "WHERE delta IS NOT TRUE"}
    statements = (
        f"SELECT DISTINCT ON (1) k{n}, v{n} FROM {PROFILE} {needed[item.changed]} ORDER BY 1"
        for n, item in enumerate(fields)
    )
    cursor.execute("; ".join(statements))
    for n, item in enumerate(fields):
        if n:
            cursor.nextset()
        keys, points, deltas = [], [], []
        for key_text, raw in cursor.fetchall():
            full = _points(item.rules, raw, item.is_json)
            delta = _points(item.added, raw, item.is_json) - _points(item.removed, raw, item.is_json)
            if full or delta:
                keys.append(key_text)
                points.append(full)
                deltas.append(delta)
        lookups.append((n, keys, points, deltas))
    return lookups


def _points(rules, raw, is_json: bool) -> int:
    """The points these fit rules give a field's raw value from SQL."""
    return sum(int(rule.points) for rule in rules if _fit_matches(rule, raw, is_json))


def _fit_matches(rule, raw, is_json: bool) -> bool:
    """The engine's own test of a rule against a field's raw value from SQL."""
    if rule.operator in EMAIL_OPERATORS:
        return fit_test(rule.operator, rule.value, None, {"email": raw})[0]
    actual = json.loads(raw) if is_json and raw is not None else raw
    return fit_test(rule.operator, rule.value, actual, {})[0]


def _fit_key(rule) -> tuple[str, list, str, bool]:
    """(SQL key expression, its params, SQL raw value, whether the value is JSON) of a fit
    rule's field. Contacts with the same key have the same value for the rule."""
    if rule.operator in EMAIL_OPERATORS:
        # Contacts with the same text after the last "@" have the same email_domain().
        # split_part, not a regular expression: this runs for every contact of every chunk.
        return "CASE WHEN strpos(c.email, '@') > 0 THEN split_part(c.email, '@', -1) END", [], "c.email", False
    params: list = []
    value, is_json = _field_sql(rule.field, params)
    return f"({value})::text", params, value, is_json


@dataclass(frozen=True)
class ComputedScores:
    """The query (and its params) that gives each contact of a batch its new score, its stored
    total, and whether its row must be rewritten or only re-dated (scores_compute)."""

    sql: str
    params: list


def scores_compute(
    *,
    rules: RuleSet,
    ids: list[int],
    as_of: date,
    version_id: int,
    change: RuleChange | None = None,
    replaced: StandingFor | None = None,
) -> ComputedScores:
    """Prepare the batch's scores: its profile table (_profile_create), its fit lookups and
    engagement sums; returns the query that computes each contact's score from them, with its
    stored total and whether its row must be rewritten (new, or a number, the level or the
    version differ: as _ScoreWrites.add) or only re-dated, for scores_write. Every rule is a
    term of the fit or engagement sum, with its points and cap written into it. Under a
    `change` (RuleChange), a contact whose stored score allows it is adjusted by the changed
    rules only; the others are evaluated in full.

    A stored score that stands for the version a publish `replaced` (StandingFor) and whose
    numbers the new rules leave as they are is not rewritten: once the publish's run has
    finished, it stands for the new version too (selectors.effective_versions_assign). A
    publish that changes half the totals so rewrites half the rows, not all of them.

    Runs in the caller's transaction, after the caller has locked these contacts (as
    contacts_rescore does), so the stored scores it compares with cannot change meanwhile.
    The profile table lives until scores_write drops it, at the latest until commit."""
    with connection.cursor() as cursor:
        fields = _fit_fields(rules, change)
        layout = _sum_layout(rules)
        # The statements below join the batch's rows of several tables, all of them ranges of
        # contact ids. Left to itself the planner probes one index per contact (5,000 probes
        # per table, 15 ms each); range scans joined by hash or merge take 2 ms. Only until
        # the scores are computed. The accounts are still probed one by one (a LATERAL join
        # can only be a nested loop), as they should be.
        cursor.execute("SET LOCAL enable_nestloop = off")
        _profile_create(cursor, fields, ids, layout, as_of, change)
        full_terms, delta_terms, fit_params, delta_params = [], [], [], []
        for n, keys, points, deltas in _fit_lookups(cursor, fields):
            # One lookup per field: its key's position in the list gives its points.
            if any(points):
                full_terms.append(f"coalesce((%s::int[])[array_position(%s::text[], c.k{n})], 0)")
                fit_params += [points, keys]
            if any(deltas):
                delta_terms.append(f"coalesce((%s::int[])[array_position(%s::text[], c.k{n})], 0)")
                delta_params += [deltas, keys]
        positions = _sums_refresh(cursor, layout, ids, as_of)
        # Each rule's product (sums × points, in millionths) is computed once per contact in
        # the inner query; the rounding and cap refer to it by name (_rule_tenths reads it
        # twice). A contact adjusted by a change needs only the changed rules' products.
        products, full, added, removed = [], [], [], []
        for n, rule in enumerate(rules.engagement_rules):
            product = f"coalesce(e.sums[{positions[n]}], 0) * {abs(int(rule.points))}"
            products.append(f", CASE WHEN c.delta THEN NULL ELSE {product} END AS p{n}")
            full.append(_rule_tenths(f"p.p{n}", rule))
        for name, rules_, terms in (
            ("a", change.engagement_added if change else (), added),
            ("r", change.engagement_removed if change else (), removed),
        ):
            for n, rule in enumerate(rules_):
                products.append(
                    f", coalesce(e.sums[{_position(layout, rule)}], 0) * {abs(int(rule.points))} AS {name}{n}"
                )
                terms.append(_rule_tenths(f"p.{name}{n}", rule))
        engagement_uncapped = (
            f"CASE WHEN p.delta THEN p.o_engagement + ({' + '.join(added) or '0'}) - ({' + '.join(removed) or '0'}) "
            f"ELSE ({' + '.join(full) or '0'}) END"
        )
        fit_uncapped = (
            f"CASE WHEN c.delta THEN c.o_fit + ({' + '.join(delta_terms) or '0'}) "
            f"ELSE ({' + '.join(full_terms) or '0'}) END"
        )
        scored, scored_params = _scored(
            f"""SELECT p.contact_id, p.lifecycle_stage, p.account_id, p.fit_uncapped,
                       {engagement_uncapped} AS engagement_uncapped_tenths
                FROM (
                    SELECT c.id AS contact_id, c.lifecycle_stage, c.account_id, c.delta, c.o_engagement,
                           {fit_uncapped} AS fit_uncapped {"".join(products)}
                    FROM {PROFILE} c  -- the batch's contacts, with their fields' keys
                    -- The batch's range of sums: a range scan, never a hash of them all
                    LEFT JOIN {EngagementSums._meta.db_table} e ON e.contact_id = c.id
                        AND {batch_sql("e.contact_id", ids)}
                    OFFSET 0  -- a fence: products computed once, not copied into every term above
                ) p""",
            rules,
        )
        return ComputedScores(
            f"""SELECT n.*, o.total AS old_total, o.mql_level AS old_level, o.fit_grade AS old_grade,
                   o.contact_id IS NULL OR o.fit <> n.fit OR o.engagement <> n.engagement
                       OR o.fit_grade <> n.fit_grade OR o.mql_level <> n.mql_level
                       OR NOT (o.version_id = %s OR {replaced.sql("o") if replaced else "false"})
                       OR o.fit_uncapped IS DISTINCT FROM n.fit_uncapped
                       OR o.engagement_uncapped_tenths IS DISTINCT FROM n.engagement_uncapped_tenths
                       OR o.account_id IS DISTINCT FROM n.account_id AS rewrite,
                   o.as_of IS DISTINCT FROM %s::date AS redate, true AS adjusted
            FROM ({scored}) n
            -- The batch's range of stored scores: one range scan, never a scan of every score
            LEFT JOIN {ContactScore._meta.db_table} o ON o.contact_id = n.contact_id
                AND {batch_sql("o.contact_id", ids)}""",
            [version_id, as_of, *scored_params, *delta_params, *fit_params],
        )


def scores_adjusted(*, rules: RuleSet, change: RuleChange, ids: list[int], as_of: date) -> ComputedScores | None:
    """Under a rule change, the query that adjusts the batch's stored scores by the changed
    rules alone (RuleChange), for scores_write, straight from the contacts and their ranges of
    sums and scores: no profile table, one lookup statement for the changed fit rules. The
    contacts whose stored score does not allow it (never scored, edited, stale sums, pending
    rescore: the profile table's `delta`) come back as held back, for scores_compute.

    A publish that changes some rules' points so reads, per contact, only what those rules
    test, in one statement with the writes. The profile table took a fifth of a chunk of 20,000
    contacts; at a million contacts the chunks of a rule change took 7.4 s instead of 8.6–9.0.
    None when a changed fit rule reads an account or an attribute: scores_compute then does it
    all (an account probe per contact, a JSON key per rule)."""
    fields = _fit_fields(rules, change)
    changed = [item for item in fields if item.changed]
    if any(item.params or _reads_account(item) for item in changed):
        return None
    layout = _sum_layout(rules)
    scores = _stored_scores(ids, layout, as_of, change, any(_reads_account(item) for item in fields))
    terms, term_params = [], []
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_nestloop = off")  # as scores_compute: ranges joined by merge or hash
        for item, keys, deltas in _changed_fit_deltas(cursor, changed, ids):
            terms.append(f"coalesce((%s::int[])[array_position(%s::text[], {item.key})], 0)")
            term_params += [deltas, keys]
    products, added, removed = [], [], []
    for name, rules_, tenths in (("a", change.engagement_added, added), ("r", change.engagement_removed, removed)):
        for n, rule in enumerate(rules_):
            products.append(f", coalesce(s.sums[{_position(layout, rule)}], 0) * {abs(int(rule.points))} AS {name}{n}")
            tenths.append(_rule_tenths(f"x.{name}{n}", rule))
    scored, scored_params = _scored(
        f"""SELECT x.*, x.o_engagement_uncapped + ({" + ".join(added) or "0"})
                   - ({" + ".join(removed) or "0"}) AS engagement_uncapped_tenths
            FROM (
                SELECT c.id AS contact_id, c.lifecycle_stage, c.account_id,
                       coalesce({scores.delta}, false) AS adjusted,
                       o.fit AS o_fit, o.engagement AS o_engagement, o.total AS old_total,
                       o.mql_level AS old_level, o.fit_grade AS old_grade, o.account_id AS o_account_id,
                       o.fit_uncapped AS o_fit_uncapped, o.engagement_uncapped_tenths AS o_engagement_uncapped,
                       o.fit_uncapped + ({" + ".join(terms) or "0"}) AS fit_uncapped {"".join(products)}
                FROM {Contact._meta.db_table} c {scores.joins}
                WHERE {batch_sql("c.id", ids)}
                OFFSET 0  -- a fence: products computed once, not copied into every term above
            ) x""",
        rules,
    )
    return ComputedScores(
        f"""SELECT m.contact_id, m.lifecycle_stage, m.account_id, m.fit, m.engagement, m.total, m.fit_grade,
               m.mql_level, m.fit_uncapped, m.engagement_uncapped_tenths, m.old_total, m.old_level, m.old_grade,
               m.o_fit <> m.fit OR m.o_engagement <> m.engagement OR m.old_grade <> m.fit_grade
                   OR m.old_level <> m.mql_level OR m.o_fit_uncapped <> m.fit_uncapped
                   OR m.o_engagement_uncapped <> m.engagement_uncapped_tenths
                   OR m.o_account_id IS DISTINCT FROM m.account_id AS rewrite,
               false AS redate, m.adjusted
        FROM ({scored}) m""",
        [*scored_params, *scores.delta_params, *term_params],
    )


def _changed_fit_deltas(
    cursor, fields: list[_FitField], ids: list[int]
) -> list[tuple[_FitField, list[str], list[int]]]:
    """Per fit field a rule change tests: the batch's keys whose points change, and by how much
    (its added rules' points minus its removed rules' points), judged by the engine's fit_test
    (_fit_matches) on each distinct value, read from the contacts in one round trip."""
    if not fields:
        return []
    cursor.execute(
        "; ".join(
            f"SELECT DISTINCT ON (1) {item.key}, {item.value} FROM {Contact._meta.db_table} c "
            f"WHERE {batch_sql('c.id', ids)} ORDER BY 1"
            for item in fields
        )
    )
    deltas = []
    for n, item in enumerate(fields):
        if n:
            cursor.nextset()
        keys, points = [], []
        for key_text, raw in cursor.fetchall():
            delta = _points(item.added, raw, item.is_json) - _points(item.removed, raw, item.is_json)
            if delta:
                keys.append(key_text)
                points.append(delta)
        if keys:
            deltas.append((item, keys, points))
    return deltas


def _scored(inner: str, rules: RuleSet) -> tuple[str, list]:
    """A query over `inner` (a contact a row, with its sums before the caps: fit_uncapped and
    engagement_uncapped_tenths) that adds what engine.evaluate makes of them: the capped fit and
    engagement, the total, the fit grade and the MQL level; and its params, before `inner`'s."""
    level, level_params = _level_sql(rules, "g")
    return (
        f"""SELECT g.*, g.fit + g.engagement AS total, {level} AS mql_level
        FROM (
            SELECT c.*, {_grade_sql(rules, "c")} AS fit_grade
            FROM (
                SELECT u.*, greatest(least(u.fit_uncapped, %s), %s)::numeric AS fit,
                       greatest(least(u.engagement_uncapped_tenths, %s), %s)::numeric / 10 AS engagement
                FROM ({inner}) u
                OFFSET 0  -- a fence: the sums computed once, not copied into each use above
            ) c
            OFFSET 0  -- a fence: computed once per contact, not copied into every CASE above
        ) g
        OFFSET 0  -- a fence: the level computed once, not copied into each comparison with it
        """,
        [
            *level_params,
            int(rules.fit_cap),
            -int(rules.fit_cap),
            int(rules.engagement_cap) * 10,
            -int(rules.engagement_cap) * 10,
        ],
    )


def _grade_sql(rules: RuleSet, alias: str) -> str:
    """The fit grade of `alias`.fit, the capped fit."""
    return (
        f"CASE WHEN {alias}.fit >= {int(rules.grade_a_min)} THEN 'A' WHEN {alias}.fit >= {int(rules.grade_b_min)} "
        f"THEN 'B' WHEN {alias}.fit >= {int(rules.grade_c_min)} THEN 'C' ELSE 'D' END"
    )


def _level_sql(rules: RuleSet, alias: str) -> tuple[str, list]:
    """The MQL level (or '') of `alias`'s capped fit and engagement and its grade, and its params."""
    grade_order = f"CASE {alias}.fit_grade WHEN 'A' THEN 0 WHEN 'B' THEN 1 WHEN 'C' THEN 2 ELSE 3 END"
    cases, params = [], []
    for level in sorted(rules.levels, key=lambda lv: lv.min_score, reverse=True):
        order = {"A": 0, "B": 1, "C": 2, "D": 3}[level.min_fit_grade]
        cases.append(f"WHEN {alias}.fit + {alias}.engagement >= %s AND {grade_order} <= {order} THEN %s")
        params += [level.min_score, level.name]
    return (f"CASE {' '.join(cases)} ELSE '' END" if cases else "''"), params


def _position(layout: _SumLayout, rule) -> int:
    """The 1-based position in the sums array of what `rule`'s points multiply."""
    return layout.keys.index(_sum_key(layout.matcher_ids[rule.matcher_key], rule)) + 1


def _rule_tenths(product: str, rule) -> str:
    """SQL for an engagement rule's contribution in tenths, from `product`, the contact's sum
    for the rule times the size of its points, in millionths (an exact, non-negative bigint:
    sums count occurrences, weighted by decay): rounded half to even to a tenth, as the
    engine's Decimal.quantize, and capped, signed as the points. Integer arithmetic: with q
    the tenths rounded down, (product + 49,999 + q's parity) / 100,000 rounds up exactly from
    half a tenth when q is odd and from just above it when q is even. Capping after rounding
    equals the engine's capping before it: rounding is monotone and the cap is a whole number
    of tenths."""
    tenth = MILLION // 10
    rounded = f"(({product} + {tenth // 2 - 1} + (({product} / {tenth}) & 1)) / {tenth})"
    if rule.cap is not None:
        rounded = f"least({rounded}, {int(rule.cap) * 10})"
    return f"(-{rounded})" if rule.points < 0 else rounded


def _sum_key(matcher_id: int | None, rule) -> str:
    """What a rule's points multiply: its matcher's occurrences in its window, or decayed."""
    if rule.window_days:
        return f"{matcher_id}:w{rule.window_days}"
    if rule.half_life_days:
        return f"{matcher_id}:h{rule.half_life_days}"
    return _count_key(matcher_id)


def _count_key(matcher_id: int | None) -> str:
    """A matcher's occurrences on any day until the rescore's day."""
    return f"{matcher_id}:all"


@dataclass(frozen=True)
class _SumLayout:
    """The columns of the engagement sums for a rule set: one per (matcher, window or
    half-life) that a rule's points multiply, plus, for a decaying rule, its matcher's plain
    count: the occurrences its explanation names. Positions are 1-based, per engagement rule."""

    specs: dict[str, tuple[int | None, int | None, int | None]]  # key → (matcher id, window, half-life)
    points_at: list[int]
    count_at: list[int]
    matcher_ids: dict[str, int | None]  # matcher key → id

    @property
    def keys(self) -> list[str]:
        return sorted(self.specs)

    @property
    def signature(self) -> str:
        return ",".join(self.keys)


# Within layouts_shared, each rule set's layout is built once: a chunk asks for it four
# times, and each asked the database for the rules' matchers (2.5 ms a chunk).
_LAYOUTS: ContextVar[dict | None] = ContextVar("scoring_sum_layouts", default=None)


@contextmanager
def layouts_shared():
    token = _LAYOUTS.set({})
    try:
        yield
    finally:
        _LAYOUTS.reset(token)


def _sum_layout(rules: RuleSet) -> _SumLayout:
    shared = _LAYOUTS.get()
    if shared is None:
        return _sum_layout_built(rules)
    if id(rules) not in shared:
        shared[id(rules)] = (rules, _sum_layout_built(rules))  # holding the rules keeps their id unique
    return shared[id(rules)][1]


def _sum_layout_built(rules: RuleSet) -> _SumLayout:
    matchers = dict(Matcher.objects.filter(key__in=rules.matcher_keys).values_list("key", "id"))
    specs: dict[str, tuple[int | None, int | None, int | None]] = {}
    points_keys, count_keys = [], []
    for rule in rules.engagement_rules:
        matcher_id = matchers.get(rule.matcher_key)
        key = _sum_key(matcher_id, rule)
        specs[key] = (matcher_id, rule.window_days or None, rule.half_life_days or None)
        count_key = key
        if rule.half_life_days and not rule.window_days:  # decaying: it names its occurrences of all days
            count_key = _count_key(matcher_id)
            specs[count_key] = (matcher_id, None, None)
        points_keys.append(key)
        count_keys.append(count_key)
    keys = sorted(specs)
    return _SumLayout(
        specs=specs,
        points_at=[keys.index(key) + 1 for key in points_keys],
        count_at=[keys.index(key) + 1 for key in count_keys],
        matcher_ids={rule.matcher_key: matchers.get(rule.matcher_key) for rule in rules.engagement_rules},
    )


def engagement_tallies(rules: RuleSet, contact_ids: list[int], as_of: date) -> dict[int, list[Tally]]:
    """{contact id: each engagement rule's tally}, for engine.evaluate_tallied: the same result
    as evaluating their daily aggregates, one row read per contact instead of every day of it.
    Read from the sums that scores_compute has just brought to `as_of` for a batch holding
    these contacts (_sums_refresh, in this transaction), so every one of them has its row."""
    layout = _sum_layout(rules)
    if not layout.specs:
        return {contact_id: [] for contact_id in contact_ids}
    rows = EngagementSums.objects.filter(contact_id__in=contact_ids, as_of=as_of, signature=layout.signature)
    return {
        contact_id: [
            Tally(sums[count - 1] // MILLION, Decimal(sums[points - 1]).scaleb(-6))
            for points, count in zip(layout.points_at, layout.count_at, strict=True)
        ]
        for contact_id, sums in rows.values_list("contact_id", "sums")
    }


def _sums_refresh(cursor, layout: _SumLayout, ids: list[int], as_of: date) -> list[int]:
    """Make the batch's engagement sums those of the rules' `layout` on `as_of`, rebuilding
    from the daily aggregates the sums the profile table marks stale (missing, another day,
    other keys). Returns each engagement rule's position in the sums array (1-based). Values
    are exact integers: occurrences times the engine's decay weight (engine.decay_weight) in
    millionths."""
    keys, positions = layout.keys, layout.points_at
    if not keys:
        return positions
    signature, sums = layout.signature, EngagementSums._meta.db_table
    cursor.execute(f"SELECT id FROM {PROFILE} WHERE stale ORDER BY id")
    stale = [row[0] for row in cursor.fetchall()]
    if not stale:
        return positions  # a rule change that kept every rule's activities and timing
    # Every half-life's weights, in millionths (exact: weights have six decimals), one after
    # the other in one int[]: a fixed-width array, so looking an age up is O(1).
    weights: list[int] = []
    offsets = {}
    for half_life in sorted({half_life for _, _, half_life in layout.specs.values() if half_life}):
        offsets[half_life] = len(weights)
        weights += _decay_weights_millionths(half_life)
    columns = {
        "position": list(range(1, len(keys) + 1)),
        "matcher_id": [layout.specs[key][0] for key in keys],
        "window_days": [layout.specs[key][1] for key in keys],
        "half_life": [layout.specs[key][2] for key in keys],
        "weights_at": [offsets.get(layout.specs[key][2]) for key in keys],
    }
    # Past 21 half-lives a decaying occurrence weighs 0 (it still counts as an occurrence).
    weight = (
        f"CASE WHEN r.half_life IS NULL THEN {MILLION} WHEN %(as_of)s::date - d.day <= 21 * r.half_life "
        f"THEN (%(weights)s::int[])[r.weights_at + (%(as_of)s::date - d.day) + 1] ELSE 0 END"
    )
    dense = ", ".join(f"coalesce(sum(v.value) FILTER (WHERE v.position = {n}), 0)" for n in range(1, len(keys) + 1))
    cursor.execute(
        # Only the stale contacts' days: after a few ingests, a handful of a chunk's contacts.
        f"""WITH stale AS (
            SELECT c.id FROM {Contact._meta.db_table} c WHERE {batch_sql("c.id", stale)}
        ), vals AS (
            SELECT d.contact_id, r.position, sum(d.count::bigint * {weight}) AS value
            FROM {DailyEngagement._meta.db_table} d
            JOIN unnest(%(position)s::int[], %(matcher_id)s::int[], %(window_days)s::int[], %(half_life)s::int[],
                        %(weights_at)s::int[]) AS r(position, matcher_id, window_days, half_life, weights_at)
                 ON r.matcher_id = d.matcher_id
            WHERE {batch_sql("d.contact_id", stale)} AND d.day <= %(as_of)s::date
              AND (r.window_days IS NULL OR %(as_of)s::date - d.day < r.window_days)
            GROUP BY d.contact_id, r.position
        )
        INSERT INTO {sums} (contact_id, as_of, signature, sums)
        SELECT stale.id, %(as_of)s::date, %(signature)s, ARRAY[{dense}]::bigint[]
        FROM stale LEFT JOIN vals v ON v.contact_id = stale.id GROUP BY stale.id
        ON CONFLICT (contact_id) DO UPDATE SET as_of = excluded.as_of, signature = excluded.signature,
            sums = excluded.sums""",
        {**columns, "signature": signature, "weights": weights, "as_of": as_of},
    )
    return positions


@cache  # a pure function of the half-life: a chunk with stale sums no longer recomputes 1,261 weights per rule
def _decay_weights_millionths(half_life: int) -> tuple[int, ...]:
    """engine.decay_weight in millionths (exact: weights have six decimals) for every age
    until it rounds to 0.000000 for good: from 21 half-lives on, 0.5 ** 21 < 0.0000005."""
    return tuple(int(decay_weight(age, half_life) * MILLION) for age in range(21 * half_life + 1))


def scores_write(
    computed: ComputedScores, *, ids: list[int], version_id: int, as_of: date, now, reason: str
) -> tuple[int, list[int], list[int]]:
    """Write what differs from the stored scores of the batch `ids` (as given to
    scores_compute or scores_adjusted); returns (contacts whose total changed, contacts at a
    level whose stage scoring may qualify, contacts scores_adjusted held back: their scores
    are left for scores_compute). Account scores are not touched: a full rescore rolls every
    account up once, at its end (accounts_rescore_all).

    One statement: the scores computed once (a CTE, held in memory), then every write reads
    them. Each UPDATE also names the batch's id range: otherwise, when many rows change, the
    planner hashes the new scores and scans the whole target table for them, every chunk."""
    from .services import QUALIFYING_STAGES

    score = ContactScore._meta.db_table
    # The history as arrays per bucket of contacts (ScoreChangeBatch), not a row per change.
    contact, change = Contact._meta.db_table, ScoreChangeBatch._meta.db_table
    with connection.cursor() as cursor:
        # Only rows that differ; a row whose score is unchanged gets at most its new as_of (its
        # numbers and version are already these). A plain UPDATE joined on the batch's range,
        # and an INSERT of the contacts never scored: no conflict is possible under the
        # contacts' locks, and INSERT … ON CONFLICT DO UPDATE costs twice as much per row.
        # The queue's copy (Contact.score_total) follows for contacts in the queue; entering
        # the queue copies it. Data-modifying CTEs run once each, read or not.
        cursor.execute(
            f"""WITH n AS MATERIALIZED ({computed.sql}),
            rewritten AS (
                UPDATE {score} s SET version_id = %s, fit = n.fit, engagement = n.engagement, total = n.total,
                    fit_grade = n.fit_grade, mql_level = n.mql_level, fit_uncapped = n.fit_uncapped,
                    engagement_uncapped_tenths = n.engagement_uncapped_tenths, account_id = n.account_id,
                    as_of = %s, computed_at = %s
                FROM n WHERE s.contact_id = n.contact_id AND {batch_sql("s.contact_id", ids)}
                    AND n.adjusted AND n.old_total IS NOT NULL AND (n.rewrite OR n.redate)
            ), created AS (
                INSERT INTO {score} (contact_id, version_id, fit, engagement, total, fit_grade, mql_level,
                    fit_uncapped, engagement_uncapped_tenths, account_id, as_of, computed_at)
                SELECT contact_id, %s, fit, engagement, total, fit_grade, mql_level, fit_uncapped,
                    engagement_uncapped_tenths, account_id, %s, %s FROM n
                WHERE adjusted AND old_total IS NULL ORDER BY contact_id
            ), queue_copy AS (
                UPDATE {contact} c SET score_total = n.total, score_fit_grade = n.fit_grade,
                    score_mql_level = n.mql_level
                FROM n WHERE c.id = n.contact_id AND {batch_sql("c.id", ids)}
                    AND n.adjusted AND n.rewrite AND n.lifecycle_stage = %s
                    AND (c.score_total, c.score_fit_grade, c.score_mql_level)
                        IS DISTINCT FROM (n.total, n.fit_grade, n.mql_level)
            ), history AS (
                INSERT INTO {change}
                    (version_id, changed_at, reason, bucket, contact_ids, old_tenths, new_tenths, fit_grades)
                SELECT %s, %s, %s, contact_id / {ScoreChangeBatch.BUCKET}, array_agg(contact_id ORDER BY contact_id),
                    array_agg((coalesce(old_total, 0) * 10)::bigint ORDER BY contact_id),
                    array_agg((total * 10)::bigint ORDER BY contact_id), string_agg(fit_grade, '' ORDER BY contact_id)
                FROM n WHERE adjusted AND (old_total IS NULL OR old_total <> total)
                GROUP BY contact_id / {ScoreChangeBatch.BUCKET}
                RETURNING cardinality(contact_ids) AS changes
            )
            SELECT (SELECT coalesce(sum(changes), 0) FROM history),
                   ARRAY(SELECT contact_id FROM n WHERE adjusted AND mql_level <> '' AND lifecycle_stage = ANY(%s)
                         ORDER BY contact_id),
                   ARRAY(SELECT contact_id FROM n WHERE NOT adjusted ORDER BY contact_id)""",
            [
                *computed.params,
                version_id,
                as_of,
                now,
                version_id,
                as_of,
                now,
                LifecycleStage.MQL,
                version_id,
                now,
                reason[:200],
                [str(stage) for stage in QUALIFYING_STAGES],
            ],
        )
        changed, qualifying, held_back = cursor.fetchone()
        cursor.execute("RESET enable_nestloop")
        cursor.execute(f"DROP TABLE IF EXISTS {PROFILE}")
    return changed, qualifying, held_back


ACCOUNT_PROFILE = ["id", "name", "domain", "industry", "employee_count", "annual_revenue", "country"]


def accounts_rescore_all(*, rules: RuleSet, version_id: int, mqa_threshold: int, now) -> None:
    """Every account with a scored contact: its own fit (account fields only, capped) plus
    its contacts' engagement — services.accounts_rescore for all accounts in two statements.
    Run once at the end of a full rescore rather than per chunk: a chunk's contacts spread
    over thousands of accounts, and each account's rollup reads all of its contacts. It takes
    the account scores' lock alone (locks.account_scores_lock)."""
    account, score = Account._meta.db_table, ContactScore._meta.db_table
    terms, term_params = [], []
    account_scores_lock(alone=True)
    with connection.cursor() as cursor:
        # It runs alone, after every other chunk, and reads every score (with its account): let it
        # use the idle cores and hash in memory (with the default 4 MB the join spilled to disk;
        # 1.8 s → 1.0 s at a million contacts).
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 2")
        cursor.execute("SET LOCAL work_mem = '64MB'")
        for rule in rules.fit_rules:
            prefix, _, name = rule.field.partition(".")
            if prefix != "account":
                continue  # contact fields are not part of an account's profile
            column = f"a.{name}" if name in ACCOUNT_PROFILE else "NULL"
            cursor.execute(f"SELECT DISTINCT ON (1) ({column})::text, {column} FROM {account} a ORDER BY 1")
            keys = [
                key for key, raw in cursor.fetchall() if fit_test(rule.operator, rule.value, raw, {rule.field: raw})[0]
            ]
            if keys:
                terms.append(f"CASE WHEN array_position(%s::text[], ({column})::text) IS NOT NULL THEN %s ELSE 0 END")
                term_params += [keys, rule.points]
        fit = f"greatest(least({' + '.join(terms)}, %s), %s)" if terms else "0"
        fit_params = [*term_params, rules.fit_cap, -rules.fit_cap] if terms else []
        # The rollups into a temporary table (its SELECT may run in parallel, which no statement
        # that writes a table may), then an UPDATE of the accounts already scored (all of them
        # after the first run) and an insert of the others: one upsert of every row took 1.8 s
        # at 50,000 accounts, these 1.25 s. The insert still yields to a concurrent rollup that
        # created its row meanwhile.
        table = AccountScore._meta.db_table
        cursor.execute(
            f"""CREATE TEMP TABLE scoring_rollup ON COMMIT DROP AS
                SELECT a.id AS account_id, f.fit, r.engagement, f.fit + r.engagement AS total, r.engaged,
                       f.fit + r.engagement >= %s AS is_mqa
                FROM {account} a
                JOIN (SELECT s.account_id, sum(s.engagement) AS engagement,
                             count(*) FILTER (WHERE s.engagement > 0) AS engaged
                      FROM {score} s WHERE s.account_id IS NOT NULL GROUP BY s.account_id) r ON r.account_id = a.id,
                LATERAL (SELECT ({fit})::numeric AS fit) f""",
            [mqa_threshold, *fit_params],
        )
        cursor.execute(
            f"""UPDATE {table} t SET version_id = %s, fit = r.fit, engagement = r.engagement, total = r.total,
                    engaged_contacts = r.engaged, is_mqa = r.is_mqa, computed_at = %s
                FROM scoring_rollup r WHERE t.account_id = r.account_id""",
            [version_id, now],
        )
        cursor.execute(
            f"""INSERT INTO {table} (account_id, version_id, fit, engagement, total, engaged_contacts, is_mqa,
                    computed_at)
                SELECT r.account_id, %s, r.fit, r.engagement, r.total, r.engaged, r.is_mqa, %s FROM scoring_rollup r
                WHERE NOT EXISTS (SELECT FROM {table} t WHERE t.account_id = r.account_id)
                ON CONFLICT (account_id) DO UPDATE SET version_id = excluded.version_id, fit = excluded.fit,
                    engagement = excluded.engagement, total = excluded.total,
                    engaged_contacts = excluded.engaged_contacts, is_mqa = excluded.is_mqa,
                    computed_at = excluded.computed_at""",
            [version_id, now],
        )
        cursor.execute("DROP TABLE scoring_rollup")
