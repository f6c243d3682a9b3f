"""A points scorecard: regularised logistic regression turned into integer points.

Scaling: `points_to_double` points double the odds of a good outcome. A coefficient β
(log-odds per unit of a feature) becomes round(β × points_to_double / ln 2) points, so
with the default 10, a rule worth +10 doubles the odds and one worth −10 halves them.
The intercept only shifts every score by the same amount, so it is left out and the
MQL threshold is chosen on the points themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

C_GRID = tuple(float(c) for c in np.logspace(-2.5, 1, 10))


@dataclass
class Scorecard:
    columns: list[int]  # indices into the candidate list
    coefficients: list[float]  # log-odds per unit of each column's feature
    points: list[int]
    regularisation: float  # the C chosen by cross-validation


def points_for(coefficient: float, points_to_double: int) -> int:
    return round(coefficient * points_to_double / math.log(2))


def fit_scorecard(
    features: np.ndarray, labels: np.ndarray, *, max_rules: int, points_to_double: int, seed: int
) -> Scorecard:
    """Select at most `max_rules` features with an L1 path, refit them lightly (L2), scale to points."""
    varying = [j for j in range(features.shape[1]) if features[:, j].std() > 0]
    if not varying:
        return Scorecard([], [], [], 0.0)
    scaled, scale = _standardise(features[:, varying])
    regularisation = _best_c(scaled, labels, seed)
    lasso = LogisticRegression(C=regularisation, l1_ratio=1.0, solver="liblinear", max_iter=5000)
    lasso.fit(scaled, labels)
    strength = np.abs(lasso.coef_[0])
    ranked = [j for j in np.argsort(-strength, kind="stable") if strength[j] > 0][:max_rules]
    kept = sorted(ranked)
    if not kept:
        return Scorecard([], [], [], regularisation)
    ridge = LogisticRegression(C=1.0, max_iter=5000)
    ridge.fit(scaled[:, kept], labels)
    coefficients = [float(b) / scale[j] for b, j in zip(ridge.coef_[0], kept, strict=True)]
    columns, coefs, points = [], [], []
    for j, beta in zip(kept, coefficients, strict=True):
        worth = points_for(beta, points_to_double)
        if worth:
            columns.append(varying[j])
            coefs.append(beta)
            points.append(worth)
    return Scorecard(columns, coefs, points, regularisation)


def _standardise(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, scale = features.mean(axis=0), features.std(axis=0)
    return (features - mean) / scale, scale


def _best_c(scaled: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """The C with the best 5-fold cross-validated ROC AUC (ties go to the sparser model)."""
    folds = list(StratifiedKFold(n_splits=5, shuffle=True, random_state=seed).split(scaled, labels))
    best_c, best_auc = C_GRID[0], -1.0
    for c in C_GRID:
        model = LogisticRegression(C=c, l1_ratio=1.0, solver="liblinear", max_iter=5000)
        aucs = []
        for train, test in folds:
            model.fit(scaled[train], labels[train])
            aucs.append(roc_auc_score(labels[test], model.decision_function(scaled[test])))
        auc = float(np.mean(aucs))
        if auc > best_auc + 1e-4:
            best_c, best_auc = c, auc
    return best_c


# --- thresholds and metrics -----------------------------------------------------------------


@dataclass
class Cut:
    threshold: float
    precision: float
    recall: float
    share: float  # of all leads, flagged
    flagged: int
    met: bool = True


def cut_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> Cut:
    flagged = scores >= threshold
    hits = int((flagged & (labels == 1)).sum())
    count = int(flagged.sum())
    positives = int((labels == 1).sum())
    return Cut(
        threshold=threshold,
        precision=hits / count if count else 0.0,
        recall=hits / positives if positives else 0.0,
        share=count / len(scores) if len(scores) else 0.0,
        flagged=count,
    )


def threshold_for_volume(scores: np.ndarray, labels: np.ndarray, share: float) -> Cut:
    """The highest threshold that still flags at least `share` of the leads."""
    for threshold in sorted(set(scores.tolist()), reverse=True):
        cut = cut_at(scores, labels, threshold)
        if cut.share >= share:
            return cut
    return cut_at(scores, labels, float(scores.min()))


def threshold_for_precision(scores: np.ndarray, labels: np.ndarray, precision: float, *, min_flagged: int = 10) -> Cut:
    """The lowest threshold (most MQLs) whose precision still reaches the target; if none
    does, the most precise threshold, marked as not meeting the target."""
    cuts = [cut_at(scores, labels, t) for t in sorted(set(scores.tolist()))]
    cuts = [c for c in cuts if c.flagged >= min_flagged] or cuts
    meeting = [c for c in cuts if c.precision >= precision]
    if meeting:
        return min(meeting, key=lambda c: c.threshold)
    best = max(cuts, key=lambda c: (c.precision, c.flagged))
    best.met = False
    return best


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    if len(set(labels.tolist())) < 2:
        return None
    return float(roc_auc_score(labels, scores))
