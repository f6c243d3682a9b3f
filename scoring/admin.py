from django.contrib import admin

from .models import ContactScore, EngagementRule, FitRule, ModelVersion, MqlLevel, RescoreRun, ScoringModel


class PublishedReadOnly:
    """Published rules never change (scores were computed from them); edit drafts in Scoring."""

    extra = 0

    def _editable(self, obj) -> bool:
        return obj is None or obj.status == ModelVersion.Status.DRAFT

    def has_add_permission(self, request, obj=None):
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(obj) and super().has_delete_permission(request, obj)


class FitRuleInline(PublishedReadOnly, admin.TabularInline):
    model = FitRule


class EngagementRuleInline(PublishedReadOnly, admin.TabularInline):
    model = EngagementRule
    raw_id_fields = ["activity_type"]


class MqlLevelInline(PublishedReadOnly, admin.TabularInline):
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
    list_display = ["id", "version", "reason", "total_contacts", "done_chunks", "total_chunks", "finished_at"]
