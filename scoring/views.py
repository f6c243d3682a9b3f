"""Marketer pages for scoring models: edit a draft, preview it, publish, watch the rescore."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from leads.decorators import role_required
from leads.roles import MARKETING

from . import selectors, versions
from .forms import EngagementRuleForm, FitRuleForm, MqlLevelForm, VersionSettingsForm
from .models import DraftPreview, EngagementRule, FitRule, ModelVersion, MqlLevel, RescoreRun, ScoringModel
from .services import draft_preview_get_or_start

RULE_KINDS = {
    "fit": (FitRule, FitRuleForm, "fit_rules"),
    "engagement": (EngagementRule, EngagementRuleForm, "engagement_rules"),
    "level": (MqlLevel, MqlLevelForm, "mql_levels"),
}


@role_required(MARKETING)
def model_overview(request):
    scoring_model = ScoringModel.objects.order_by("id").first()
    return render(
        request,
        "scoring/overview.html",
        {
            "scoring_model": scoring_model,
            "versions": scoring_model.versions.select_related("published_by") if scoring_model else [],
            "draft": scoring_model.versions.filter(status=ModelVersion.Status.DRAFT).first() if scoring_model else None,
            "runs": RescoreRun.objects.select_related("version")[:5],
        },
    )


@require_POST
@role_required(MARKETING)
def draft_create(request, model_pk: int):
    scoring_model = get_object_or_404(ScoringModel, pk=model_pk)
    draft = versions.draft_get_or_create(scoring_model=scoring_model, user=request.user)
    return redirect("scoring:version_detail", pk=draft.pk)


@role_required(MARKETING)
def version_detail(request, pk: int):
    version = get_object_or_404(ModelVersion.objects.select_related("scoring_model", "based_on"), pk=pk)
    is_draft = version.status == ModelVersion.Status.DRAFT
    settings_form = VersionSettingsForm(instance=version) if is_draft else None
    others = version.scoring_model.versions.exclude(pk=version.pk)
    return render(
        request,
        "scoring/version_detail.html",
        {
            "version": version,
            "is_draft": is_draft,
            "settings_form": settings_form,
            "others": others,
            "fit_rules": version.fit_rules.all(),
            "engagement_rules": version.engagement_rules.select_related("activity_type"),
            "levels": version.mql_levels.all(),
            "diff": versions.version_diff(version.based_on, version) if version.based_on else None,
        },
    )


@role_required(MARKETING)
def rule_edit(request, pk: int, kind: str, rule_pk: int | None = None):
    """Add (rule_pk None) or edit a fit rule, engagement rule or MQL level on a draft."""
    version = get_object_or_404(ModelVersion, pk=pk)
    model, form_class, related = RULE_KINDS[kind]
    rule = get_object_or_404(getattr(version, related), pk=rule_pk) if rule_pk else None
    extra = {"version": version} if kind == "level" else {}
    form = form_class(request.POST or None, instance=rule, **extra)
    if request.method == "POST" and form.is_valid():
        try:
            versions.rule_save(version=version, form=form)
        except versions.VersionError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"Saved “{form.instance}”.")
        return redirect("scoring:version_detail", pk=version.pk)
    return render(request, "scoring/rule_form.html", {"version": version, "form": form, "kind": kind, "rule": rule})


@require_POST
@role_required(MARKETING)
def rule_delete(request, pk: int, kind: str, rule_pk: int):
    version = get_object_or_404(ModelVersion, pk=pk)
    model, _, related = RULE_KINDS[kind]
    rule = get_object_or_404(getattr(version, related), pk=rule_pk)
    try:
        versions.rule_delete(version=version, rule=rule)
    except versions.VersionError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Removed “{rule}”.")
    return redirect("scoring:version_detail", pk=version.pk)


@require_POST
@role_required(MARKETING)
def version_settings(request, pk: int):
    version = get_object_or_404(ModelVersion, pk=pk)
    form = VersionSettingsForm(request.POST, instance=version)
    if not form.is_valid():
        for error in form.errors.values():
            messages.error(request, " ".join(error))
        return redirect("scoring:version_detail", pk=version.pk)
    try:
        versions.version_settings_save(version=version, form=form)
    except versions.VersionError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Settings saved.")
    return redirect("scoring:version_detail", pk=version.pk)


@role_required(MARKETING)
def version_preview(request, pk: int):
    """What publishing the version would do: computed by a worker (seconds to a minute at a
    million contacts), its progress shown until then."""
    version = get_object_or_404(ModelVersion.objects.select_related("scoring_model"), pk=pk)
    if version.status == ModelVersion.Status.ACTIVE:  # it would compare the scores with themselves
        messages.info(request, f"v{version.number} is the active version: a preview shows what another would change.")
        return redirect("scoring:version_detail", pk=version.pk)
    if request.method == "POST":  # "Compute again": the stored scores have moved since
        draft_preview_get_or_start(version=version, user=request.user, again=True)
        return redirect("scoring:version_preview", pk=version.pk)
    preview = draft_preview_get_or_start(version=version, user=request.user)
    if preview.result is not None:
        selectors.preview_examples_attach(preview.result)
    context = {"version": version, "active": selectors.active_version(), "preview": preview}
    return render(request, "scoring/preview.html", context)


@role_required(MARKETING)
def version_preview_progress(request, pk: int, preview_pk: int):
    preview = get_object_or_404(DraftPreview.objects.select_related("version"), pk=preview_pk, version_id=pk)
    if preview.is_finished and request.htmx:
        return HttpResponseClientRefresh()  # the page now shows the figures
    return render(request, "scoring/_preview_progress.html", {"version": preview.version, "preview": preview})


@require_POST
@role_required(MARKETING)
def version_publish(request, pk: int):
    version = get_object_or_404(ModelVersion, pk=pk)
    try:
        run = versions.version_publish(draft=version, user=request.user)
    except versions.VersionError as error:
        messages.error(request, str(error))
        return redirect("scoring:version_detail", pk=version.pk)
    messages.success(request, f"v{version.number} is now active. Every contact is rescored with it: progress below.")
    return redirect("scoring:run_detail", pk=run.pk)


@role_required(MARKETING)
def version_compare(request):
    ids = [request.GET.get(name, "") for name in ("old", "new")]
    if not all(value.isdigit() for value in ids):
        raise Http404("Choose two versions to compare.")
    old, new = (get_object_or_404(ModelVersion, pk=int(value)) for value in ids)
    return render(request, "scoring/compare.html", {"old": old, "new": new, "diff": versions.version_diff(old, new)})


@role_required(MARKETING)
def run_detail(request, pk: int):
    run = get_object_or_404(RescoreRun.objects.select_related("version__scoring_model"), pk=pk)
    return render(request, "scoring/run_detail.html", _run_context(run))


@role_required(MARKETING)
def run_progress(request, pk: int):
    run = get_object_or_404(RescoreRun, pk=pk)
    return render(request, "scoring/_run_progress.html", _run_context(run))


def _run_context(run: RescoreRun) -> dict:
    """The run's progress; once it has finished, the best of the leads it made MQLs."""
    return {"run": run, **selectors.run_outcome(run)}
