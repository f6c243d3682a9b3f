"""Server-rendered pages of the CRM core. Each view is short and checks roles on the server."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from nurturing.selectors import contact_nurture_panel
from scoring.selectors import account_score, account_score_explained, contact_score_panel

from . import importing, selectors, services
from .decorators import role_required
from .forms import ActivityTypeForm, ContactSearchForm, ImportMappingForm, ImportUploadForm
from .models import Account, ActivityType, Contact, ImportJob
from .roles import ADMIN, MARKETING, SALES, has_role

ANY_ROLE = (SALES, MARKETING, ADMIN)


@login_required
def home(request):
    if has_role(request.user, SALES):
        return redirect("leads:queue")  # a rep's landing page
    if has_role(request.user, *ANY_ROLE):
        return redirect("leads:contact_list")
    return render(request, "no_role.html", status=403)


def login_locked_out(request, response, credentials):
    """django-axes calls this instead of logging in a locked-out username + address."""
    context = {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
    }
    return render(request, "registration/locked_out.html", context, status=429)


@role_required(*ANY_ROLE)
def contact_list(request):
    form = ContactSearchForm(request.GET)
    contacts = Contact.objects.select_related("account", "owner").order_by("-created_at", "-id")
    if form.is_valid():
        contacts = selectors.contact_search(contacts, form.cleaned_data["q"])
        if form.cleaned_data["stage"]:
            contacts = contacts.filter(lifecycle_stage=form.cleaned_data["stage"])
    page = Paginator(contacts, 50).get_page(request.GET.get("page"))
    return render(request, "leads/contact_list.html", {"form": form, "page": page})


@role_required(*ANY_ROLE)
def contact_detail(request, pk: int):
    contact = get_object_or_404(Contact.objects.select_related("account", "owner"), pk=pk)
    return render(
        request,
        "leads/contact_detail.html",
        {
            "contact": contact,
            # A sorted list, not the dict: in a template `.items` would read a key named "items".
            "attributes": sorted(contact.attributes.items()),
            "timeline": selectors.contact_timeline(contact),
            "stage_history": selectors.contact_stage_history(contact),
            "outcomes": contact.outcomes.select_related("recorded_by"),
            **contact_score_panel(contact),
            **selectors.lead_handoff_panel(contact, request.user),
            **contact_nurture_panel(contact),
        },
    )


@role_required(*ANY_ROLE)
def account_list(request):
    accounts = Account.objects.annotate(contact_count=Count("contacts")).order_by("name", "id")
    # NUL cannot be in a PostgreSQL query's text; DRF's search drops it the same way.
    query = request.GET.get("q", "").replace("\x00", "").strip()
    if query:
        accounts = accounts.filter(Q(name__icontains=query) | Q(domain__icontains=query))
    page = Paginator(accounts, 50).get_page(request.GET.get("page"))
    return render(request, "leads/account_list.html", {"page": page, "q": query})


@role_required(*ANY_ROLE)
def account_detail(request, pk: int):
    account = get_object_or_404(Account.objects.select_related("owner"), pk=pk)
    contacts = account.contacts.select_related("score").order_by("last_name", "first_name")[:200]
    score = account_score(account)
    return render(
        request,
        "leads/account_detail.html",
        {
            "account": account,
            "contacts": contacts,
            "account_score": score,
            "explained": account_score_explained(account, score),
        },
    )


@role_required(*ANY_ROLE)
def activity_type_list(request):
    can_edit = has_role(request.user, MARKETING, ADMIN)
    form = ActivityTypeForm(request.POST or None)
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Only Marketing can add activity types.")
        if form.is_valid():
            data = form.cleaned_data
            services.activity_type_create(key=data["key"], name=data["name"], description=data["description"])
            messages.success(request, f"Activity type “{data['name']}” added.")
            return redirect("leads:activity_type_list")
    types = ActivityType.objects.annotate(activity_count=Count("activities")).order_by("name")
    return render(request, "leads/activity_type_list.html", {"types": types, "form": form, "can_edit": can_edit})


# --- CSV import --------------------------------------------------------------------------


@role_required(MARKETING)
def import_list(request):
    jobs = ImportJob.objects.select_related("created_by").defer("content")[:50]
    return render(request, "leads/import_list.html", {"jobs": jobs})


@role_required(MARKETING)
def import_upload(request):
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            job = importing.import_job_create(
                filename=upload.name, content=importing.decode_upload(upload.read()), created_by=request.user
            )
        except importing.MappingError as error:
            form.add_error("file", str(error))
        else:
            return redirect("leads:import_mapping", pk=job.pk)
    return render(request, "leads/import_upload.html", {"form": form})


@role_required(MARKETING)
def import_mapping(request, pk: int):
    job = get_object_or_404(ImportJob, pk=pk)
    if job.status != ImportJob.Status.MAPPING:
        return redirect("leads:import_detail", pk=job.pk)
    form = ImportMappingForm(request.POST or None, headers=job.headers, mapping=job.mapping)
    if request.method == "POST" and form.is_valid():
        try:
            importing.import_job_set_mapping(job=job, mapping=form.mapping())
        except importing.MappingError as error:
            form.add_error(None, str(error))
        else:
            if request.POST.get("start"):
                return _start_import(request, job)
            messages.success(request, "Mapping saved. Check the preview, then start the import.")
            return redirect("leads:import_mapping", pk=job.pk)
    preview = _preview_rows(job)
    return render(request, "leads/import_mapping.html", {"job": job, "form": form, "preview": preview})


def _preview_rows(job: ImportJob, count: int = 5) -> list[dict]:
    preview = []
    for number, values in importing.csv_rows(job.content, limit=count):
        row = importing.row_convert(values, job.mapping) if job.mapping.get("columns") else None
        preview.append(
            {
                "number": number,
                "values": [values.get(h, "") for h in job.headers],
                "row": row,
                # Lists, not dicts: in a template `.items` would read a column or key named "items".
                "errors": list(row.errors.items()) if row else [],
                "attributes": list(row.attributes.items()) if row else [],
            }
        )
    return preview


@require_POST
@role_required(MARKETING)
def import_start(request, pk: int):
    return _start_import(request, get_object_or_404(ImportJob, pk=pk))


def _start_import(request, job: ImportJob):
    try:
        importing.import_job_start(job=job)
    except importing.MappingError as error:
        messages.error(request, str(error))
        return redirect("leads:import_mapping", pk=job.pk)
    return redirect("leads:import_detail", pk=job.pk)


@role_required(MARKETING)
def import_detail(request, pk: int):
    job = get_object_or_404(ImportJob.objects.select_related("created_by"), pk=pk)
    rejected = list(job.rejected_rows.all()[:20])
    for row in rejected:
        # A list, not the dict: in a template `errors.items` would read a column named "items".
        row.reasons = list(row.errors.items())
    return render(request, "leads/import_detail.html", {"job": job, "rejected": rejected})


@role_required(MARKETING)
def import_progress(request, pk: int):
    """The progress fragment htmx polls while the import runs."""
    job = get_object_or_404(ImportJob.objects.defer("content"), pk=pk)
    response = render(request, "leads/_import_progress.html", {"job": job})
    if job.is_finished and request.htmx:
        response["HX-Refresh"] = "true"  # reload once, so the full report (rejected rows) appears
    return response


@role_required(MARKETING)
def import_rejected_csv(request, pk: int):
    job = get_object_or_404(ImportJob, pk=pk)
    response = HttpResponse(importing.rejected_rows_csv(job), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-rejected.csv"'
    return response
