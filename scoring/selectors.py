"""Reads for scoring: the active rule set, contacts' profiles and engagement."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Count, F, Max, Sum
from django.utils import timezone

from leads.models import Account, Activity, Contact, LifecycleStage, StageChange

from .engine import (
    EngagementRuleSpec,
    FitRuleSpec,
    LevelSpec,
    RuleSet,
    ScoreResult,
    evaluate,
    property_matches,
)
from .matchers import matcher_key
from .models import (
    AccountScore,
    ContactScore,
    DailyEngagement,
    Matcher,
    ModelVersion,
    MqlLevel,
    MqlQualification,
    PendingEngagement,
    RescoreChunk,
    RescoreRun,
    ScoreChange,
    ScoreChangeBatch,
    ScoringModel,
)

PROFILE_CONTACT_FIELDS = [
    "job_title",
    "seniority",
    "department",
    "country",
    "city",
    "lead_source",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "lifecycle_stage",
    "email_consent_status",
]
PROFILE_ACCOUNT_FIELDS = ["name", "domain", "industry", "employee_count", "annual_revenue", "country"]


def contact_score_summary(contact_id: int) -> ContactScore | None:
    """The contact's stored score with its contact (for the lifecycle stage), or None."""
    return ContactScore.objects.select_related("contact").filter(contact_id=contact_id).first()


def active_version() -> ModelVersion | None:
    if connection.vendor == "postgresql":
        return _active_version_in_sql()
    return ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).select_related("scoring_model").first()


def mql_level_names() -> list[str]:
    """The active model's MQL levels, highest first: what the queue can be filtered by."""
    return list(
        MqlLevel.objects.filter(version__status=ModelVersion.Status.ACTIVE)
        .order_by("-min_score")
        .values_list("name", flat=True)
    )


def _active_version_in_sql() -> ModelVersion | None:
    """active_version in plain SQL: every ingest that scores asks, and building the ORM query
    took twice as long as running it."""
    version_fields = [field.attname for field in ModelVersion._meta.concrete_fields]
    model_fields = [field.attname for field in ScoringModel._meta.concrete_fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(f'v.{name}' for name in version_fields)}, "
            f"{', '.join(f'm.{name}' for name in model_fields)} "
            f"FROM {ModelVersion._meta.db_table} v JOIN {ScoringModel._meta.db_table} m ON m.id = v.scoring_model_id "
            "WHERE v.status = %s",
            [ModelVersion.Status.ACTIVE],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    version = ModelVersion.from_db(connection.alias, version_fields, row[: len(version_fields)])
    version.scoring_model = ScoringModel.from_db(connection.alias, model_fields, row[len(version_fields) :])
    return version


# Rule sets of published versions. Safe to keep per process: only a draft can be edited
# (scoring.versions; the admin shows published rules read-only) and a draft is never
# cached. Keyed with created_at too, so a reused id can never hit another version's rules.
_PUBLISHED_RULESETS: dict[tuple, RuleSet] = {}


def ruleset_for(version: ModelVersion) -> RuleSet:
    if version.status == ModelVersion.Status.DRAFT:
        return _load_ruleset(version)
    key = (version.pk, version.created_at)
    if key not in _PUBLISHED_RULESETS:
        _PUBLISHED_RULESETS[key] = _load_ruleset(version)
    return _PUBLISHED_RULESETS[key]


def _load_ruleset(version: ModelVersion) -> RuleSet:
    fit_rules = tuple(
        FitRuleSpec(r.id, r.name, r.field, r.operator, r.value, r.points) for r in version.fit_rules.all()
    )
    engagement_rules = tuple(
        EngagementRuleSpec(
            r.id,
            r.name,
            matcher_key(r.activity_type.key, r.property_name, r.property_operator, r.property_value),
            r.points,
            r.cap,
            r.window_days,
            r.half_life_days,
        )
        for r in version.engagement_rules.select_related("activity_type")
    )
    levels = tuple(LevelSpec(lv.name, lv.min_score, lv.min_fit_grade) for lv in version.mql_levels.all())
    return RuleSet(
        version_id=version.pk,
        version_label=f"{version.scoring_model.name} v{version.number}",
        fit_rules=fit_rules,
        engagement_rules=engagement_rules,
        levels=levels,
        fit_cap=version.fit_cap,
        engagement_cap=version.engagement_cap,
        grade_a_min=version.grade_a_min,
        grade_b_min=version.grade_b_min,
        grade_c_min=version.grade_c_min,
    )


def scoring_profiles(contact_ids: Iterable[int]) -> dict[int, dict]:
    """{contact id: {"email": …, "contact.job_title": …, "account.industry": …, "attribute.x": …}}"""
    if connection.vendor == "postgresql":
        return _scoring_profiles_in_sql(list(contact_ids))
    fields = [
        "id",
        "email",
        "attributes",
        "account_id",
        *PROFILE_CONTACT_FIELDS,
        *[f"account__{f}" for f in PROFILE_ACCOUNT_FIELDS],
    ]
    profiles = {}
    for row in Contact.objects.filter(id__in=list(contact_ids)).values(*fields):
        profile = {"email": row["email"], "account_id": row["account_id"]}
        profile.update({f"contact.{f}": row[f] for f in PROFILE_CONTACT_FIELDS})
        profile.update({f"account.{f}": row[f"account__{f}"] for f in PROFILE_ACCOUNT_FIELDS})
        profile.update({f"attribute.{k}": v for k, v in (row["attributes"] or {}).items()})
        profiles[row["id"]] = profile
    return profiles


def _scoring_profiles_in_sql(contact_ids: list[int]) -> dict[int, dict]:
    """scoring_profiles in plain SQL (PostgreSQL): every ingest that scores reads one, and
    building the ORM query cost as much as running it."""
    with connection.cursor() as cursor:
        cursor.execute(PROFILES_SQL, [contact_ids])
        return profiles_from_rows(cursor.fetchall())


# scoring_profiles's query on PostgreSQL (one parameter: the contact ids) and its rows' reader.
PROFILES_SQL = (
    "SELECT c.id, c.email, c.attributes, c.account_id, "
    + ", ".join([f"c.{name}" for name in PROFILE_CONTACT_FIELDS] + [f"a.{name}" for name in PROFILE_ACCOUNT_FIELDS])
    + f" FROM {Contact._meta.db_table} c LEFT JOIN {Account._meta.db_table} a ON a.id = c.account_id "
    "WHERE c.id = ANY(%s)"
)


def profiles_from_rows(rows) -> dict[int, dict]:
    contact_count = len(PROFILE_CONTACT_FIELDS)
    profiles = {}
    for contact_id, email, attributes, account_id, *values in rows:
        profile = {"email": email, "account_id": account_id}
        profile.update(zip((f"contact.{f}" for f in PROFILE_CONTACT_FIELDS), values[:contact_count], strict=True))
        profile.update(zip((f"account.{f}" for f in PROFILE_ACCOUNT_FIELDS), values[contact_count:], strict=True))
        if isinstance(attributes, str):  # jsonb reaches Django's cursors as text
            attributes = json.loads(attributes)
        profile.update({f"attribute.{k}": v for k, v in (attributes or {}).items()})
        profiles[contact_id] = profile
    return profiles


def engagement_for(
    contact_ids: Iterable[int], matcher_keys: set[str], *, pending: bool = True
) -> dict[int, dict[str, dict[date, int]]]:
    """The daily aggregates the rules read: {contact id: {matcher key: {day: count}}}, with
    the counts not folded in yet unless `pending` is False (the caller has just folded)."""
    contact_ids = list(contact_ids)
    engagement = engagement_from_rows(_daily_rows(contact_ids, matcher_keys))
    if not pending:
        return engagement
    # Counts of recent ingests not folded in yet (see PendingEngagement).
    rows = PendingEngagement.objects.filter(contact_id__in=contact_ids, matcher__key__in=matcher_keys)
    for contact_id, key, day, count in rows.values_list("contact_id", "matcher__key", "day", "count"):
        engagement[contact_id][key][day] = engagement[contact_id][key].get(day, 0) + count
    return engagement


def engagement_from_rows(rows) -> dict[int, dict[str, dict[date, int]]]:
    """{contact id: {matcher key: {day: count}}} from (contact id, matcher key, day, count) rows."""
    engagement: dict[int, dict[str, dict[date, int]]] = defaultdict(lambda: defaultdict(dict))
    for contact_id, key, day, count in rows:
        engagement[contact_id][key][day] = count
    return engagement


# _daily_rows's query on PostgreSQL (parameters: the contact ids, the matcher keys).
DAILY_ROWS_SQL = f"""SELECT i.id, m.key, d.day, d.count FROM unnest(%s::bigint[]) AS i(id)
    CROSS JOIN LATERAL (SELECT * FROM {DailyEngagement._meta.db_table} d WHERE d.contact_id = i.id OFFSET 0) d
    JOIN {Matcher._meta.db_table} m ON m.id = d.matcher_id AND m.key = ANY(%s)"""


def _daily_rows(contact_ids: list[int], matcher_keys: set[str]) -> Iterable[tuple[int, str, date, int]]:
    """(contact id, matcher key, day, count) of these contacts' daily aggregates. On
    PostgreSQL one index probe per contact, whatever the statistics say: with none yet (a
    table just filled) the planner scanned all ten million rows for a few hundred contacts."""
    if connection.vendor != "postgresql" or not contact_ids:
        rows = DailyEngagement.objects.filter(contact_id__in=contact_ids, matcher__key__in=matcher_keys)
        return rows.values_list("contact_id", "matcher__key", "day", "count")
    with connection.cursor() as cursor:
        cursor.execute(DAILY_ROWS_SQL, [contact_ids, sorted(matcher_keys)])
        return cursor.fetchall()


def evaluate_contacts(
    rules: RuleSet, contact_ids: list[int], *, as_of: dict[int, date] | None = None, chunk: int = 2000
) -> Iterator[tuple[int, ScoreResult]]:
    """(contact id, the engine's result) for each contact, in order, reading profiles and
    aggregates a chunk at a time; each contact as of its day in `as_of` (default today)."""
    today, as_of = timezone.localdate(), as_of or {}
    for start in range(0, len(contact_ids), chunk):
        ids = contact_ids[start : start + chunk]
        profiles = scoring_profiles(ids)
        engagement = engagement_for(ids, rules.matcher_keys)
        for contact_id in ids:
            yield (
                contact_id,
                evaluate(rules, profiles[contact_id], engagement.get(contact_id, {}), as_of.get(contact_id, today)),
            )


def score_from_scratch(contact: Contact, rules: RuleSet, as_of: date, version: ModelVersion) -> ScoreResult:
    """Score a contact from its full activity history, without the aggregates.

    The reference the incrementally maintained score is checked against.
    """
    engagement: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    rule_filters = {
        matcher_key(r.activity_type.key, r.property_name, r.property_operator, r.property_value): r
        for r in version.engagement_rules.select_related("activity_type")
    }.items()
    for activity in Activity.objects.filter(contact=contact).select_related("type"):
        day = timezone.localdate(activity.occurred_at)
        for key, rule in rule_filters:
            if activity.type.key != rule.activity_type.key:
                continue
            if rule.property_name and not property_matches(
                rule.property_operator, rule.property_value, activity.properties, rule.property_name
            ):
                continue
            engagement[key][day] += 1
    profile = scoring_profiles([contact.pk])[contact.pk]
    return evaluate(rules, profile, engagement, as_of)


def contacts_may_qualify(reaching: Iterable[int], profiles: dict[int, dict], rules) -> list[int]:
    """Of the contacts that reach a level in a stage scoring may qualify, those that become
    MQLs: all of them, except recycled leads that have done nothing since sales handed them
    back. Those qualify again on new engagement, not because a rescore (a rule change, say)
    finds them still above the line they were rejected at. Publishing and its preview both
    ask this."""
    reaching = list(reaching)
    recycled = [c for c in reaching if profiles[c]["contact.lifecycle_stage"] == LifecycleStage.RECYCLED]
    blocked = set(recycled) - engaged_since_recycled(recycled, rules)
    return sorted(c for c in reaching if c not in blocked)


def engaged_since_recycled(contact_ids: list[int], rules) -> set[int]:
    """Recycled contacts with an activity, since their latest recycling, that a rule giving
    positive points counts. A contact with no recorded recycling counts as engaged."""
    if not contact_ids:
        return set()
    recycled_at = dict(
        StageChange.objects.filter(contact_id__in=contact_ids, to_stage=LifecycleStage.RECYCLED)
        .values("contact_id")
        .annotate(at=Max("changed_at"))
        .values_list("contact_id", "at")
    )
    engaged = set(contact_ids) - set(recycled_at)
    positive = {rule.matcher_key for rule in rules.engagement_rules if rule.points > 0}
    matchers = defaultdict(list)
    for matcher in Matcher.objects.filter(key__in=positive):
        matchers[matcher.activity_type_id].append(matcher)
    if not recycled_at or not matchers:
        return engaged
    since = Activity.objects.filter(
        contact_id__in=list(recycled_at), type_id__in=list(matchers), occurred_at__gt=min(recycled_at.values())
    )
    for contact_id, type_id, occurred_at, properties in since.values_list(
        "contact_id", "type_id", "occurred_at", "properties"
    ):
        if occurred_at > recycled_at[contact_id] and any(
            not m.property_name or property_matches(m.property_operator, m.property_value, properties, m.property_name)
            for m in matchers[type_id]
        ):
            engaged.add(contact_id)
    return engaged


# --- previewing a draft ----------------------------------------------------------------------

PREVIEW_CHUNK = 2000


def preview_version(version: ModelVersion, *, examples: int = 5, progress=None) -> dict:
    """What publishing `version` would do, against the scores stored now; `progress(done,
    total)` hears after each chunk of contacts. Its examples name contact ids (attach the
    contacts with preview_examples_attach).

    New MQLs: contacts in a stage scoring may qualify who reach a level under the draft
    but have none now; drops: contacts with a level now who would have none.
    """
    rules = ruleset_for(version)
    as_of = timezone.localdate()
    if connection.vendor == "postgresql":
        from .preview import preview_in_sql

        return preview_in_sql(
            rules=rules, version=version, active=active_version(), as_of=as_of, examples=examples, progress=progress
        )
    return _preview_in_python(rules, as_of, examples, progress)


def _preview_in_python(rules, as_of: date, examples: int, progress=None) -> dict:
    """preview_version by the engine, contact by contact: 2,000 at a time."""
    from .services import QUALIFYING_STAGES

    summary = preview_summary_empty()
    ids = list(Contact.objects.order_by("id").values_list("id", flat=True))
    for start in range(0, len(ids), PREVIEW_CHUNK):
        chunk = ids[start : start + PREVIEW_CHUNK]
        profiles = scoring_profiles(chunk)
        engagement = engagement_for(chunk, rules.matcher_keys)
        current = {
            row[0]: row[1:]
            for row in ContactScore.objects.filter(contact_id__in=chunk).values_list(
                "contact_id", "total", "mql_level", "fit_grade"
            )
        }
        reaching = {}  # contact id: example, for those reaching a level
        for contact_id, profile in profiles.items():
            result = evaluate(rules, profile, engagement.get(contact_id, {}), as_of)
            old_total, old_level, old_grade = current.get(contact_id, (Decimal(0), "", ""))
            summary["contacts"] += 1
            summary["changed"] += old_total != result.total
            example = {
                "contact_id": contact_id,
                "old_total": old_total,
                "new_total": result.total,
                "old_level": old_level,
                "new_level": result.mql_level,
                # A lead can reach a level through its fit grade alone, its total already past the line.
                "old_grade": old_grade,
                "new_grade": result.fit_grade,
            }
            if result.mql_level and not old_level and profile["contact.lifecycle_stage"] in QUALIFYING_STAGES:
                reaching[contact_id] = example
            elif old_level and not result.mql_level:
                summary["drops"] += 1
                _keep_example(summary["drop_examples"], example, examples)
        for contact_id in contacts_may_qualify(reaching, profiles, rules):
            summary["new_mqls"] += 1
            _keep_example(summary["new_examples"], reaching[contact_id], examples)
        if progress:
            progress(summary["contacts"], len(ids))
    return summary


def preview_summary_empty() -> dict:
    return {"contacts": 0, "changed": 0, "new_mqls": 0, "drops": 0, "new_examples": [], "drop_examples": []}


def _keep_example(examples: list, example: dict, limit: int) -> None:
    if len(examples) < limit:
        examples.append(example)


def preview_examples_attach(summary: dict) -> None:
    """Give each example of a preview its contact (None for one deleted since)."""
    examples = summary["new_examples"] + summary["drop_examples"]
    contacts = Contact.objects.select_related("account").in_bulk([e["contact_id"] for e in examples])
    for example in examples:
        example["contact"] = contacts.get(example["contact_id"])


def scores_explain(scores: Iterable[ContactScore]) -> None:
    """Give each stored score its explanation, computed on read: the engine evaluates the
    score's own rule set (its version, memoised per process) on the contact's profile and
    aggregates as of the score's day. A few queries for a whole page of scores.

    Computed, not stored, so that a rescore writes a row only when a number changes (an
    event under a capped rule, or a publish that changes no total, writes no explanation).
    The score shown is the one explained, so the contributions always add up to it: in the
    second after an ingest, before the worker has caught up, that is already the new one.
    """
    scores = [score for score in scores if score is not None]
    if not scores:
        return
    effective_versions_assign(scores)  # explained, and shown, as the version it stands for
    profiles = scoring_profiles([s.contact_id for s in scores])
    by_version: dict[int, list[ContactScore]] = defaultdict(list)
    for score in scores:
        by_version[score.version_id].append(score)
    for group in by_version.values():
        rules = ruleset_for(group[0].version)
        engagement = engagement_for([s.contact_id for s in group], rules.matcher_keys)
        for score in group:
            result = evaluate(rules, profiles[score.contact_id], engagement.get(score.contact_id, {}), score.as_of)
            score.explained_as(result)


def effective_versions_assign(scores: list[ContactScore]) -> None:
    """Give each stored score the version its numbers stand for. A publish's run leaves a
    score that stands for the version it replaces as it is when the new rules give it the same
    numbers (sql_rescore.scores_compute): once that run has finished, a score computed before
    the run started is one the run checked, and stands for the published version, and so on
    along the publishes after it (sql_rescore.StandingFor). Until then it is explained with
    the rules that computed it, as every score the run has not reached yet."""
    # replaced version id: (published version id, when its run started)
    successors = {base_id: (version_id, started) for base_id, version_id, started in publish_successions()}
    standing = {score.pk: _version_standing_for(score, successors) for score in scores}
    versions = ModelVersion.objects.select_related("scoring_model").in_bulk(set(standing.values()))
    for score in scores:
        score.version = versions[standing[score.pk]]


def publish_successions() -> list[tuple[int, int, datetime]]:
    """(replaced version id, published version id, when its run started) of every finished
    publish, oldest first: the chain along which a score left alone stands for newer versions.
    A run stopped by a newer publish (superseded) is no link: the scores it did not reach were
    never judged by its version, so the next publish evaluates them in full."""
    runs = RescoreRun.objects.filter(
        reason=RescoreRun.Reason.PUBLISH, finished_at__isnull=False, base_version__isnull=False, superseded=False
    ).exclude(version_id=F("base_version_id"))
    return list(runs.order_by("created_at").values_list("base_version_id", "version_id", "created_at"))


def _version_standing_for(score: ContactScore, successors: dict[int, tuple[int, datetime]]) -> int:
    version_id, hops = score.version_id, 0
    while version_id in successors and score.computed_at < successors[version_id][1] and hops < len(successors):
        version_id, hops = successors[version_id][0], hops + 1
    return version_id


HISTORY_SHOWN = 200


def contact_score_panel(contact: Contact) -> dict:
    """What the contact page shows of scoring: the score, its explanation and history."""
    score = ContactScore.objects.filter(contact=contact).first()  # its version: scores_explain
    scores_explain([score])
    changes = score_history(contact.pk, limit=HISTORY_SHOWN)
    # A contact's first change is its first score: from no score, stored as 0. Shown as such
    # when the list reaches back to it.
    return {
        "score": score,
        "score_changes": changes,
        "history_from_start": len(changes) < HISTORY_SHOWN,
        "mql_thresholds": mql_thresholds(),
    }


def mql_thresholds() -> list[tuple[str, int, str]]:
    """The active version's MQL levels as (name, minimum score, minimum fit grade), highest
    first: the lines a score history is drawn against."""
    version = active_version()
    if version is None:
        return []
    return list(version.mql_levels.order_by("-min_score").values_list("name", "min_score", "min_fit_grade"))


def account_score(account) -> AccountScore | None:
    return AccountScore.objects.filter(account=account).select_related("version").first()


def account_fit_rules(rules: RuleSet) -> RuleSet:
    """The rules an account's own fit is scored with: the fit rules on account fields."""
    account_rules = tuple(rule for rule in rules.fit_rules if rule.field.startswith("account."))
    return replace(rules, fit_rules=account_rules, engagement_rules=(), levels=())


def account_profile(account) -> dict:
    """The fields an account's fit rules read (as the rollups do: scoring.services.accounts_rescore)."""
    return {f"account.{name}": getattr(account, name) for name in PROFILE_ACCOUNT_FIELDS}


def account_score_explained(account, score: AccountScore | None, *, contacts: int = 5) -> dict | None:
    """Why the account scores what it does: its fit rules' contributions (the engine's, from
    its fields now, with the cap line if any) and the contacts whose engagement it sums, most
    engaged first (negative signals count too, so they are listed)."""
    if score is None:
        return None
    fit = evaluate(account_fit_rules(ruleset_for(score.version)), account_profile(account), {}, timezone.localdate())
    scores = ContactScore.objects.filter(contact__account=account).exclude(engagement=0)
    engaged = list(scores.select_related("contact").order_by("-engagement", "contact_id")[:contacts])
    # The others in one line, so that the list visibly adds up to the contacts' engagement.
    everyone = scores.aggregate(count=Count("pk"), engagement=Sum("engagement"))
    # In tenths, as every score is shown (SQLite sums decimals to fifteen digits).
    total = Decimal(everyone["engagement"] or 0).quantize(Decimal("0.1"))
    return {
        "fit": fit.contributions,
        "engaged": engaged,
        "others_count": everyone["count"] - len(engaged),
        "others_engagement": total - sum(score.engagement for score in engaged),
        "engagement_total": total,
    }


def run_new_mqls(run: RescoreRun) -> int:
    """How many leads this full rescore made MQLs (and handed to sales)."""
    return MqlQualification.objects.filter(run=run).count()


RUN_MQLS_LISTED = 25


def run_outcome(run: RescoreRun) -> dict:
    """What a run's page and the run API show beside its counts: how many MQLs it made; once
    finished, the best of them; until then, the chunks that keep failing."""
    return {
        "new_mqls": run_new_mqls(run),
        "best_new_mqls": run_best_new_mqls(run) if run.is_finished else [],
        "failing_chunks": [] if run.is_finished else run_failing_chunks(run),
    }


def run_failing_chunks(run: RescoreRun) -> list[RescoreChunk]:
    """The run's chunks whose last attempt failed and that are not done yet, first contacts first."""
    return list(run.chunks.exclude(last_error="").exclude(status=RescoreChunk.Status.DONE))


def run_best_new_mqls(run: RescoreRun) -> list[MqlQualification]:
    """The leads this full rescore made MQLs, best scored first (at most RUN_MQLS_LISTED), with
    their contacts as they are now (stage, rep, account)."""
    qualifications = MqlQualification.objects.filter(run=run).select_related("contact__account", "contact__owner")
    return list(qualifications.order_by("-total", "contact_id")[:RUN_MQLS_LISTED])


def score_history(contact_id: int, *, limit: int | None = None) -> list[ScoreChange]:
    """The contact's score changes, newest first: its ScoreChange rows and its entries in the
    full rescores' batches (ScoreChangeBatch), as ScoreChange instances (those from a batch
    are not saved)."""
    rows = ScoreChange.objects.filter(contact_id=contact_id).order_by("-changed_at", "-id")
    changes = list(rows[:limit] if limit else rows)
    if connection.vendor == "postgresql":
        changes += _batched_changes(contact_id, limit)
        changes.sort(key=lambda change: (change.changed_at, change.pk or 0), reverse=True)
    return changes[:limit] if limit else changes


def _batched_changes(contact_id: int, limit: int | None) -> list[ScoreChange]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT b.version_id, b.changed_at, b.reason, b.old_tenths[i], b.new_tenths[i],
                    substr(b.fit_grades, i, 1)
                FROM {ScoreChangeBatch._meta.db_table} b CROSS JOIN LATERAL array_position(b.contact_ids, %s) AS i
                WHERE b.bucket = %s AND i IS NOT NULL ORDER BY b.changed_at DESC, b.id DESC
                {"LIMIT %s" if limit else ""}""",
            [contact_id, contact_id // ScoreChangeBatch.BUCKET] + ([limit] if limit else []),
        )
        return [
            ScoreChange(
                contact_id=contact_id,
                version_id=version_id,
                changed_at=changed_at,
                reason=reason,
                old_total=Decimal(old).scaleb(-1),
                new_total=Decimal(new).scaleb(-1),
                delta=Decimal(new - old).scaleb(-1),
                fit_grade=fit_grade,
            )
            for version_id, changed_at, reason, old, new, fit_grade in cursor.fetchall()
        ]
