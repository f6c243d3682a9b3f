from django.contrib import admin

from .models import ContactScore, EngagementRule, FitRule, ModelVersion, MqlLevel, RescoreRun, ScoringModel


class FitRuleInline(admin.TabularInline):
    model = FitRule
    extra = 0


class EngagementRuleInline(admin.TabularInline):
    model = EngagementRule
    extra = 0
    raw_id_fields = ["activity_type"]


class MqlLevelInline(admin.TabularInline):
    model = MqlLevel
    extra = 0


@admin.register(ScoringModel)
class ScoringModelAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Read-mostly: rules are edited on a draft in the Scoring pages, where publishing rescores."""

    list_display = ["__str__", "status", "published_at", "published_by"]
    list_filter = ["status"]
    inlines = [FitRuleInline, EngagementRuleInline, MqlLevelInline]


@admin.register(ContactScore)
class ContactScoreAdmin(admin.ModelAdmin):
    list_display = ["contact", "total", "fit", "engagement", "fit_grade", "mql_level", "as_of"]
    list_filter = ["fit_grade", "mql_level"]
    raw_id_fields = ["contact"]
    search_fields = ["contact__email"]


@admin.register(RescoreRun)
class RescoreRunAdmin(admin.ModelAdmin):
    list_display = ["id", "version", "reason", "total_contacts", "done_chunks", "total_chunks", "finished_at"]
