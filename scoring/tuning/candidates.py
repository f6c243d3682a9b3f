"""Candidate rules: the current version's rules plus rules the labelled data could support.

Every candidate is a rule our engine can run, so the feature a candidate contributes to
the regression is exactly what the engine would count: the engine itself computes them
(`feature_matrix`), with 1 point per fit match or per engagement occurrence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from django.conf import settings

from leads.models import ActivityType, CustomAttribute

from ..engine import EngagementRuleSpec, FitRuleSpec, RuleSet, _number
from ..matchers import matcher_key
from ..models import DailyEngagement, ModelVersion
from ..selectors import evaluate_contacts

UNCAPPED = 10**9
QUANTILES = (0.2, 0.4, 0.6, 0.8)
VALUES_PER_FIELD = 15
# Engagement candidates: (look-back days, most occurrences counted).
ENGAGEMENT_WINDOWS = ((30, 3), (180, 5))
# Never learned from: identifiers, and fields that describe the outcome rather than the lead.
ALWAYS_EXCLUDED = {"email", "account_id", "contact.lifecycle_stage", "account.name", "account.domain"}
FEATURE_CHUNK = 2000


@dataclass(frozen=True, eq=False)
class Candidate:
    kind: str  # "fit" | "engagement"
    name: str
    origin: str  # "current" (a rule of the base version) | "data" (generated)
    field: str = ""
    operator: str = ""
    value: Any = None
    activity_type_id: int | None = None
    activity_type_key: str = ""
    property_name: str = ""
    property_operator: str = ""
    property_value: str = ""
    window_days: int | None = None
    half_life_days: int | None = None
    occurrence_cap: int | None = None
    current_points: int | None = None
    rule_id: int | None = None  # the base version's rule it came from

    @property
    def matcher_key(self) -> str:
        return matcher_key(self.activity_type_key, self.property_name, self.property_operator, self.property_value)

    @property
    def signature(self) -> tuple:
        """What the rule tests, so a generated rule identical to a current one is dropped."""
        if self.kind == "fit":
            return ("fit", self.field, self.operator, repr(self.value))
        return ("engagement", self.matcher_key, self.window_days, self.half_life_days, self.occurrence_cap)


def excluded_fields() -> set[str]:
    return ALWAYS_EXCLUDED | set(getattr(settings, "SCORING_TUNING_EXCLUDED_FIELDS", []))


def current_candidates(version: ModelVersion) -> list[Candidate]:
    found = [
        Candidate(
            "fit",
            r.name,
            "current",
            field=r.field,
            operator=r.operator,
            value=r.value,
            current_points=r.points,
            rule_id=r.pk,
        )
        for r in version.fit_rules.all()
    ]
    for r in version.engagement_rules.select_related("activity_type"):
        cap = -(-r.cap // abs(r.points)) if r.cap is not None and r.points else None
        found.append(
            Candidate(
                "engagement",
                r.name,
                "current",
                activity_type_id=r.activity_type_id,
                activity_type_key=r.activity_type.key,
                property_name=r.property_name,
                property_operator=r.property_operator,
                property_value=r.property_value,
                window_days=r.window_days,
                half_life_days=r.half_life_days,
                occurrence_cap=cap,
                current_points=r.points,
                rule_id=r.pk,
            )
        )
    return found


def data_candidates(profiles: Iterable[dict], contact_ids: list[int], *, min_support: int) -> list[Candidate]:
    """Fit rules for attribute values and numeric bins with enough support, and engagement
    rules for activity types enough contacts did."""
    profiles = list(profiles)
    labels = _field_labels()
    excluded = excluded_fields()
    fields = sorted({key for profile in profiles for key in profile} - excluded)
    found = []
    for field in fields:
        values = [profile.get(field) for profile in profiles]
        found += _field_candidates(field, labels.get(field, _default_label(field)), values, min_support)
    return found + _engagement_candidates(contact_ids, min_support)


def _field_candidates(field: str, label: str, values: list, min_support: int) -> list[Candidate]:
    present = [v for v in values if v is not None and str(v).strip() != ""]
    empty = len(values) - len(present)
    found = []
    if min_support <= empty <= len(values) - min_support:
        found.append(Candidate("fit", f"{label} is empty", "data", field=field, operator="is_empty"))
    if not present:
        return found
    if all(isinstance(v, bool) for v in present):
        trues = sum(present)
        if min_support <= trues <= len(values) - min_support:
            found.append(Candidate("fit", f"{label}: yes", "data", field=field, operator="equals", value=True))
        return found
    numbers = [_number(v) for v in present]
    if sum(n is not None for n in numbers) >= 0.9 * len(present):
        return found + _numeric_candidates(field, label, [n for n in numbers if n is not None], min_support)
    counts = Counter(str(v).strip().lower() for v in present)
    if len(counts) > 0.5 * len(present):
        return found  # an identifier or free text: no value recurs enough to learn from
    for text, support in counts.most_common(VALUES_PER_FIELD):
        if min_support <= support <= len(values) - min_support:
            found.append(
                Candidate("fit", f"{label} is {text}"[:120], "data", field=field, operator="equals", value=text)
            )
    return found


def _numeric_candidates(field: str, label: str, numbers: list[float], min_support: int) -> list[Candidate]:
    found, seen = [], set()
    for q in QUANTILES:
        cut = float(np.quantile(numbers, q))
        support = sum(n >= cut for n in numbers)
        if cut in seen or not min_support <= support <= len(numbers) - min_support:
            continue
        seen.add(cut)
        shown = f"{cut:g}"
        found.append(
            Candidate("fit", f"{label} at least {shown}", "data", field=field, operator="between", value=[cut, None])
        )
    return found


def _engagement_candidates(contact_ids: list[int], min_support: int) -> list[Candidate]:
    doers = Counter(
        DailyEngagement.objects.filter(contact_id__in=contact_ids, matcher__property_name="")
        .values_list("matcher__activity_type_id", "contact_id")
        .distinct()
        .values_list("matcher__activity_type_id", flat=True)
    )
    types = ActivityType.objects.in_bulk([type_id for type_id, n in doers.items() if n >= min_support])
    return [
        Candidate(
            "engagement",
            f"{activity_type.name} (last {days} days)",
            "data",
            activity_type_id=activity_type.pk,
            activity_type_key=activity_type.key,
            window_days=days,
            occurrence_cap=cap,
        )
        for activity_type in sorted(types.values(), key=lambda t: t.key)
        for days, cap in ENGAGEMENT_WINDOWS
    ]


def _field_labels() -> dict[str, str]:
    return {f"attribute.{a.key}": a.label for a in CustomAttribute.objects.all()}


def _default_label(field: str) -> str:
    return field.split(".", 1)[-1].replace("_", " ").capitalize()


def merge_candidates(current: list[Candidate], generated: list[Candidate]) -> list[Candidate]:
    """The current rules, then generated ones that test something new under a new name."""
    signatures = {c.signature for c in current}
    names = {c.name for c in current}
    merged = list(current)
    for candidate in generated:
        if candidate.signature in signatures or candidate.name in names:
            continue
        signatures.add(candidate.signature)
        names.add(candidate.name)
        merged.append(candidate)
    return merged


def candidate_ruleset(candidates: list[Candidate]) -> RuleSet:
    """Every candidate as a 1-point rule, uncapped overall: evaluating it yields the features."""
    fit = tuple(
        FitRuleSpec(i, c.name, c.field, c.operator, c.value, 1) for i, c in enumerate(candidates) if c.kind == "fit"
    )
    engagement = tuple(
        EngagementRuleSpec(i, c.name, c.matcher_key, 1, c.occurrence_cap, c.window_days, c.half_life_days)
        for i, c in enumerate(candidates)
        if c.kind == "engagement"
    )
    return RuleSet(0, "candidates", fit, engagement, (), UNCAPPED, UNCAPPED, 0, 0, 0)


def feature_matrix(
    candidates: list[Candidate],
    contact_ids: list[int],
    *,
    as_of: dict[int, date] | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Row per contact, column per candidate: matches (0/1) or occurrences counted
    (engagement), with engagement counted as of each contact's day in `as_of` (default today)."""
    matrix = np.zeros((len(contact_ids), len(candidates)))
    results = evaluate_contacts(candidate_ruleset(candidates), contact_ids, as_of=as_of, chunk=FEATURE_CHUNK)
    for row, (_, result) in enumerate(results):
        for part in result.contributions:
            matrix[row, part.rule_id] = float(part.points)
        if progress and ((row + 1) % FEATURE_CHUNK == 0 or row + 1 == len(contact_ids)):
            progress(row + 1)
    return matrix
