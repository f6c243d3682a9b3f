"""The audit log: who changed what, when, with the values before and after.

Services of every app call `audit_record` in the transaction that makes the change, so an
entry exists exactly when the change committed. Admins browse the log at /audit/.
"""

from __future__ import annotations

import json
from collections import defaultdict

import django_filters
from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone
from django.utils.text import capfirst

from .models import AuditEntry, LeadFeedback, LifecycleStage, RejectReason
from .templatetags.people import person

# What each action is called on the page (the code stays in the entry and the URL).
ACTION_LABELS = {
    "lead.accept": "Lead accepted",
    "lead.reject": "Lead rejected",
    "lead.claim": "Lead claimed",
    "lead.reassign": "Lead reassigned",
    "lead.route": "Lead routed to a rep",
    "lead.feedback": "Lead feedback",
    "lead.outcome": "Sales outcome",
    "scoring.publish": "Scoring rules published",
    "sequence.edit": "Sequence edited",
    "sequence.status": "Sequence started or paused",
    "sequence.step_save": "Sequence step saved",
    "sequence.step_delete": "Sequence step deleted",
    "sequence.variant_save": "Email variant saved",
    "sequence.variant_delete": "Email variant deleted",
    "import.start": "Import started",
    "import.finish": "Import finished",
    "import.fail": "Import failed",
    "campaign_cost.create": "Campaign cost added",
    "campaign_cost.update": "Campaign cost changed",
    "campaign_cost.delete": "Campaign cost deleted",
    "user.access": "User's access changed",
    "group.permissions": "Role's permissions changed",
}

# Target types the log links to: (model, how to load a page of them, the page that shows one).
TARGETS = {
    "contact": ("leads.Contact", (), "leads:contact_detail"),
    "importjob": ("leads.ImportJob", (), "leads:import_detail"),
    "modelversion": ("scoring.ModelVersion", ("scoring_model",), "scoring:version_detail"),
    "sequence": ("nurturing.Sequence", (), "nurturing:sequence_detail"),
    "user": (settings.AUTH_USER_MODEL, (), "admin:auth_user_change"),
    "group": ("auth.Group", (), "admin:auth_group_change"),
}


def audit_record(*, actor, action: str, target: Model, before: dict | None = None, after: dict | None = None):
    """Record that `actor` (None: the system) did `action` to `target`.

    `before` and `after` hold the changed values; dates, decimals and model instances are
    stored as text (JSON), so an entry never fails to save because of a value's type.
    """
    entry = audit_entry(actor=actor, action=action, target=target, before=before, after=after)
    entry.save()
    return entry


def audit_entry(*, actor, action: str, target: Model, before: dict | None = None, after: dict | None = None):
    """The unsaved entry audit_record saves, for callers that save many at once (bulk_create)."""
    return AuditEntry(
        actor=actor,
        action=action,
        object_type=target._meta.model_name,
        object_id=str(target.pk),
        before=_as_json(before or {}),
        after=_as_json(after or {}),
        at=timezone.now(),
    )


def _as_json(values: dict) -> dict:
    return json.loads(json.dumps(values, cls=_Encoder))


class _Encoder(DjangoJSONEncoder):
    def default(self, o):
        if isinstance(o, Model):
            return str(o)
        if isinstance(o, (set, frozenset, tuple)):
            return sorted(o, key=str)
        return super().default(o)


def form_changes(form) -> tuple[dict, dict]:
    """(before, after) of the fields a bound, valid form changed: what an audit entry shows."""
    before = {name: form.initial.get(name) for name in form.changed_data}
    after = {name: form.cleaned_data.get(name) for name in form.changed_data}
    return before, after


# --- reading the log ---------------------------------------------------------------------------


def _distinct(field: str, label=str) -> list[tuple[str, str]]:
    values = AuditEntry.objects.order_by(field).values_list(field, flat=True).distinct()
    return [(value, label(value)) for value in values]


def _target_type_label(object_type: str) -> str:
    """A target type (a model name) as its model calls itself: "modelversion" → "Model version"."""
    model = next((m for m in apps.get_models() if m._meta.model_name == object_type), None)
    return capfirst(model._meta.verbose_name) if model else object_type


class AuditFilterForm(forms.Form):
    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end date is before the start date.")
        return data


class AuditFilter(django_filters.FilterSet):
    actor = django_filters.ModelChoiceFilter(
        queryset=get_user_model().objects.order_by("username"), empty_label="Anyone"
    )
    people_only = django_filters.BooleanFilter(
        method="only_people", label="People only (hide the system's entries)", widget=forms.CheckboxInput
    )
    action = django_filters.ChoiceFilter(choices=lambda: _distinct("action", action_label), empty_label="Any action")
    object_type = django_filters.ChoiceFilter(
        choices=lambda: _distinct("object_type", _target_type_label), empty_label="Any target", label="Target type"
    )
    since = django_filters.DateFilter(
        field_name="at", lookup_expr="date__gte", label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = django_filters.DateFilter(
        field_name="at", lookup_expr="date__lte", label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def only_people(self, queryset, name, value):
        return queryset.filter(actor__isnull=False) if value else queryset  # unticked: everyone

    class Meta:
        model = AuditEntry
        fields = ["actor", "people_only", "action", "object_type", "since", "until"]
        form = AuditFilterForm

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.form.fields["actor"].label_from_instance = person  # names as on every other page


def audit_entries():
    return AuditEntry.objects.select_related("actor").order_by("-at", "-id")


def audit_targets(entries) -> dict[tuple[str, str], dict]:
    """{(object type, object id): {"label", "url"}} for a page of entries, one query per
    type on the page; a target since deleted is missing (the page shows its type and id)."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for entry in entries:
        if entry.object_type in TARGETS and entry.object_id.isdigit():
            wanted[entry.object_type].add(int(entry.object_id))
    found = {}
    for object_type, ids in wanted.items():
        model_label, related, url_name = TARGETS[object_type]
        objects = apps.get_model(model_label).objects.select_related(*related).in_bulk(ids)
        for pk, target in objects.items():
            found[(object_type, str(pk))] = {"label": str(target), "url": reverse(url_name, args=[pk])}
    return found


def action_label(action: str) -> str:
    return ACTION_LABELS.get(action, action)


def audit_diff(entry: AuditEntry) -> list[dict]:
    """One row per value the entry mentions: its name, before, after, and whether it changed."""
    before, after = entry.before or {}, entry.after or {}
    names = list(dict.fromkeys([*before, *after]))
    return [
        {
            "name": name,
            "before": _shown(before[name], name) if name in before else "",
            "after": _shown(after[name], name) if name in after else "",
            "changed": before.get(name) != after.get(name),
        }
        for name in names
    ]


# Stored codes of hand-off entries, as the pages name them ("bad_timing" → "Bad timing").
VALUE_LABELS = {
    "stage": dict(LifecycleStage.choices),
    "reason": dict(RejectReason.choices),
    "rating": dict(LeadFeedback.Rating.choices),
}


def _shown(value, name: str = "") -> str:
    labels = VALUE_LABELS.get(name, {})
    if isinstance(value, str) and value in labels:
        return str(labels[value])
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
