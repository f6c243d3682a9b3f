"""The pure scoring function: a rule set, a contact's profile and its engagement → a score.

No database here. Both the incremental path (per-contact daily aggregates, see
scoring.services) and the from-scratch path (every activity of the contact, see
scoring.selectors.score_from_scratch) call `evaluate`, so they can only differ if
their inputs differ — which the property test checks.

Arithmetic is exact: a decaying occurrence weighs 0.5 ** (age / half-life) rounded to
six decimals, and sums are Decimals, so counting three events on one day (3 × w) and
adding them one by one (w + w + w) give the same number. Each rule's contribution is
rounded to one decimal, and the score is the sum of the contributions shown — so the
explanation always adds up to the score exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from leads.normalise import FREE_MAIL_DOMAINS, email_domain

ONE_DECIMAL = Decimal("0.1")
WEIGHT_PLACES = Decimal("0.000001")
GRADE_ORDER = {"A": 0, "B": 1, "C": 2, "D": 3}


@dataclass(frozen=True)
class FitRuleSpec:
    id: int
    name: str
    field: str
    operator: str
    value: Any
    points: int


@dataclass(frozen=True)
class EngagementRuleSpec:
    id: int
    name: str
    matcher_key: str
    points: int
    cap: int | None = None
    window_days: int | None = None
    half_life_days: int | None = None


@dataclass(frozen=True)
class LevelSpec:
    name: str
    min_score: int
    min_fit_grade: str


@dataclass(frozen=True)
class RuleSet:
    version_id: int
    version_label: str
    fit_rules: tuple[FitRuleSpec, ...]
    engagement_rules: tuple[EngagementRuleSpec, ...]
    levels: tuple[LevelSpec, ...]
    fit_cap: int = 60
    engagement_cap: int = 100
    grade_a_min: int = 40
    grade_b_min: int = 25
    grade_c_min: int = 10

    @property
    def matcher_keys(self) -> set[str]:
        return {rule.matcher_key for rule in self.engagement_rules}


@dataclass
class Contribution:
    kind: str  # "fit" | "engagement" | "cap"
    rule: str
    facts: str
    points: Decimal
    rule_id: int | None = None

    def as_json(self) -> dict:
        return {
            "kind": self.kind,
            "rule": self.rule,
            "rule_id": self.rule_id,
            "facts": self.facts,
            "points": str(self.points),
        }


@dataclass
class ScoreResult:
    fit: Decimal
    engagement: Decimal
    fit_grade: str
    mql_level: str
    contributions: list[Contribution] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return self.fit + self.engagement

    @property
    def fit_uncapped(self) -> Decimal:
        """The fit rules' points before the fit cap: what a rule change adjusts (see
        scoring.sql_rescore: a publish re-evaluates only the rules it changed)."""
        return sum((c.points for c in self.contributions if c.kind == "fit"), Decimal(0))

    @property
    def engagement_uncapped(self) -> Decimal:
        """The engagement rules' points (each capped and rounded) before the engagement cap."""
        return sum((c.points for c in self.contributions if c.kind == "engagement"), Decimal(0))

    def top_reasons(self, count: int = 3) -> list[Contribution]:
        positive = [c for c in self.contributions if c.points > 0 and c.kind != "cap"]
        return sorted(positive, key=lambda c: c.points, reverse=True)[:count]


# Engagement is given as {matcher_key: {day: count}}.
Engagement = Mapping[str, Mapping[date, int]]


@dataclass(frozen=True)
class Tally:
    """What an engagement rule reads of a contact on a day: how many matching occurrences
    count (in its window, if any), and their sum weighted by decay (each weighs 1 without)."""

    occurrences: int
    weighted: Decimal


def evaluate(rules: RuleSet, profile: Mapping[str, Any], engagement: Engagement, as_of: date) -> ScoreResult:
    tallies = [engagement_tally(rule, engagement.get(rule.matcher_key, {}), as_of) for rule in rules.engagement_rules]
    return evaluate_tallied(rules, profile, tallies)


def evaluate_tallied(rules: RuleSet, profile: Mapping[str, Any], tallies: list[Tally]) -> ScoreResult:
    """`evaluate`, given each engagement rule's tally (in the rules' order) instead of the
    daily counts: what a full rescore has at hand (scoring.sql_rescore.engagement_tallies)."""
    fit_parts = [part for rule in rules.fit_rules if (part := _fit_contribution(rule, profile))]
    fit = _capped_sum(fit_parts, rules.fit_cap, "Fit cap")
    engagement_parts = [
        part
        for rule, tally in zip(rules.engagement_rules, tallies, strict=True)
        if (part := _engagement_contribution(rule, tally))
    ]
    engaged = _capped_sum(engagement_parts, rules.engagement_cap, "Engagement cap")
    fit_total = sum((p.points for p in fit), Decimal(0))
    engagement_total = sum((p.points for p in engaged), Decimal(0))
    grade = fit_grade(rules, fit_total)
    return ScoreResult(
        fit=fit_total,
        engagement=engagement_total,
        fit_grade=grade,
        mql_level=mql_level(rules, fit_total + engagement_total, grade),
        contributions=fit + engaged,
    )


def fit_grade(rules: RuleSet, fit_points: Decimal) -> str:
    if fit_points >= rules.grade_a_min:
        return "A"
    if fit_points >= rules.grade_b_min:
        return "B"
    if fit_points >= rules.grade_c_min:
        return "C"
    return "D"


def mql_level(rules: RuleSet, total: Decimal, grade: str) -> str:
    """The highest level whose score and fit-grade bars the contact clears, or ''."""
    for level in sorted(rules.levels, key=lambda lv: lv.min_score, reverse=True):
        if total >= level.min_score and GRADE_ORDER[grade] <= GRADE_ORDER[level.min_fit_grade]:
            return level.name
    return ""


def _capped_sum(parts: list[Contribution], cap: int, label: str) -> list[Contribution]:
    """The parts, plus a "cap" line when they add up to more than the cap, or to less than its
    negative: negative signals take a dimension down to -cap at most, as positive ones take
    it up to the cap (an uncapped negative rule times thousands of events is no score)."""
    total = sum((p.points for p in parts), Decimal(0))
    if total > cap:
        return [*parts, Contribution("cap", label, f"{total} points, capped at {cap}", Decimal(cap) - total)]
    if total < -cap:
        return [*parts, Contribution("cap", label, f"{total} points, floored at {-cap}", Decimal(-cap) - total)]
    return parts


# --- engagement --------------------------------------------------------------------------


def decay_weight(age_days: int, half_life_days: int) -> Decimal:
    return Decimal(0.5 ** (age_days / half_life_days)).quantize(WEIGHT_PLACES)


def engagement_tally(rule: EngagementRuleSpec, days: Mapping[date, int], as_of: date) -> Tally:
    occurrences, weighted = 0, Decimal(0)
    for day, count in days.items():
        age = (as_of - day).days
        if age < 0 or (rule.window_days is not None and age >= rule.window_days):
            continue  # in the future of as_of, or outside the look-back window
        weight = decay_weight(age, rule.half_life_days) if rule.half_life_days else Decimal(1)
        occurrences += count
        weighted += count * weight
    return Tally(occurrences, weighted)


def _engagement_contribution(rule: EngagementRuleSpec, tally: Tally) -> Contribution | None:
    occurrences, weighted = tally.occurrences, tally.weighted
    if not occurrences:
        return None
    points = weighted * rule.points
    facts = f"{occurrences} × {rule.points:+d}"
    if rule.window_days:
        facts += f" in the last {rule.window_days} days"
    if rule.half_life_days:
        facts += f", fading with a {rule.half_life_days}-day half-life"
    if rule.cap is not None and abs(points) > rule.cap:
        points = Decimal(rule.cap) * (1 if points > 0 else -1)
        facts += f", capped at {rule.cap}"
    points = points.quantize(ONE_DECIMAL)
    if not points:
        return None
    return Contribution("engagement", rule.name, facts, points, rule.id)


# --- fit ---------------------------------------------------------------------------------


def _fit_contribution(rule: FitRuleSpec, profile: Mapping[str, Any]) -> Contribution | None:
    actual = profile.get(rule.field)
    matched, facts = fit_test(rule.operator, rule.value, actual, profile)
    if not matched:
        return None
    return Contribution("fit", rule.name, facts, Decimal(rule.points).quantize(ONE_DECIMAL), rule.id)


def _is_empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _words(value) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [str(v).strip().lower() for v in values if not _is_empty(v)]


def _number(value) -> float | None:
    if isinstance(value, bool) or _is_empty(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def fit_test(operator: str, expected, actual, profile: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether `actual` passes the test, and the fact to show when it does."""
    shown = f"'{actual}'"
    text = "" if _is_empty(actual) else str(actual).strip().lower()
    if operator == "is_set":
        return not _is_empty(actual), f"is {shown}"
    if operator == "is_empty":
        return _is_empty(actual), "is empty"
    if operator in ("free_mail", "domain_in"):
        domain = email_domain(profile.get("email"))
        if operator == "free_mail":
            return domain in FREE_MAIL_DOMAINS, f"email domain {domain} is free-mail"
        return domain in set(_words(expected)), f"email domain {domain} is listed"
    if _is_empty(actual):
        return False, ""
    if operator == "equals":
        number, wanted = _number(actual), _number(expected)
        if number is not None and wanted is not None:
            return number == wanted, f"is {shown}"
        if isinstance(actual, bool) or isinstance(expected, bool):
            return str(actual).lower() == str(expected).lower(), f"is {shown}"
        return text in _words(expected)[:1], f"is {shown}"
    if operator == "one_of":
        return text in _words(expected), f"is {shown}"
    if operator == "contains":
        hit = next((w for w in _words(expected) if w in text), None)
        return hit is not None, f"{shown} contains '{hit}'"
    if operator == "starts_with":
        hit = next((w for w in _words(expected) if text.startswith(w)), None)
        return hit is not None, f"{shown} starts with '{hit}'"
    if operator == "between":
        number = _number(actual)
        low, high = (list(expected) + [None, None])[:2] if isinstance(expected, list) else (None, None)
        if number is None:
            return False, ""
        inside = (low is None or number >= float(low)) and (high is None or number <= float(high))
        return inside, f"{shown} is between {low if low is not None else '…'} and {high if high is not None else '…'}"
    raise ValueError(f"Unknown fit operator {operator!r}")


def property_matches(operator: str, expected: str, properties: Mapping[str, Any], name: str) -> bool:
    """An activity's property test (engagement rule filter), case-insensitive."""
    value = properties.get(name) if isinstance(properties, Mapping) else None
    if _is_empty(value):
        return False
    value, expected = str(value).lower(), (expected or "").lower()
    if operator == "contains":
        return expected in value
    if operator == "starts_with":
        return value.startswith(expected)
    return value == expected
