"""Funnel report pages and campaign costs. Reads live in leads.reports, writes in leads.campaign_costs."""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from . import campaign_costs
from .decorators import role_required
from .models import CampaignCost
from .report_forms import CampaignCostForm, ReportFilterForm
from .reports import Report
from .reports.tables import TABLES, table_csv
from .reports.value import PRIOR_WEIGHT
from .roles import ADMIN, MANAGER, MARKETING, has_role

REPORT_ROLES = (MARKETING, MANAGER, ADMIN)


@role_required(*REPORT_ROLES)
def report(request):
    form = ReportFilterForm(request.GET)
    context = {"form": form, "can_edit_costs": has_role(request.user, MARKETING)}
    if form.is_valid():
        result = Report(form.period(), deal_value=form.cleaned_data["deal_value"])
        context.update(
            report=result,
            # Underscores: a template cannot look up "rejection-reasons".
            tables={slug.replace("-", "_"): build(result) for slug, build in TABLES.items()},
            query=_query(form),
            currency=settings.REPORT_CURRENCY,
            prior_weight=PRIOR_WEIGHT,
        )
    return render(request, "leads/reports/report.html", context)


@role_required(*REPORT_ROLES)
def report_csv(request, table: str):
    build = TABLES.get(table)
    if build is None:
        raise Http404("No such table.")
    form = ReportFilterForm(request.GET)
    if not form.is_valid():
        errors = "; ".join(f"{name}: {' '.join(problems)}" for name, problems in form.errors.items())
        return HttpResponse(f"Invalid report range: {errors}", status=400, content_type="text/plain; charset=utf-8")
    period = form.period()
    response = HttpResponse(
        table_csv(build(Report(period, deal_value=form.cleaned_data["deal_value"]))),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{table}-{period.start}-to-{period.end}.csv"'
    return response


@role_required(MARKETING)
def cost_list(request):
    form = CampaignCostForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if _save(request, form):
            messages.success(request, f"Cost for “{form.cleaned_data['campaign']}” saved.")
            return redirect("leads:cost_list")
    costs = CampaignCost.objects.select_related("created_by")
    page = Paginator(costs, 50).get_page(request.GET.get("page"))
    return render(request, "leads/reports/costs.html", {"form": form, "page": page})


@role_required(MARKETING)
def cost_edit(request, pk: int):
    cost = get_object_or_404(CampaignCost, pk=pk)
    form = CampaignCostForm(request.POST or None, instance=cost)
    if request.method == "POST" and form.is_valid():
        if _save(request, form, cost_id=cost.pk):
            messages.success(request, f"Cost for “{form.cleaned_data['campaign']}” updated.")
            return redirect("leads:cost_list")
    return render(request, "leads/reports/cost_edit.html", {"form": form, "cost": cost})


@require_POST
@role_required(MARKETING)
def cost_delete(request, pk: int):
    cost = get_object_or_404(CampaignCost, pk=pk)
    campaign_costs.campaign_cost_delete(cost_id=cost.pk, user=request.user)
    messages.success(request, f"Cost for “{cost.campaign}” ({cost.period_start} to {cost.period_end}) deleted.")
    return redirect("leads:cost_list")


def _query(form: ReportFilterForm) -> str:
    """The range as shown, for the CSV links: a default range stays the one on the screen."""
    data = form.cleaned_data
    return urlencode({"start": data["start"], "end": data["end"], "deal_value": data["deal_value"]})


def _save(request, form: CampaignCostForm, cost_id: int | None = None) -> bool:
    """Create or update through the services; a rule they enforce becomes a form error."""
    values = {name: form.cleaned_data[name] for name in campaign_costs.FIELDS}
    try:
        if cost_id is None:
            campaign_costs.campaign_cost_create(**values, user=request.user)
        else:
            campaign_costs.campaign_cost_update(cost_id=cost_id, **values, user=request.user)
    except campaign_costs.CostError as error:
        form.add_error(None, str(error))
        return False
    return True
