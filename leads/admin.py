from django.contrib import admin

from .models import (
    Account,
    Activity,
    ActivityType,
    AuditEntry,
    CampaignCost,
    Contact,
    CustomAttribute,
    HandoffDecision,
    ImportJob,
    ImportRejectedRow,
    LeadFeedback,
    Outcome,
    RepRotation,
    RoutingRule,
    StageChange,
)


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "domain", "industry", "employee_count", "country", "owner", "created_at"]
    list_filter = ["industry", "country"]
    search_fields = ["name", "domain"]
    raw_id_fields = ["owner"]


class StageChangeInline(admin.TabularInline):
    model = StageChange
    extra = 0
    fields = ["changed_at", "from_stage", "to_stage", "changed_by", "rule", "reason"]
    readonly_fields = fields
    can_delete = False


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["__str__", "email", "account", "job_title", "lifecycle_stage", "owner", "lead_source", "created_at"]
    list_filter = ["lifecycle_stage", "seniority", "email_consent_status", "lead_source"]
    search_fields = ["email", "first_name", "last_name", "external_id", "account__name"]
    raw_id_fields = ["account", "owner"]
    list_select_related = ["account", "owner"]
    inlines = [StageChangeInline]
    # Stage changes go through services (they are recorded); the admin shows them.
    readonly_fields = ["lifecycle_stage", "created_at", "updated_at"]


@admin.register(ActivityType)
class ActivityTypeAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "is_system"]
    search_fields = ["key", "name"]


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = ["occurred_at", "type", "contact", "source", "external_id"]
    list_filter = ["type", "source"]
    search_fields = ["contact__email", "external_id"]
    raw_id_fields = ["contact"]
    list_select_related = ["type", "contact"]
    date_hierarchy = "occurred_at"


@admin.register(StageChange)
class StageChangeAdmin(admin.ModelAdmin):
    list_display = ["changed_at", "contact", "from_stage", "to_stage", "changed_by", "rule"]
    list_filter = ["to_stage", "from_stage"]
    search_fields = ["contact__email", "rule", "reason"]
    raw_id_fields = ["contact", "changed_by"]
    date_hierarchy = "changed_at"


@admin.register(Outcome)
class OutcomeAdmin(admin.ModelAdmin):
    list_display = ["contact", "kind", "source", "occurred_at", "recorded_by"]
    list_filter = ["kind", "source"]
    raw_id_fields = ["contact", "recorded_by"]


@admin.register(CustomAttribute)
class CustomAttributeAdmin(admin.ModelAdmin):
    list_display = ["key", "label", "data_type", "created_at"]
    search_fields = ["key", "label"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "filename",
        "status",
        "total_rows",
        "created_count",
        "updated_count",
        "rejected_count",
        "created_by",
        "created_at",
    ]
    list_filter = ["status"]
    exclude = ["content"]
    readonly_fields = [
        "headers",
        "total_rows",
        "processed_rows",
        "created_count",
        "updated_count",
        "rejected_count",
        "started_at",
        "finished_at",
    ]


@admin.register(HandoffDecision)
class HandoffDecisionAdmin(admin.ModelAdmin):
    list_display = ["decided_at", "contact", "decision", "reason", "decided_by", "to_stage"]
    list_filter = ["decision", "reason"]
    raw_id_fields = ["contact", "decided_by"]


@admin.register(LeadFeedback)
class LeadFeedbackAdmin(admin.ModelAdmin):
    list_display = ["given_at", "contact", "rating", "reason", "given_by"]
    list_filter = ["rating", "reason"]
    raw_id_fields = ["contact", "given_by"]


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["at", "actor", "action", "object_type", "object_id"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_id", "action"]
    readonly_fields = ["actor", "action", "object_type", "object_id", "before", "after", "at"]


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    list_display = ["field", "value", "rep", "priority"]


@admin.register(RepRotation)
class RepRotationAdmin(admin.ModelAdmin):
    list_display = ["rep", "is_active", "last_assigned_at"]
    list_editable = ["is_active"]


@admin.register(ImportRejectedRow)
class ImportRejectedRowAdmin(admin.ModelAdmin):
    list_display = ["job", "row_number", "errors"]
    list_filter = ["job"]
    readonly_fields = ["job", "row_number", "values", "errors"]


@admin.register(CampaignCost)
class CampaignCostAdmin(admin.ModelAdmin):
    """Read-only: marketers change costs at /reports/costs/, which refuses overlapping periods
    (they would count spend twice) and writes the audit log."""

    list_display = ["campaign", "period_start", "period_end", "amount", "currency", "created_by"]
    list_filter = ["currency"]
    search_fields = ["campaign", "name"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
