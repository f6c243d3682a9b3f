"""Roles are Django groups. Every page and API endpoint checks them on the server."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

SALES = "Sales"
MANAGER = "Sales manager"  # a rep who may act on every lead and reassign them
MARKETING = "Marketing"
ADMIN = "Admin"
ALL_ROLES = (SALES, MANAGER, MARKETING, ADMIN)


def user_roles(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    if not user.is_authenticated:
        return set()
    if user.is_superuser:
        return set(ALL_ROLES)
    cached = getattr(user, "_crm_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        if ADMIN in cached:
            cached = set(ALL_ROLES)
        elif MANAGER in cached:
            cached.add(SALES)
        user._crm_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    """True when the user holds any of `roles` (Admin holds every role)."""
    return bool(user_roles(user) & set(roles))
