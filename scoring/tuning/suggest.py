"""Suggest a model: labels → candidates → scorecard → threshold → draft version → backtest."""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable

import numpy as np
from django.db import transaction
from django.utils import timezone

from ..models import EngagementRule, FitRule, ModelSuggestion, ModelVersion, MqlLevel, ScoringModel
from ..selectors import evaluate_contacts, ruleset_for, scoring_profiles
from ..versions import version_copy, version_diff
from .candidates import Candidate, current_candidates, data_candidates, feature_matrix, merge_candidates
from .labels import decision_days, stratified_split, training_labels
from .scorecard import Cut, Scorecard, fit_scorecard, roc_auc, threshold_for_precision, threshold_for_volume

MIN_LABELS = 200
MIN_PER_CLASS = 50
HISTOGRAM_BINS = 20


class TuningError(ValueError):
    pass


def label_shortfall(labels: dict[int, int]) -> str:
    """Why these labels are too few to learn from, or '' if they are enough."""
    good = sum(labels.values())
    bad = len(labels) - good
    missing = max(MIN_LABELS - len(labels), MIN_PER_CLASS - good, MIN_PER_CLASS - bad, 0)
    if not missing:
        return ""
    return (
        f"There are {len(labels)} labelled leads ({good} good, {bad} bad). A suggestion needs at least "
        f"{MIN_LABELS}, with at least {MIN_PER_CLASS} of each, to learn more than noise: record about "
        f"{missing} more hand-off decisions, quality ratings or outcomes"
        + (" on good leads" if good < MIN_PER_CLASS else " on bad leads" if bad < MIN_PER_CLASS else "")
        + "."
    )


def suggestion_request(
    *,
    scoring_model: ScoringModel,
    target_kind: str,
    target_value: float,
    max_rules: int = 25,
    points_to_double: int = 20,
    user=None,
) -> ModelSuggestion:
    """Record the request and queue the work once the transaction commits."""
    from ..tasks import suggest_model

    base = scoring_model.versions.filter(status=ModelVersion.Status.ACTIVE).first()
    if base is None:
        raise TuningError("The model has no active version to start from.")
    _require_no_draft(scoring_model)
    suggestion = ModelSuggestion.objects.create(
        scoring_model=scoring_model,
        base_version=base,
        target_kind=target_kind,
        target_value=target_value,
        max_rules=max_rules,
        points_to_double=points_to_double,
        created_by=user,
        stage="Waiting for a worker",
    )
    transaction.on_commit(lambda: suggest_model.delay(suggestion.pk))
    return suggestion


def _require_no_draft(scoring_model: ScoringModel) -> None:
    draft = scoring_model.versions.filter(status=ModelVersion.Status.DRAFT).first()
    if draft:
        raise TuningError(
            f"{scoring_model} already has a draft (v{draft.number}). Publish it or delete it before asking "
            "for a suggestion, which becomes a new draft."
        )


def suggestion_run(*, suggestion_id: int) -> bool:
    """Claim a queued suggestion and compute it; False if another worker has it or it is done."""
    claimed = ModelSuggestion.objects.filter(pk=suggestion_id, status=ModelSuggestion.Status.QUEUED).update(
        status=ModelSuggestion.Status.RUNNING, stage="Reading labels", progress=1
    )
    if not claimed:
        return False
    suggestion = ModelSuggestion.objects.select_related("scoring_model", "base_version").get(pk=suggestion_id)
    try:
        suggestion_compute(suggestion)
    except Exception as error:  # recorded for the marketer; the traceback goes to the worker log
        traceback.print_exc()
        _finish(suggestion, ModelSuggestion.Status.FAILED, message=str(error) or error.__class__.__name__)
    return True


def _progress(suggestion: ModelSuggestion, percent: float, stage: str, *, notify=None) -> None:
    suggestion.progress, suggestion.stage = int(percent), stage
    suggestion.save(update_fields=["progress", "stage"])
    if notify:
        notify(suggestion)


def _finish(suggestion: ModelSuggestion, status: str, *, message: str = "") -> None:
    suggestion.status, suggestion.message = status, message
    suggestion.progress, suggestion.finished_at = 100, timezone.now()
    suggestion.stage = ModelSuggestion.Status(status).label
    suggestion.save(update_fields=["status", "message", "progress", "finished_at", "stage", "result", "draft"])


def suggestion_compute(
    suggestion: ModelSuggestion, *, progress: Callable[[ModelSuggestion], None] | None = None
) -> ModelSuggestion:
    """Fit, draft and backtest; `progress` is told of each step (besides the saved fields)."""

    def step(percent: float, stage: str) -> None:
        _progress(suggestion, percent, stage, notify=progress)

    labels = training_labels()
    shortfall = label_shortfall(labels)
    if shortfall:
        _finish(suggestion, ModelSuggestion.Status.INSUFFICIENT, message=shortfall)
        return suggestion
    training, held_out = stratified_split(labels, holdout=float(suggestion.holdout), seed=suggestion.seed)
    step(3, "Generating candidate rules")
    min_support = max(10, round(0.005 * len(training)))
    generated = data_candidates(scoring_profiles(training).values(), training, min_support=min_support)
    candidates = merge_candidates(current_candidates(suggestion.base_version), generated)
    step(5, f"Counting {len(candidates)} candidate rules on {len(training)} leads")
    days = decision_days(training + held_out)
    features = feature_matrix(
        candidates,
        training,
        as_of=days,
        progress=lambda done: step(5 + 55 * done / len(training), f"Counting {len(candidates)} candidate rules"),
    )
    outcomes = np.array([labels[cid] for cid in training])
    step(62, "Fitting the scorecard (cross-validated)")
    card = fit_scorecard(
        features,
        outcomes,
        max_rules=suggestion.max_rules,
        points_to_double=suggestion.points_to_double,
        seed=suggestion.seed,
    )
    if not card.columns:
        raise TuningError("No rule separates good from bad leads in the labelled data.")
    step(75, "Choosing the MQL threshold")
    scores = features[:, card.columns] @ np.array(card.points, dtype=float)
    cut = _choose_threshold(suggestion, scores, outcomes)
    fit_columns = [j for j, c in zip(card.columns, card.points, strict=True) if candidates[j].kind == "fit"]
    fit_points = features[:, fit_columns] @ np.array(
        [p for j, p in zip(card.columns, card.points, strict=True) if candidates[j].kind == "fit"], dtype=float
    )
    with transaction.atomic():
        draft = draft_from_scorecard(
            suggestion, card, candidates, features, scores=scores, fit_points=fit_points, cut=cut
        )
    step(82, f"Backtesting on {len(held_out)} held-out leads")
    suggestion.draft = draft
    suggestion.result = {
        "labels": {"total": len(labels), "good": int(sum(labels.values())), "training": len(training)},
        "holdout_ids": held_out,
        "candidates": len(candidates),
        "regularisation": card.regularisation,
        "threshold": _cut_json(cut),
        "evidence": rule_evidence(card, candidates, features, outcomes),
        "backtest": backtest(suggestion.base_version, draft, held_out, labels, days),
    }
    _finish(suggestion, ModelSuggestion.Status.DONE)
    return suggestion


def _choose_threshold(suggestion: ModelSuggestion, scores: np.ndarray, outcomes: np.ndarray) -> Cut:
    target = float(suggestion.target_value)
    if suggestion.target_kind == ModelSuggestion.Target.VOLUME:
        return threshold_for_volume(scores, outcomes, target)
    return threshold_for_precision(scores, outcomes, target)


def _cut_json(cut: Cut) -> dict:
    return {
        "threshold": math.ceil(cut.threshold),
        "precision": cut.precision,
        "recall": cut.recall,
        "share": cut.share,
        "met": cut.met,
    }


# --- the draft -------------------------------------------------------------------------------


def draft_from_scorecard(
    suggestion: ModelSuggestion,
    card: Scorecard,
    candidates: list[Candidate],
    features: np.ndarray,
    *,
    scores: np.ndarray,
    fit_points: np.ndarray,
    cut: Cut,
) -> ModelVersion:
    """A new draft holding the scorecard's rules, caps wide enough never to clip them, fit
    grades at the training quartiles of fit points, and the MQL levels at the threshold."""
    _require_no_draft(suggestion.scoring_model)
    base = suggestion.base_version
    draft = version_copy(
        source=base,
        scoring_model=suggestion.scoring_model,
        user=suggestion.created_by,
        note=f"Suggested from {len(scores)} labelled leads ({suggestion.get_target_kind_display().lower()} "
        f"{suggestion.target_value}); {suggestion.points_to_double} points double the odds",
    )
    draft.fit_rules.all().delete()
    draft.engagement_rules.all().delete()
    draft.mql_levels.all().delete()
    fit_total_cap, engagement_total_cap = 0, 0
    for column, points in zip(card.columns, card.points, strict=True):
        candidate = candidates[column]
        if candidate.kind == "fit":
            FitRule.objects.create(
                version=draft,
                name=candidate.name,
                field=candidate.field,
                operator=candidate.operator,
                value=candidate.value,
                points=points,
            )
            fit_total_cap += max(points, 0)
        else:
            most = candidate.occurrence_cap or max(1, math.ceil(features[:, column].max()))
            EngagementRule.objects.create(
                version=draft,
                name=candidate.name,
                activity_type_id=candidate.activity_type_id,
                property_name=candidate.property_name,
                property_operator=candidate.property_operator,
                property_value=candidate.property_value,
                points=points,
                cap=most * abs(points) if candidate.occurrence_cap else None,
                window_days=candidate.window_days,
                half_life_days=candidate.half_life_days,
            )
            engagement_total_cap += max(points, 0) * most
    draft.fit_cap = max(fit_total_cap, 1)
    draft.engagement_cap = max(engagement_total_cap, 1)
    draft.grade_a_min, draft.grade_b_min, draft.grade_c_min = _grade_cuts(fit_points)
    draft.save(update_fields=["fit_cap", "engagement_cap", "grade_a_min", "grade_b_min", "grade_c_min"])
    _levels_at(draft, base, scores, cut)
    return draft


def _grade_cuts(fit_points: np.ndarray) -> tuple[int, int, int]:
    """Grades A–D at the quartiles of the training leads' fit points, kept strictly apart."""
    c, b, a = (math.ceil(float(np.quantile(fit_points, q))) for q in (0.25, 0.5, 0.75))
    b = max(b, c + 1)
    a = max(a, b + 1)
    return a, b, c


def _levels_at(draft: ModelVersion, base: ModelVersion, scores: np.ndarray, cut: Cut) -> None:
    """The base version's level names, lowest at the threshold; each higher one flags half
    as many leads as the one below it. The fit grade is already in the points, so no
    level asks for a minimum grade."""
    names = list(base.mql_levels.order_by("min_score").values_list("name", flat=True)) or ["MQL"]
    dummy = np.zeros(len(scores))
    threshold = math.ceil(cut.threshold)
    for step, name in enumerate(names):
        if step:
            threshold = max(
                threshold + 1, math.ceil(threshold_for_volume(scores, dummy, cut.share / 2**step).threshold)
            )
        MqlLevel.objects.create(version=draft, name=name, min_score=threshold, min_fit_grade="D")


# --- evidence and backtest -------------------------------------------------------------------


def rule_evidence(card: Scorecard, candidates: list[Candidate], features: np.ndarray, outcomes: np.ndarray) -> dict:
    """Per candidate rule that was kept or was in the base version: how often it fired on
    training leads, their good-lead rate when it fired and when not, and its points."""
    kept = dict(zip(card.columns, zip(card.coefficients, card.points, strict=True), strict=True))
    evidence = {}
    for column, candidate in enumerate(candidates):
        if column not in kept and candidate.origin != "current":
            continue
        fired = features[:, column] > 0
        coefficient, points = kept.get(column, (None, 0))
        evidence[candidate.name] = {
            "kind": candidate.kind,
            "origin": candidate.origin,
            "before": candidate.current_points,
            "points": points,
            "coefficient": coefficient,
            "fired": int(fired.sum()),
            "rate_fired": float(outcomes[fired].mean()) if fired.any() else None,
            "rate_not": float(outcomes[~fired].mean()) if (~fired).any() else None,
        }
    return evidence


def scores_for(
    version: ModelVersion, contact_ids: list[int], as_of: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(totals, MQL flags) the engine gives these contacts under `version`, each as of its
    day in `as_of` (default today)."""
    results = [result for _, result in evaluate_contacts(ruleset_for(version), contact_ids, as_of=as_of)]
    return np.array([float(r.total) for r in results]), np.array([bool(r.mql_level) for r in results])


def model_metrics(totals: np.ndarray, flags: np.ndarray, outcomes: np.ndarray) -> dict:
    hits = int((flags & (outcomes == 1)).sum())
    return {
        "auc": roc_auc(totals, outcomes),
        "precision": hits / int(flags.sum()) if flags.any() else None,
        "recall": hits / int(outcomes.sum()) if outcomes.any() else None,
        "mql_share": float(flags.mean()) if len(flags) else 0.0,
        "mqls": int(flags.sum()),
        "histogram": _histogram(totals, outcomes),
    }


def backtest(base: ModelVersion, draft: ModelVersion, held_out: list[int], labels: dict[int, int], days: dict) -> dict:
    """Both versions scored by the engine on the held-out leads, as of the day each was judged."""
    outcomes = np.array([labels[cid] for cid in held_out])
    results = {"leads": len(held_out), "good": int(outcomes.sum())}
    for key, version in (("current", base), ("suggested", draft)):
        totals, flags = scores_for(version, held_out, days)
        results[key] = model_metrics(totals, flags, outcomes)
    return results


def _histogram(totals: np.ndarray, outcomes: np.ndarray) -> dict:
    """Score distribution of good and bad held-out leads, as shares of each group."""
    if not len(totals):
        return {"edges": [], "good": [], "bad": []}
    low, high = float(totals.min()), float(totals.max())
    edges = np.linspace(low, high if high > low else low + 1, HISTOGRAM_BINS + 1)
    good, _ = np.histogram(totals[outcomes == 1], bins=edges)
    bad, _ = np.histogram(totals[outcomes == 0], bins=edges)
    return {
        "edges": [round(float(e), 1) for e in edges],
        "good": [float(g) / max(1, int((outcomes == 1).sum())) for g in good],
        "bad": [float(b) / max(1, int((outcomes == 0).sum())) for b in bad],
    }


def suggestion_diff(suggestion: ModelSuggestion) -> list[dict]:
    """The draft against its base, each change with the evidence behind it."""
    if suggestion.draft is None:
        return []
    evidence = suggestion.result.get("evidence", {})
    order = {"added": 0, "changed": 1, "removed": 2}
    diffs = sorted(
        version_diff(suggestion.base_version, suggestion.draft),
        key=lambda d: (d.kind in ("level", "setting"), order[d.change], d.kind, d.name),
    )
    return [{"diff": diff, "evidence": evidence.get(diff.name)} for diff in diffs]
