from datetime import UTC

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from .models import Account, Activity, Contact, LifecycleStage

BIGINT = 2**63 - 1


@extend_schema_field(OpenApiTypes.INT)
class IntegerFilter(django_filters.NumberFilter):
    """A whole number, as the schema says (NumberFilter would take 2.5 employees)."""

    field_class = forms.IntegerField

    def filter(self, qs, value):
        if value is not None:
            # SQL integers end at 64 bits: a larger value matches what its clamped value
            # matches (nothing, for an id) instead of failing in the database driver.
            value = max(-BIGINT - 1, min(value, BIGINT))
        return super().filter(qs, value)


class IdFilter(IntegerFilter):
    """Rows pointing at the object with this id. An unknown id matches nothing (an empty
    page, as any other filter value that matches nothing), not a 400 as Django's model
    choice filter would answer."""


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, converted to UTC: PostgreSQL refuses offsets beyond ±15:59, which
    ISO 8601 (and Python) allow, and a year-1 time east of Greenwich has no UTC value."""

    def to_python(self, value):
        value = super().to_python(value)
        try:
            return value.astimezone(UTC) if value is not None else None
        except OverflowError:
            raise forms.ValidationError("This time is out of range.", code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class AccountFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    domain = django_filters.CharFilter()
    industry = django_filters.CharFilter(lookup_expr="iexact")
    country = django_filters.CharFilter(lookup_expr="iexact")
    min_employees = IntegerFilter(field_name="employee_count", lookup_expr="gte")
    max_employees = IntegerFilter(field_name="employee_count", lookup_expr="lte")
    owner = IdFilter(field_name="owner_id")

    class Meta:
        model = Account
        fields = []


class ContactFilter(django_filters.FilterSet):
    email = django_filters.CharFilter(field_name="email", lookup_expr="iexact")
    lifecycle_stage = django_filters.MultipleChoiceFilter(choices=LifecycleStage.choices)
    country = django_filters.CharFilter(lookup_expr="iexact")
    lead_source = django_filters.CharFilter(lookup_expr="iexact")
    external_id = django_filters.CharFilter()
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")
    unassigned = django_filters.BooleanFilter(field_name="owner", lookup_expr="isnull")
    account = IdFilter(field_name="account_id")
    owner = IdFilter(field_name="owner_id")

    class Meta:
        model = Contact
        fields = ["seniority", "email_consent_status"]


class ActivityFilter(django_filters.FilterSet):
    type = django_filters.CharFilter(field_name="type__key")
    occurred_after = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="lt")
    contact = IdFilter(field_name="contact_id")

    class Meta:
        model = Activity
        fields = ["source"]
