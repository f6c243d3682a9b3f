from django.contrib import admin

from .models import EmailLink, Enrolment, OutboundEmail, Sequence, SequenceStep, StepSend, StepVariant, Suppression


@admin.register(OutboundEmail)
class OutboundEmailAdmin(admin.ModelAdmin):
    list_display = ["created_at", "to", "subject", "status", "attempts", "sent_at"]
    list_filter = ["status"]
    search_fields = ["to", "subject", "key"]
    readonly_fields = [
        "key",
        "to",
        "contact",
        "subject",
        "body_text",
        "body_html",
        "headers",
        "attempts",
        "claimed_at",
        "claimed_by",
        "sent_at",
        "error",
        "created_at",
    ]


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["address", "reason", "created_at"]
    list_filter = ["reason"]
    search_fields = ["address"]


@admin.register(EmailLink)
class EmailLinkAdmin(admin.ModelAdmin):
    list_display = ["email", "position", "url"]
    raw_id_fields = ["email"]


@admin.register(Sequence)
class SequenceAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "entry", "updated_at"]
    list_filter = ["status", "entry"]


@admin.register(Enrolment)
class EnrolmentAdmin(admin.ModelAdmin):
    list_display = ["contact", "sequence", "status", "next_due_at", "exit_reason"]
    list_filter = ["status", "sequence"]
    raw_id_fields = ["contact"]


@admin.register(SequenceStep)
class SequenceStepAdmin(admin.ModelAdmin):
    list_display = ["sequence", "position", "subject", "delay_amount", "delay_unit"]
    list_filter = ["sequence"]


@admin.register(StepVariant)
class StepVariantAdmin(admin.ModelAdmin):
    list_display = ["step", "label", "subject", "weight"]


@admin.register(StepSend)
class StepSendAdmin(admin.ModelAdmin):
    list_display = ["enrolment", "step", "variant", "skipped", "email", "created_at"]
    list_filter = ["variant", "skipped"]
    raw_id_fields = ["enrolment", "email"]
