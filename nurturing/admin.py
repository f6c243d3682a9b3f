from django.contrib import admin

from .models import OutboundEmail


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
        "sent_at",
        "error",
        "created_at",
    ]
