from django.contrib import admin

from .forms import VersionSettingsForm
from .models import (
    AccountRollupRequest,
    AccountScore,
    ContactScore,
    DailyEngagement,
    DraftPreview,
    EngagementRule,
    EngagementSums,
    FitRule,
    Matcher,
    ModelSuggestion,
    ModelVersion,
    MqlLevel,
    MqlQualification,
    PendingEngagement,
    RescoreChunk,
    RescoreRequest,
    RescoreRun,
    ScoreChange,
    ScoreChangeBatch,
    ScoringModel,
)


class RulesReadOnly:
    """Rules and levels are browsed here, never edited: the Scoring pages (and the API) edit a
    draft's rules with their checks, preview them and publish; published rules never change
    (scores were computed from them)."""

    extra = 0

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class FitRuleInline(RulesReadOnly, admin.TabularInline):
    model = FitRule


class EngagementRuleInline(RulesReadOnly, admin.TabularInline):
    model = EngagementRule
    raw_id_fields = ["activity_type"]


class MqlLevelInline(RulesReadOnly, admin.TabularInline):
    model = MqlLevel


@admin.register(ScoringModel)
class ScoringModelAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Read-mostly: rules are edited on a draft in the Scoring pages, where publishing rescores."""

    list_display = ["__str__", "status", "published_at", "published_by"]
    list_filter = ["status"]
    inlines = [FitRuleInline, EngagementRuleInline, MqlLevelInline]
    form = VersionSettingsForm  # a draft's settings get the Scoring page's checks here too

    def has_add_permission(self, request):
        return False  # a version starts as a draft of a model, on the Scoring pages

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status != ModelVersion.Status.DRAFT:
            return [field.name for field in ModelVersion._meta.fields]
        return ["status", "published_at", "published_by"]


@admin.register(ContactScore)
class ContactScoreAdmin(admin.ModelAdmin):
    list_display = ["contact", "total", "fit", "engagement", "fit_grade", "mql_level", "as_of"]
    list_filter = ["fit_grade", "mql_level"]
    raw_id_fields = ["contact"]
    search_fields = ["contact__email"]


@admin.register(RescoreRun)
class RescoreRunAdmin(admin.ModelAdmin):
    """Read-only: the publishes' runs are the chain along which stored scores stand for newer
    versions (selectors.publish_successions); an edited run would misstate every such score."""

    list_display = ["id", "version", "reason", "total_contacts", "done_chunks", "total_chunks", "finished_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RuleAdmin(RulesReadOnly, admin.ModelAdmin):
    list_filter = ["version"]
    search_fields = ["name"]


@admin.register(FitRule)
class FitRuleAdmin(RuleAdmin):
    list_display = ["name", "version", "field", "operator", "points"]


@admin.register(EngagementRule)
class EngagementRuleAdmin(RuleAdmin):
    list_display = ["name", "version", "activity_type", "points", "cap", "window_days", "half_life_days"]


@admin.register(MqlLevel)
class MqlLevelAdmin(RuleAdmin):
    list_display = ["name", "version", "min_score", "min_fit_grade"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Derived data written by the scoring engine: browse, never edit by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Matcher)
class MatcherAdmin(ReadOnlyAdmin):
    list_display = ["key", "activity_type", "property_name", "property_operator", "property_value", "backfilled"]


@admin.register(DailyEngagement)
class DailyEngagementAdmin(ReadOnlyAdmin):
    list_display = ["contact", "matcher", "day", "count"]
    raw_id_fields = ["contact"]
    list_filter = ["matcher"]


@admin.register(EngagementSums)
class EngagementSumsAdmin(ReadOnlyAdmin):
    list_display = ["contact", "as_of", "signature", "sums"]
    raw_id_fields = ["contact"]


@admin.register(PendingEngagement)
class PendingEngagementAdmin(ReadOnlyAdmin):
    list_display = ["contact", "matcher", "day", "count"]
    raw_id_fields = ["contact"]


@admin.register(ScoreChange)
class ScoreChangeAdmin(ReadOnlyAdmin):
    list_display = ["changed_at", "contact", "old_total", "new_total", "delta", "reason"]
    raw_id_fields = ["contact"]
    date_hierarchy = "changed_at"


@admin.register(ScoreChangeBatch)
class ScoreChangeBatchAdmin(ReadOnlyAdmin):
    """A full rescore's score changes, one row per chunk and bucket of contacts."""

    list_display = ["changed_at", "reason", "bucket", "change_count"]
    date_hierarchy = "changed_at"

    @admin.display(description="Changes")
    def change_count(self, batch: ScoreChangeBatch) -> int:
        return len(batch.contact_ids)


@admin.register(MqlQualification)
class MqlQualificationAdmin(ReadOnlyAdmin):
    list_display = ["qualified_at", "contact", "level", "total", "fit_grade"]
    list_filter = ["level", "fit_grade"]
    raw_id_fields = ["contact"]


@admin.register(AccountScore)
class AccountScoreAdmin(ReadOnlyAdmin):
    list_display = ["account", "total", "fit", "engagement", "engaged_contacts", "is_mqa"]
    list_filter = ["is_mqa"]


@admin.register(RescoreChunk)
class RescoreChunkAdmin(ReadOnlyAdmin):
    list_display = ["run", "first_contact_id", "last_contact_id", "status", "attempts", "changed_contacts"]
    list_filter = ["status"]


@admin.register(ModelSuggestion)
class ModelSuggestionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "scoring_model", "status", "target_kind", "target_value", "draft", "created_by"]
    list_filter = ["status", "target_kind"]


@admin.register(DraftPreview)
class DraftPreviewAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "version", "done_contacts", "total_contacts", "finished_at", "requested_by"]


@admin.register(RescoreRequest)
class RescoreRequestAdmin(ReadOnlyAdmin):
    list_display = ["contact", "reason", "requested_at"]
    raw_id_fields = ["contact"]


@admin.register(AccountRollupRequest)
class AccountRollupRequestAdmin(ReadOnlyAdmin):
    list_display = ["account", "requested_at"]
    raw_id_fields = ["account"]
