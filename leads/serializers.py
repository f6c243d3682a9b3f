"""API input and output shapes, kept apart (input validates, output presents)."""

import re
from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from .models import (
    Account,
    Activity,
    ActivityType,
    ConsentStatus,
    Contact,
    CustomAttribute,
    LifecycleStage,
    Seniority,
)
from .normalise import normalise_domain, normalise_email
from .selectors import contacts_by_email
from .services import IngestEvent


class AccountOutput(serializers.ModelSerializer):
    class Meta:
        model = Account
        fields = [
            "id",
            "name",
            "domain",
            "industry",
            "employee_count",
            "annual_revenue",
            "country",
            "owner",
            "created_at",
            "updated_at",
        ]


class AccountInput(serializers.ModelSerializer):
    class Meta:
        model = Account
        fields = ["name", "domain", "industry", "employee_count", "annual_revenue", "country", "owner"]
        extra_kwargs = {"domain": {"validators": []}}

    def validate_domain(self, value):
        domain = normalise_domain(value)
        if value and not domain:
            raise serializers.ValidationError("Enter a domain such as acme.com.")
        clash = Account.objects.filter(domain=domain) if domain else Account.objects.none()
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError("Another account already has this domain.")
        return domain


class ContactOutput(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", default=None, allow_null=True, read_only=True)

    class Meta:
        model = Contact
        fields = [
            "id",
            "email",
            "first_name",
            "last_name",
            "job_title",
            "seniority",
            "department",
            "phone",
            "country",
            "city",
            "account",
            "account_name",
            "lead_source",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
            "lifecycle_stage",
            "owner",
            "email_consent_status",
            "email_consent_at",
            "email_consent_source",
            "attributes",
            "external_id",
            "created_at",
            "updated_at",
        ]


def no_nul_characters(value) -> None:
    """PostgreSQL stores no NUL (\\u0000) in text or jsonb: refused here as a 400, not a 500
    from the database. DRF's text fields refuse it already; this covers free-form JSON."""
    if _has_nul(value):
        raise serializers.ValidationError("Text may not contain NUL characters (\\u0000).")


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def validate_attributes(value: dict) -> dict:
    """Known custom attributes only, each converted to its declared type."""
    from .importing import parse_typed

    if not isinstance(value, dict):
        raise serializers.ValidationError("Expected an object of attribute values.")
    kinds = dict(CustomAttribute.objects.filter(key__in=list(value)).values_list("key", "data_type"))
    errors, typed = {}, {}
    for key, raw in value.items():
        if key not in kinds:
            errors[key] = "Unknown custom attribute; define it first (admin or an import)."
            continue
        if raw is None or _already_typed(raw, kinds[key]):
            typed[key] = raw
            continue
        try:
            typed[key] = parse_typed(str(raw), kinds[key])
        except ValueError as error:
            errors[key] = str(error)
    if errors:
        raise serializers.ValidationError(errors)
    return typed


def _already_typed(raw, data_type: str) -> bool:
    if data_type == CustomAttribute.DataType.BOOLEAN:
        return isinstance(raw, bool)
    if data_type == CustomAttribute.DataType.NUMBER:
        return isinstance(raw, (int, float)) and not isinstance(raw, bool)
    return False


class ContactInput(serializers.Serializer):
    email = serializers.EmailField(required=False, allow_null=True, allow_blank=True, max_length=254)
    external_id = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=200)
    first_name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    last_name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    job_title = serializers.CharField(required=False, allow_blank=True, max_length=200)
    seniority = serializers.ChoiceField(choices=Seniority.choices, required=False, allow_blank=True)
    department = serializers.CharField(required=False, allow_blank=True, max_length=120)
    phone = serializers.CharField(required=False, allow_blank=True, max_length=50)
    country = serializers.CharField(required=False, allow_blank=True, max_length=80)
    city = serializers.CharField(required=False, allow_blank=True, max_length=120)
    account = serializers.PrimaryKeyRelatedField(queryset=Account.objects.all(), required=False, allow_null=True)
    lead_source = serializers.CharField(required=False, allow_blank=True, max_length=120)
    utm_source = serializers.CharField(required=False, allow_blank=True, max_length=120)
    utm_medium = serializers.CharField(required=False, allow_blank=True, max_length=120)
    utm_campaign = serializers.CharField(required=False, allow_blank=True, max_length=200)
    utm_term = serializers.CharField(required=False, allow_blank=True, max_length=200)
    utm_content = serializers.CharField(required=False, allow_blank=True, max_length=200)
    lifecycle_stage = serializers.ChoiceField(choices=LifecycleStage.choices, required=False)
    email_consent_status = serializers.ChoiceField(choices=ConsentStatus.choices, required=False)
    email_consent_source = serializers.CharField(required=False, allow_blank=True, max_length=200)
    attributes = serializers.DictField(
        child=serializers.JSONField(allow_null=True),
        required=False,
        validators=[no_nul_characters],
        help_text="Custom attribute values by key; each key must name a defined custom attribute.",
    )

    def validate_email(self, value):
        return normalise_email(value)

    def validate_attributes(self, value):
        return validate_attributes(value)

    def validate(self, data):
        if self.instance is None and not data.get("email") and not data.get("external_id"):
            raise serializers.ValidationError({"email": ["Give an email or an external_id."]})
        if self.instance is not None:
            self._check_unique(data)
        return data

    def _check_unique(self, data):
        email, external_id = data.get("email"), data.get("external_id")
        if email and contacts_by_email([email]).exclude(pk=self.instance.pk).exists():
            raise serializers.ValidationError({"email": ["Another contact already has this email."]})
        if external_id and Contact.objects.filter(external_id=external_id).exclude(pk=self.instance.pk).exists():
            raise serializers.ValidationError({"external_id": ["Another contact already has this external id."]})


class ActivityTypeSerializer(serializers.ModelSerializer):
    # The pattern is stated for the schema; validate_key below is what enforces it.
    key = serializers.RegexField(
        r"^[a-z][a-z0-9_]*$",
        max_length=60,
        validators=[UniqueValidator(queryset=ActivityType.objects.all())],
        error_messages={"invalid": "Use lower case letters, digits and underscores, starting with a letter."},
    )

    class Meta:
        model = ActivityType
        fields = ["key", "name", "description", "is_system"]
        read_only_fields = ["is_system"]

    def validate_key(self, value):
        from .forms import ACTIVITY_KEY

        if not ACTIVITY_KEY.fullmatch(value):
            raise serializers.ValidationError("Use lower case letters, digits and underscores, starting with a letter.")
        return value


class ActivityOutput(serializers.ModelSerializer):
    type = serializers.SlugRelatedField(slug_field="key", read_only=True)

    class Meta:
        model = Activity
        fields = ["id", "contact", "type", "occurred_at", "properties", "source", "external_id", "received_at"]


class IngestContactFields(serializers.Serializer):
    first_name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    last_name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    job_title = serializers.CharField(required=False, allow_blank=True, max_length=200)
    country = serializers.CharField(required=False, allow_blank=True, max_length=80)
    lead_source = serializers.CharField(required=False, allow_blank=True, max_length=120)


PLAIN_EVENT_KEYS = frozenset({"type", "occurred_at", "email", "source", "external_id", "properties"})
PLAIN_SLUG = re.compile(r"[-a-zA-Z0-9_]+")


def _plain_text(value, max_length: int) -> bool:
    """A string that CharField would keep as it is: no surrounding space, no NUL, not too long."""
    return isinstance(value, str) and len(value) <= max_length and value == value.strip() and "\x00" not in value


class IngestEventInput(serializers.Serializer):
    type = serializers.SlugField(max_length=60, help_text="An activity type key, e.g. page_view.")
    occurred_at = serializers.DateTimeField()
    email = serializers.EmailField(
        required=False,
        allow_blank=True,
        max_length=254,
        help_text="Identifies the contact; an unknown email creates one.",
    )
    contact_external_id = serializers.CharField(required=False, allow_blank=True, max_length=200)
    contact_id = serializers.IntegerField(required=False, min_value=1)
    source = serializers.SlugField(required=False, default="api", max_length=60)
    external_id = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="The source's event id; a re-sent id counts once."
    )
    properties = serializers.DictField(required=False, default=dict, validators=[no_nul_characters])
    contact = IngestContactFields(required=False, help_text="Fields for a contact this event creates.")

    def validate_occurred_at(self, value):
        if value > timezone.now() + timedelta(days=1):
            raise serializers.ValidationError("This time is in the future.")
        return value

    def validate(self, data):
        if not (data.get("email") or data.get("contact_external_id") or data.get("contact_id")):
            raise serializers.ValidationError(
                {"email": ["Identify the contact with email, contact_external_id or contact_id."]}
            )
        return data

    def plain_validated_data(self, raw: dict) -> dict | None:
        """run_validation for the common event (type, time, email, source, id, properties;
        nothing to trim, convert or complain about) without the serializer's per-field
        machinery, which costs more than the checks themselves in a bulk request. None sends
        the event through run_validation, which also words any error. The time and email
        still go through their DRF fields; tests check both paths agree on any input."""
        if not raw.keys() <= PLAIN_EVENT_KEYS:
            return None
        kind, source = raw.get("type"), raw.get("source", "api")
        external_id, properties = raw.get("external_id", ""), raw.get("properties", {})
        if not (_plain_text(kind, 60) and PLAIN_SLUG.fullmatch(kind) and _plain_text(source, 60)):
            return None
        if not (
            PLAIN_SLUG.fullmatch(source)
            and _plain_text(external_id, 200)
            and _plain_text(raw.get("email"), 254)
            and raw["email"]
        ):
            return None
        if not isinstance(properties, dict) or _has_nul(properties):
            return None
        fields = self.fields
        try:
            email = fields["email"].run_validation(raw["email"])
            occurred_at = self.validate_occurred_at(fields["occurred_at"].run_validation(raw.get("occurred_at")))
        except serializers.ValidationError:
            return None
        data = {
            "type": kind,
            "occurred_at": occurred_at,
            "email": email,
            "source": source,
            "properties": dict(properties),
        }
        if "external_id" in raw:
            data["external_id"] = external_id
        return data

    def to_event(self, index: int) -> IngestEvent:
        return self.event_from(self.validated_data, index)

    @staticmethod
    def event_from(data: dict, index: int) -> IngestEvent:
        return IngestEvent(
            index=index,
            type_key=data["type"],
            occurred_at=data["occurred_at"],
            source=data["source"],
            external_id=data.get("external_id") or None,
            properties=data["properties"],
            email=normalise_email(data.get("email")),
            contact_external_id=data.get("contact_external_id") or None,
            contact_id=data.get("contact_id"),
            contact_fields=data.get("contact", {}),
        )


class IngestResultOutput(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["created", "duplicate", "error"])
    activity_id = serializers.IntegerField(allow_null=True)
    contact_id = serializers.IntegerField(allow_null=True)
    errors = serializers.DictField(allow_null=True)


class IngestScoreOutput(serializers.Serializer):
    """The contact's score right after an event ingested with ?score=now."""

    total = serializers.DecimalField(max_digits=8, decimal_places=1)
    fit = serializers.DecimalField(max_digits=8, decimal_places=1)
    engagement = serializers.DecimalField(max_digits=8, decimal_places=1)
    fit_grade = serializers.CharField()
    mql_level = serializers.CharField(allow_blank=True)
    lifecycle_stage = serializers.CharField(source="contact.lifecycle_stage")


class IngestScoredResultOutput(IngestResultOutput):
    score = IngestScoreOutput(allow_null=True, required=False)


class BulkIngestOutput(serializers.Serializer):
    created = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    error = serializers.IntegerField()
    results = IngestResultOutput(many=True)
