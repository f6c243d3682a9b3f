"""Scoring model versions: drafts, publishing, comparing."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from leads.audit import audit_record

from .models import EngagementRule, FitRule, ModelVersion, MqlLevel, RescoreRun, ScoringModel

VERSION_FIELDS = ["fit_cap", "engagement_cap", "grade_a_min", "grade_b_min", "grade_c_min", "mqa_threshold"]
FIT_FIELDS = ["name", "field", "operator", "value", "points"]
ENGAGEMENT_FIELDS = [
    "name",
    "activity_type_id",
    "property_name",
    "property_operator",
    "property_value",
    "points",
    "cap",
    "window_days",
    "half_life_days",
]


class VersionError(ValueError):
    pass


NOT_A_DRAFT = "Only a draft can be edited; create a draft from the active version first."


def draft_get_or_create(*, scoring_model: ScoringModel, user=None) -> ModelVersion:
    """The model's draft, or a new one copied from the active version."""
    draft = scoring_model.versions.filter(status=ModelVersion.Status.DRAFT).first()
    if draft:
        return draft
    source = scoring_model.versions.filter(status=ModelVersion.Status.ACTIVE).first() or scoring_model.versions.first()
    return version_copy(source=source, user=user, scoring_model=scoring_model)


@transaction.atomic
def version_copy(
    *, source: ModelVersion | None, scoring_model: ScoringModel, user=None, note: str = ""
) -> ModelVersion:
    number = (scoring_model.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    values = {field: getattr(source, field) for field in VERSION_FIELDS} if source else {}
    draft = ModelVersion.objects.create(
        scoring_model=scoring_model,
        number=number,
        status=ModelVersion.Status.DRAFT,
        based_on=source,
        created_by=user,
        note=note or (f"Copied from v{source.number}" if source else ""),
        **values,
    )
    if source:
        FitRule.objects.bulk_create(
            [FitRule(version=draft, **{f: getattr(r, f) for f in FIT_FIELDS}) for r in source.fit_rules.all()]
        )
        EngagementRule.objects.bulk_create(
            [
                EngagementRule(version=draft, **{f: getattr(r, f) for f in ENGAGEMENT_FIELDS})
                for r in source.engagement_rules.all()
            ]
        )
        MqlLevel.objects.bulk_create(
            [
                MqlLevel(version=draft, name=lv.name, min_score=lv.min_score, min_fit_grade=lv.min_fit_grade)
                for lv in source.mql_levels.all()
            ]
        )
    return draft


def version_publish(*, draft: ModelVersion, user=None) -> RescoreRun:
    """Make the draft the active version and start a full rescore with it."""
    from .services import matchers_prepare, rescore_run_start, runs_supersede_unfinished

    if draft.status != ModelVersion.Status.DRAFT:
        raise VersionError("Only a draft can be published.")
    if not draft.mql_levels.exists():
        raise VersionError("Give the model at least one MQL level before publishing.")
    matchers_prepare(version=draft)
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=draft.pk)
        if locked.status != ModelVersion.Status.DRAFT:
            raise VersionError("This draft was published meanwhile.")
        replaced = ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).first()
        ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).update(status=ModelVersion.Status.ARCHIVED)
        locked.status = ModelVersion.Status.ACTIVE
        locked.published_at = timezone.now()
        locked.published_by = user
        locked.save(update_fields=["status", "published_at", "published_by"])
        audit_record(actor=user, action="scoring.publish", target=locked, **_publish_audit(replaced, locked))
        runs_supersede_unfinished(published=locked)  # the new run covers every contact
        return rescore_run_start(
            version=locked, reason=RescoreRun.Reason.PUBLISH, started_by=user, base_version=replaced
        )


def _publish_audit(replaced: ModelVersion | None, published: ModelVersion) -> dict:
    """Before and after of a publish: the active version, and each rule or setting it changed."""
    diffs = version_diff(replaced, published) if replaced else []
    return {
        "before": {"active version": f"v{replaced.number}" if replaced else None}
        | {f"{d.kind}: {d.name}": d.before for d in diffs},
        "after": {"active version": f"v{published.number}"} | {f"{d.kind}: {d.name}": d.after for d in diffs},
    }


# --- comparing ------------------------------------------------------------------------------


@dataclass
class RuleDiff:
    kind: str  # "fit" | "engagement" | "level" | "setting"
    change: str  # "added" | "removed" | "changed"
    name: str
    before: str = ""
    after: str = ""


def _describe_fit(rule: FitRule) -> str:
    value = f" {rule.value_display}" if rule.value is not None else ""
    return f"{rule.field} {rule.get_operator_display()}{value} → {rule.points:+d}"


def _describe_engagement(rule: EngagementRule) -> str:
    text = f"{rule.activity_type.name}"
    if rule.property_name:
        text += f" where {rule.property_name} {rule.property_operator} '{rule.property_value}'"
    text += f": {rule.points:+d} each"
    if rule.cap is not None:
        text += f", cap {rule.cap}"
    if rule.window_days:
        text += f", last {rule.window_days} days"
    if rule.half_life_days:
        text += f", half-life {rule.half_life_days} days"
    return text


def version_diff(old: ModelVersion | None, new: ModelVersion) -> list[RuleDiff]:
    """What changed from `old` to `new`: rules (matched by name), levels and settings. With no
    `old` (a model's first version), every rule and level is added."""

    def rules(version, related: str):
        if version is None:
            return []
        found = getattr(version, related).all()
        return found.select_related("activity_type") if related == "engagement_rules" else found

    diffs = []
    for kind, describe, old_rules, new_rules in (
        ("fit", _describe_fit, rules(old, "fit_rules"), rules(new, "fit_rules")),
        ("engagement", _describe_engagement, rules(old, "engagement_rules"), rules(new, "engagement_rules")),
        (
            "level",
            lambda lv: f"score ≥ {lv.min_score}, fit ≥ {lv.min_fit_grade}",
            rules(old, "mql_levels"),
            rules(new, "mql_levels"),
        ),
    ):
        before = {r.name: describe(r) for r in old_rules}
        after = {r.name: describe(r) for r in new_rules}
        diffs += [RuleDiff(kind, "removed", name, before[name]) for name in before.keys() - after.keys()]
        diffs += [RuleDiff(kind, "added", name, after=after[name]) for name in after.keys() - before.keys()]
        diffs += [
            RuleDiff(kind, "changed", name, before[name], after[name])
            for name in before.keys() & after.keys()
            if before[name] != after[name]
        ]
    for field in VERSION_FIELDS if old is not None else []:
        if getattr(old, field) != getattr(new, field):
            diffs.append(
                RuleDiff(
                    "setting", "changed", field.replace("_", " "), str(getattr(old, field)), str(getattr(new, field))
                )
            )
    return sorted(diffs, key=lambda d: (d.kind, d.change, d.name))


# --- editing a draft ------------------------------------------------------------------------


@contextmanager
def _draft_locked(version: ModelVersion):
    """Edit the version only while it is a draft: its row is locked first, as a publish locks
    it, so an edit and a publish of the same draft never cross (a published version's rules
    never change afterwards)."""
    with transaction.atomic():
        status = ModelVersion.objects.select_for_update().filter(pk=version.pk).values_list("status", flat=True)
        if status.first() != ModelVersion.Status.DRAFT:
            raise VersionError(NOT_A_DRAFT)
        yield


def rule_save(*, version: ModelVersion, form) -> None:
    """Save a bound, valid rule/level form (fit rule, engagement rule or MQL level) on a draft."""
    with _draft_locked(version):
        rule = form.save(commit=False)
        rule.version = version
        rule.save()


def rule_delete(*, version: ModelVersion, rule) -> None:
    with _draft_locked(version):
        rule.delete()


def version_settings_save(*, version: ModelVersion, form) -> None:
    with _draft_locked(version):
        form.save()


def draft_discard(*, draft: ModelVersion) -> None:
    """Delete a draft and its rules; published versions stay forever."""
    with _draft_locked(draft):
        draft.delete()
