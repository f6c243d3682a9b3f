"""The sales queue: which MQLs a rep sees, filtered and sorted, with why each qualified."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import django_filters
from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils import timezone

from scoring.selectors import mql_level_names, scores_explain

from .models import Contact, LifecycleStage
from .roles import SALES
from .selectors import contact_search
from .templatetags.people import person

GRADES = [("A", "A"), ("B", "B"), ("C", "C"), ("D", "D")]
MAX_WAITING_HOURS = 100 * 365 * 24  # beyond this "now - hours" is no date at all


def mql_queue() -> QuerySet[Contact]:
    """MQLs not yet handled, best score first, then the longest waiting."""
    return (
        Contact.objects.filter(lifecycle_stage=LifecycleStage.MQL)
        .select_related("account", "owner", "score")
        .order_by("-score_total", "mql_at", "id")
    )


def queue_page(queryset: QuerySet[Contact], number, per_page: int = 25):
    """One page of the queue. Sorts and counts narrow rows (ids) and only then loads the 25
    full rows: sorting 50,000 joined rows is what is slow. Their scores are explained together
    (top reasons), in a few queries for the page."""
    page = Paginator(queryset.values_list("id", flat=True), per_page).get_page(number)
    ids = list(page.object_list)
    contacts = queryset.order_by().in_bulk(ids)
    page.object_list = [contacts[contact_id] for contact_id in ids]
    scores_explain(getattr(contact, "score", None) for contact in page.object_list)
    return page


def queue_views(user, params) -> list[dict]:
    """The queue's saved views, as links above its filters: every MQL, the rep's own leads
    (for a sales rep), the unassigned ones; `active` marks the view the filters show now."""
    shown = {key: value for key, value in params.items() if value and key != "page"}
    views = [("All leads", {})]
    if sales_reps().filter(pk=user.pk).exists():
        views.append(("My leads", {"owner": str(user.pk)}))
    views.append(("Unassigned", {"unassigned": "on"}))
    return [{"label": label, "query": urlencode(query), "active": shown == query} for label, query in views]


def sales_reps() -> QuerySet:
    return get_user_model().objects.filter(is_active=True, groups__name=SALES).distinct().order_by("username")


class QueueFilter(django_filters.FilterSet):
    # A search box (type=search): the queue page filters as the rep types into it.
    q = django_filters.CharFilter(method="search", label="Search", widget=forms.SearchInput)
    owner = django_filters.ModelChoiceFilter(queryset=sales_reps(), empty_label="Any owner")
    unassigned = django_filters.BooleanFilter(
        method="only_unassigned", label="Unassigned only", widget=forms.CheckboxInput
    )
    # Any text through the API; the page offers the active model's levels (see __init__).
    level = django_filters.CharFilter(
        field_name="score_mql_level", lookup_expr="iexact", label="MQL level", widget=forms.Select
    )
    grade = django_filters.ChoiceFilter(
        field_name="score_fit_grade", choices=GRADES, label="Fit grade", empty_label="Any grade"
    )
    source = django_filters.CharFilter(field_name="lead_source", lookup_expr="icontains", label="Source")
    account = django_filters.CharFilter(field_name="account__name", lookup_expr="icontains", label="Company")
    country = django_filters.CharFilter(lookup_expr="iexact")
    waiting_hours = django_filters.NumberFilter(
        method="waiting_at_least", label="Waiting at least (hours)", min_value=0, max_value=MAX_WAITING_HOURS
    )

    class Meta:
        model = Contact
        fields = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["owner"].queryset = sales_reps()  # evaluated per request, not at import
        self.form.fields["owner"].label_from_instance = person  # names as on every other page
        self.form.fields["level"].widget.choices = [("", "Any level")] + [(name, name) for name in mql_level_names()]

    def search(self, queryset, name, value):
        return contact_search(queryset, value)

    def only_unassigned(self, queryset, name, value):
        return queryset.filter(owner__isnull=True) if value else queryset

    def waiting_at_least(self, queryset, name, value):
        return queryset.filter(mql_at__lte=timezone.now() - timedelta(hours=float(value)))


def top_reasons(contact: Contact, count: int = 3) -> list[dict]:
    score = getattr(contact, "score", None)
    if score is None:
        return []
    positive = [part for part in score.explanation if part["kind"] != "cap" and float(part["points"]) > 0]
    return sorted(positive, key=lambda part: float(part["points"]), reverse=True)[:count]


def sla_state(contact: Contact) -> str:
    """ "ok" before the reminder time, "due" until expiry, "late" after: the row's colour."""
    if contact.mql_at is None:
        return "ok"
    waited = timezone.now() - contact.mql_at
    if waited < timedelta(hours=settings.SLA_REMINDER_HOURS):
        return "ok"
    return "due" if waited < timedelta(days=settings.SLA_EXPIRY_DAYS) else "late"
