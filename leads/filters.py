import django_filters

from .models import Account, Activity, Contact, LifecycleStage


class AccountFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    domain = django_filters.CharFilter()
    industry = django_filters.CharFilter(lookup_expr="iexact")
    country = django_filters.CharFilter(lookup_expr="iexact")
    min_employees = django_filters.NumberFilter(field_name="employee_count", lookup_expr="gte")
    max_employees = django_filters.NumberFilter(field_name="employee_count", lookup_expr="lte")

    class Meta:
        model = Account
        fields = ["owner"]


class ContactFilter(django_filters.FilterSet):
    email = django_filters.CharFilter(field_name="email", lookup_expr="iexact")
    lifecycle_stage = django_filters.MultipleChoiceFilter(choices=LifecycleStage.choices)
    country = django_filters.CharFilter(lookup_expr="iexact")
    lead_source = django_filters.CharFilter(lookup_expr="iexact")
    external_id = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    unassigned = django_filters.BooleanFilter(field_name="owner", lookup_expr="isnull")

    class Meta:
        model = Contact
        fields = ["account", "owner", "seniority", "email_consent_status"]


class ActivityFilter(django_filters.FilterSet):
    type = django_filters.CharFilter(field_name="type__key")
    occurred_after = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = Activity
        fields = ["contact", "source"]
