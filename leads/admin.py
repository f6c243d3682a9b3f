from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group

from .audit import audit_record
from .models import (
    Account,
    Activity,
    ActivityType,
    AuditEntry,
    CampaignCost,
    Contact,
    CustomAttribute,
    HandoffDecision,
    HandoffRequest,
    ImportJob,
    ImportRejectedRow,
    LeadFeedback,
    Outcome,
    RepRotation,
    RoutingRule,
    StageChange,
)
from .services import contacts_queue_rescore


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "domain", "industry", "employee_count", "country", "owner", "created_at"]
    list_filter = ["industry", "country"]
    search_fields = ["name", "domain"]
    raw_id_fields = ["owner"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change:  # fit rules read the account's fields: its contacts' scores follow, as after an API edit
            contact_ids = list(obj.contacts.values_list("pk", flat=True))
            contacts_queue_rescore(contact_ids, reason="account edited in the admin")


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

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # The score follows the fields fit rules read, as after an edit through the API.
        contacts_queue_rescore(
            [obj.pk], reason="contact edited in the admin" if change else "contact added in the admin"
        )


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

    # The log is a record: nobody adds, edits or deletes entries by hand.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    list_display = ["field", "value", "rep", "priority"]


@admin.register(HandoffRequest)
class HandoffRequestAdmin(admin.ModelAdmin):
    """New MQLs waiting for their hand-off task: browse only, the task writes and deletes them."""

    list_display = ["contact", "from_stage", "mql_at", "requested_at"]
    raw_id_fields = ["contact"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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


# --- roles and permissions, audited ------------------------------------------------------------
# Roles are groups, changed in this admin: the admin's save hooks record each change with the
# acting admin. (An m2m_changed signal on User.groups would fire too, but without knowing who
# made the change; and no service of ours changes roles.)


def _user_access(user) -> dict:
    return {
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "permissions": sorted(user.user_permissions.values_list("codename", flat=True)),
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
    }


def _group_access(group) -> dict:
    return {"permissions": sorted(group.permissions.values_list("codename", flat=True))}


class _AuditedAccessAdmin:
    """Records the access a user or group had before the admin's save and has after it,
    in the admin's transaction (the change form saves in one)."""

    access = None  # the function reading an object's access
    action = ""

    def save_model(self, request, obj, form, change):
        stored = type(obj).objects.filter(pk=obj.pk).first() if change else None
        request.access_before = type(self).access(stored) if stored else {}
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        before, after = request.access_before, type(self).access(form.instance)
        changed = [name for name in after if before.get(name) != after[name]]
        if changed:
            audit_record(
                actor=request.user,
                action=self.action,
                target=form.instance,
                before={name: before.get(name) for name in changed},
                after={name: after[name] for name in changed},
            )


class AuditedUserAdmin(_AuditedAccessAdmin, UserAdmin):
    access = _user_access
    action = "user.access"


class AuditedGroupAdmin(_AuditedAccessAdmin, GroupAdmin):
    access = _group_access
    action = "group.permissions"


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), AuditedUserAdmin)
admin.site.unregister(Group)
admin.site.register(Group, AuditedGroupAdmin)
