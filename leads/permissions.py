from rest_framework.permissions import SAFE_METHODS, BasePermission

from .roles import ADMIN, MARKETING, SALES, has_role


class HasCrmRole(BasePermission):
    """Any CRM role may read; writes need Marketing or Admin (integrations use such a user)."""

    message = "You need a Sales, Marketing or Admin role for this."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return has_role(request.user, SALES, MARKETING, ADMIN)
        return has_role(request.user, MARKETING, ADMIN)


class IsMarketing(BasePermission):
    message = "Only Marketing and Admin users may do this."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, MARKETING, ADMIN)
