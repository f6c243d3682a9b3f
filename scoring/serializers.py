from rest_framework import serializers

from leads.serializers import no_nul_characters

from .models import (
    GRADES,
    HALF_LIFE_DAYS_LIMIT,
    POINTS_LIMIT,
    SCORE_LIMIT,
    WINDOW_DAYS_LIMIT,
    ContactScore,
    DraftPreview,
    EngagementRule,
    FitRule,
    ModelVersion,
    MqlLevel,
    MqlQualification,
    RescoreChunk,
    RescoreRun,
    ScoreChange,
    ScoringModel,
)
from .selectors import PROFILE_ACCOUNT_FIELDS, PROFILE_CONTACT_FIELDS


class ContributionOutput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["fit", "engagement", "cap"])
    rule = serializers.CharField()
    rule_id = serializers.IntegerField(allow_null=True)
    facts = serializers.CharField()
    # One rule's points before the caps can be far beyond a score (an uncapped rule times
    # thousands of events): the cap line then takes the dimension back within its cap.
    points = serializers.DecimalField(max_digits=20, decimal_places=1)


class ContactScoreOutput(serializers.ModelSerializer):
    version = serializers.StringRelatedField()
    explanation = ContributionOutput(many=True)

    class Meta:
        model = ContactScore
        fields = [
            "contact",
            "version",
            "total",
            "fit",
            "engagement",
            "fit_grade",
            "mql_level",
            "as_of",
            "computed_at",
            "explanation",
        ]


class ScoreChangeOutput(serializers.ModelSerializer):
    old_total = serializers.DecimalField(
        max_digits=8, decimal_places=1, allow_null=True, help_text="null for the contact's first score: it had none."
    )

    class Meta:
        model = ScoreChange
        fields = ["changed_at", "old_total", "new_total", "delta", "fit_grade", "reason"]


# --- scoring models, their versions and rules (scoring.model_api) ------------------------------

POINTS = {"min_value": -POINTS_LIMIT, "max_value": POINTS_LIMIT}
SCORE = {"min_value": 0, "max_value": SCORE_LIMIT}


def _fit_fields_help() -> str:
    contact = ", ".join(f"contact.{name}" for name in PROFILE_CONTACT_FIELDS)
    account = ", ".join(f"account.{name}" for name in PROFILE_ACCOUNT_FIELDS)
    return f"email, {contact}, {account}, or attribute.<key> of a custom attribute."


class DetailOutput(serializers.Serializer):
    detail = serializers.CharField()


class FitRuleOutput(serializers.ModelSerializer):
    value = serializers.JSONField(
        allow_null=True, help_text="A text, a list of texts (one of, contains, starts with, domain in) or [min, max]."
    )

    class Meta:
        model = FitRule
        fields = ["id", "name", "field", "operator", "value", "points"]


class FitRuleInput(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    field = serializers.CharField(max_length=120, help_text=_fit_fields_help())
    operator = serializers.ChoiceField(choices=FitRule.Operator.choices)
    value = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text='A text; a list of texts for "one of", "contains", "starts with" and "domain in"; [min, max] for '
        '"between" (null for an open end); null for "is set", "is empty" and "free mail".',
    )
    points = serializers.IntegerField(**POINTS, help_text="Negative points mark a negative signal; not 0.")

    def validate_value(self, value):
        plain = (str, int, float, type(None))
        if isinstance(value, bool) or not isinstance(value, (*plain, list)):
            raise serializers.ValidationError("Give a text, a number, a list of them, or null.")
        if isinstance(value, list) and not all(isinstance(i, plain) and not isinstance(i, bool) for i in value):
            raise serializers.ValidationError("A list holds texts or numbers (or null for an open end of a range).")
        no_nul_characters(value)
        return value


class EngagementRuleOutput(serializers.ModelSerializer):
    activity_type = serializers.SlugRelatedField(slug_field="key", read_only=True)

    class Meta:
        model = EngagementRule
        fields = [
            "id",
            "name",
            "activity_type",
            "property_name",
            "property_operator",
            "property_value",
            "points",
            "cap",
            "window_days",
            "half_life_days",
        ]


class EngagementRuleInput(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    activity_type = serializers.CharField(max_length=50, help_text="The activity type's key, e.g. pricing_page_view.")
    property_name = serializers.CharField(max_length=60, required=False, allow_blank=True)
    property_operator = serializers.ChoiceField(
        choices=EngagementRule.PropertyOperator.choices, required=False, allow_blank=True
    )
    property_value = serializers.CharField(max_length=200, required=False, allow_blank=True)
    points = serializers.IntegerField(**POINTS, help_text="Points per occurrence; negative for negative signals.")
    cap = serializers.IntegerField(min_value=1, max_value=SCORE_LIMIT, required=False, allow_null=True)
    window_days = serializers.IntegerField(
        min_value=1, max_value=WINDOW_DAYS_LIMIT, required=False, allow_null=True, help_text="Only the last N days."
    )
    half_life_days = serializers.IntegerField(
        min_value=1,
        max_value=HALF_LIFE_DAYS_LIMIT,
        required=False,
        allow_null=True,
        help_text="Points halve every N days (not with a window).",
    )


class MqlLevelOutput(serializers.ModelSerializer):
    class Meta:
        model = MqlLevel
        fields = ["id", "name", "min_score", "min_fit_grade"]


class MqlLevelInput(serializers.Serializer):
    name = serializers.CharField(max_length=40)
    min_score = serializers.IntegerField(min_value=1, max_value=SCORE_LIMIT)
    min_fit_grade = serializers.ChoiceField(choices=[(g, g) for g in GRADES], required=False)


class VersionSettingsInput(serializers.Serializer):
    """A draft's settings. Its status is not one of them: a draft becomes active by publishing."""

    def validate(self, data):
        if "status" in self.initial_data:
            raise serializers.ValidationError({"status": ["Publish the draft (POST …/publish/) to make it active."]})
        return data

    note = serializers.CharField(max_length=300, required=False, allow_blank=True)
    fit_cap = serializers.IntegerField(**SCORE, required=False)
    engagement_cap = serializers.IntegerField(**SCORE, required=False)
    grade_a_min = serializers.IntegerField(**SCORE, required=False)
    grade_b_min = serializers.IntegerField(**SCORE, required=False)
    grade_c_min = serializers.IntegerField(**SCORE, required=False)
    mqa_threshold = serializers.IntegerField(min_value=1, max_value=100 * SCORE_LIMIT, required=False)


class VersionSummaryOutput(serializers.ModelSerializer):
    scoring_model = serializers.PrimaryKeyRelatedField(read_only=True)
    based_on = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    published_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Who published it (a username)."
    )

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "scoring_model",
            "number",
            "status",
            "note",
            "based_on",
            "created_at",
            "published_at",
            "published_by",
        ]


class VersionOutput(VersionSummaryOutput):
    fit_rules = FitRuleOutput(many=True, read_only=True)
    engagement_rules = EngagementRuleOutput(many=True, read_only=True)
    mql_levels = MqlLevelOutput(many=True, read_only=True)

    class Meta(VersionSummaryOutput.Meta):
        fields = [
            *VersionSummaryOutput.Meta.fields,
            "fit_cap",
            "engagement_cap",
            "grade_a_min",
            "grade_b_min",
            "grade_c_min",
            "mqa_threshold",
            "fit_rules",
            "engagement_rules",
            "mql_levels",
        ]


class ScoringModelOutput(serializers.ModelSerializer):
    active_version = serializers.SerializerMethodField()
    draft = serializers.SerializerMethodField()

    class Meta:
        model = ScoringModel
        fields = ["id", "name", "description", "active_version", "draft"]

    def get_active_version(self, scoring_model) -> int | None:
        return self._version_id(scoring_model, ModelVersion.Status.ACTIVE)

    def get_draft(self, scoring_model) -> int | None:
        return self._version_id(scoring_model, ModelVersion.Status.DRAFT)

    @staticmethod
    def _version_id(scoring_model, status) -> int | None:
        return next((v.pk for v in scoring_model.versions.all() if v.status == status), None)


class RuleDiffOutput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["fit", "engagement", "level", "setting"])
    change = serializers.ChoiceField(choices=["added", "removed", "changed"])
    name = serializers.CharField()
    before = serializers.CharField()
    after = serializers.CharField()


class PreviewExampleOutput(serializers.Serializer):
    contact_id = serializers.IntegerField()
    old_total = serializers.DecimalField(max_digits=8, decimal_places=1)
    new_total = serializers.DecimalField(max_digits=8, decimal_places=1)
    old_level = serializers.CharField()
    new_level = serializers.CharField()
    old_grade = serializers.CharField()
    new_grade = serializers.CharField()


class PreviewResultOutput(serializers.Serializer):
    contacts = serializers.IntegerField(help_text="Contacts compared.")
    changed = serializers.IntegerField(help_text="Contacts whose total would change.")
    new_mqls = serializers.IntegerField(help_text="Leads that would become MQLs.")
    drops = serializers.IntegerField(help_text="Contacts that would fall below every MQL level.")
    new_examples = PreviewExampleOutput(many=True)
    drop_examples = PreviewExampleOutput(many=True)


class PreviewOutput(serializers.ModelSerializer):
    percent_done = serializers.IntegerField()
    is_finished = serializers.BooleanField()
    result = PreviewResultOutput(allow_null=True, help_text="null until the preview has finished.")

    class Meta:
        model = DraftPreview
        fields = [
            "id",
            "version",
            "total_contacts",
            "done_contacts",
            "percent_done",
            "is_finished",
            "failure",
            "created_at",
            "finished_at",
            "result",
        ]


class RunNewMqlOutput(serializers.ModelSerializer):
    email = serializers.CharField(source="contact.email", allow_null=True)
    owner = serializers.CharField(source="contact.owner.username", default=None, allow_null=True)
    lifecycle_stage = serializers.CharField(source="contact.lifecycle_stage")

    class Meta:
        model = MqlQualification
        fields = ["contact", "email", "level", "total", "fit_grade", "owner", "lifecycle_stage", "qualified_at"]


class RescoreRunSummaryOutput(serializers.ModelSerializer):
    percent_done = serializers.IntegerField()
    is_finished = serializers.BooleanField()
    new_mqls = serializers.IntegerField(help_text="Leads this rescore made MQLs (handed to sales).")

    class Meta:
        model = RescoreRun
        fields = [
            "id",
            "version",
            "base_version",
            "reason",
            "as_of",
            "total_chunks",
            "done_chunks",
            "percent_done",
            "is_finished",
            "total_contacts",
            "changed_contacts",
            "new_mqls",
            "created_at",
            "finished_at",
            "superseded",
        ]


class FailingChunkOutput(serializers.ModelSerializer):
    class Meta:
        model = RescoreChunk
        fields = ["first_contact_id", "last_contact_id", "attempts", "last_error"]


class RescoreRunOutput(RescoreRunSummaryOutput):
    best_new_mqls = RunNewMqlOutput(
        many=True, help_text="Once finished: the best scored of its new MQLs (25 at most), with their rep now."
    )
    failing_chunks = FailingChunkOutput(
        many=True, help_text="Until finished: chunks whose last attempt failed (the workers retry them every minute)."
    )

    class Meta(RescoreRunSummaryOutput.Meta):
        fields = [*RescoreRunSummaryOutput.Meta.fields, "best_new_mqls", "failing_chunks"]
