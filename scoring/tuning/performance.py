"""Rule performance: for each rule of a version, the MQLs it helped make and how leads it
fired on fared with sales (acceptance) and in the end (good outcome), against leads it
did not fire on."""

from __future__ import annotations

from dataclasses import dataclass

from leads.models import HandoffDecision

from ..models import ModelVersion, MqlQualification
from .candidates import current_candidates, feature_matrix
from .labels import decision_days, training_labels

SMALL_SAMPLE = 30
MOST_LABELLED = 50_000  # the latest labelled leads are plenty to estimate a rate


@dataclass
class Rate:
    hits: int = 0
    count: int = 0

    @property
    def value(self) -> float | None:
        return self.hits / self.count if self.count else None

    @property
    def is_small(self) -> bool:
        return self.count < SMALL_SAMPLE


@dataclass
class RulePerformance:
    name: str
    kind: str
    points: int
    mqls: int
    accepted_fired: Rate
    accepted_not: Rate
    good_fired: Rate
    good_not: Rate

    @property
    def rates(self) -> tuple[Rate, Rate, Rate, Rate]:
        return self.accepted_fired, self.accepted_not, self.good_fired, self.good_not

    @property
    def lift(self) -> float | None:
        """How much likelier a good outcome is where the rule fired than where it did not."""
        return _ratio(self.good_fired, self.good_not)

    @property
    def acceptance_lift(self) -> float | None:
        return _ratio(self.accepted_fired, self.accepted_not)

    @property
    def small_sample(self) -> bool:
        return self.good_fired.is_small or self.good_not.is_small

    @property
    def hurts(self) -> str:
        """Why the rule points the wrong way, when the samples are big enough to say so."""
        for lift, fired, not_fired, what in (
            (self.lift, self.good_fired, self.good_not, "turn out good"),
            (self.acceptance_lift, self.accepted_fired, self.accepted_not, "are accepted by sales"),
        ):
            if lift is None or fired.is_small or not_fired.is_small:
                continue
            if self.points > 0 and lift < 1:
                return f"Adds points, yet leads it fires on {what} less often ({lift:.2f}×)."
            if self.points < 0 and lift > 1:
                return f"Takes points away, yet leads it fires on {what} more often ({lift:.2f}×)."
        return ""


def _ratio(fired: Rate, not_fired: Rate) -> float | None:
    if fired.value is None or not not_fired.value:
        return None
    return fired.value / not_fired.value


def rule_performance(version: ModelVersion) -> dict:
    """Whether a rule fired on a decided or labelled lead is judged with the engine as of the
    day that lead was judged, so every hand-off counts, not only this version's MQLs."""
    candidates = current_candidates(version)
    fired_in_mqls, mql_contacts = _fired_in_qualifications(version)
    decisions = _latest_decisions()
    labels = training_labels()
    labelled = sorted(labels)[-MOST_LABELLED:]
    judged = sorted(set(labelled) | set(decisions))
    features = feature_matrix(candidates, judged, as_of=decision_days(judged)) if candidates and judged else None
    rows = []
    for column, candidate in enumerate(candidates):
        row = RulePerformance(
            name=candidate.name,
            kind=candidate.kind,
            points=candidate.current_points or 0,
            mqls=len(fired_in_mqls.get((candidate.kind, candidate.rule_id), ())),
            accepted_fired=Rate(),
            accepted_not=Rate(),
            good_fired=Rate(),
            good_not=Rate(),
        )
        for index, contact_id in enumerate(judged if features is not None else []):
            fired = features[index, column] > 0
            if contact_id in decisions:
                rate = row.accepted_fired if fired else row.accepted_not
                rate.count += 1
                rate.hits += decisions[contact_id]
            if contact_id in labels:
                rate = row.good_fired if fired else row.good_not
                rate.count += 1
                rate.hits += labels[contact_id]
        rows.append(row)
    return {
        "rows": rows,
        "mqls": len(mql_contacts),
        "decided": len(decisions),
        "labelled": len(labelled),
        "good": sum(labels[cid] for cid in labelled),
        "small_sample": SMALL_SAMPLE,
    }


def _fired_in_qualifications(version: ModelVersion) -> tuple[dict[tuple[str, int], set[int]], set[int]]:
    """{(kind, rule id): contacts whose qualification under `version` it contributed to}."""
    fired: dict[tuple[str, int], set[int]] = {}
    contacts = set()
    for contact_id, explanation in MqlQualification.objects.filter(version=version).values_list(
        "contact_id", "explanation"
    ):
        contacts.add(contact_id)
        for part in explanation or []:
            if part.get("kind") in ("fit", "engagement") and part.get("rule_id") is not None:
                fired.setdefault((part["kind"], part["rule_id"]), set()).add(contact_id)
    return fired, contacts


def _latest_decisions() -> dict[int, bool]:
    """{contact id: accepted?} from the latest hand-off decision on each lead (the latest
    MOST_LABELLED leads decided)."""
    decisions = {}
    rows = HandoffDecision.objects.order_by("decided_at", "id").values_list("contact_id", "decision")
    for contact_id, decision in rows:
        decisions[contact_id] = decision == HandoffDecision.Decision.ACCEPTED
    return dict(list(decisions.items())[-MOST_LABELLED:])
