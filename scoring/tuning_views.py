"""Marketer pages for tuning: rule performance, suggest a model, read its backtest and diff."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from leads.decorators import role_required
from leads.roles import MARKETING

from . import versions
from .forms import SuggestionForm
from .models import ModelSuggestion, ModelVersion, ScoringModel
from .tuning.labels import training_labels
from .tuning.performance import rule_performance
from .tuning.suggest import TuningError, label_shortfall, suggestion_diff, suggestion_request


@role_required(MARKETING)
def version_performance(request, pk: int):
    version = get_object_or_404(ModelVersion.objects.select_related("scoring_model"), pk=pk)
    return render(request, "scoring/rule_performance.html", {"version": version, **rule_performance(version)})


@role_required(MARKETING)
def suggestion_new(request, model_pk: int):
    scoring_model = get_object_or_404(ScoringModel, pk=model_pk)
    form = SuggestionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            suggestion = suggestion_request(
                scoring_model=scoring_model,
                target_kind=form.cleaned_data["target_kind"],
                target_value=form.cleaned_data["target_value"] / 100,
                max_rules=form.cleaned_data["max_rules"],
                points_to_double=form.cleaned_data["points_to_double"],
                user=request.user,
            )
        except TuningError as error:
            form.add_error(None, str(error))
        else:
            return redirect("scoring:suggestion_detail", pk=suggestion.pk)
    labels = training_labels()
    return render(
        request,
        "scoring/suggestion_new.html",
        {
            "scoring_model": scoring_model,
            "form": form,
            "labelled": len(labels),
            "good": sum(labels.values()),
            "bad": len(labels) - sum(labels.values()),
            "shortfall": label_shortfall(labels),
            "earlier": scoring_model.suggestions.select_related("draft", "created_by")[:10],
        },
    )


@role_required(MARKETING)
def suggestion_detail(request, pk: int):
    suggestion = get_object_or_404(
        ModelSuggestion.objects.select_related("scoring_model", "base_version", "draft"), pk=pk
    )
    return render(
        request,
        "scoring/suggestion_detail.html",
        {"suggestion": suggestion, "diff": suggestion_diff(suggestion), "result": suggestion.result},
    )


@role_required(MARKETING)
def suggestion_progress(request, pk: int):
    suggestion = get_object_or_404(ModelSuggestion, pk=pk)
    if suggestion.is_finished and request.htmx:
        return HttpResponseClientRefresh()  # the page now shows the results
    return render(request, "scoring/_suggestion_progress.html", {"suggestion": suggestion})


@require_POST
@role_required(MARKETING)
def draft_discard(request, pk: int):
    version = get_object_or_404(ModelVersion, pk=pk)
    try:
        versions.draft_discard(draft=version)
    except versions.VersionError as error:
        messages.error(request, str(error))
        return redirect("scoring:version_detail", pk=version.pk)
    messages.success(request, f"Draft v{version.number} deleted.")
    return redirect("scoring:overview")
