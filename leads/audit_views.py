"""The audit log page: admins only."""

from django.core.paginator import Paginator
from django.shortcuts import render

from .audit import AuditFilter, action_label, audit_diff, audit_entries, audit_targets
from .decorators import role_required
from .roles import ADMIN


@role_required(ADMIN)
def audit_log(request):
    filterset = AuditFilter(request.GET or None, queryset=audit_entries())
    entries = filterset.qs if filterset.is_bound else audit_entries()
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    targets = audit_targets(page)
    rows = [
        {
            "entry": entry,
            "action": action_label(entry.action),
            "target": targets.get((entry.object_type, entry.object_id)),
            "diff": audit_diff(entry),
        }
        for entry in page
    ]
    return render(request, "leads/audit_log.html", {"filter": filterset, "page": page, "rows": rows})
