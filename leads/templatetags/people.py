"""How people (users) are named on every page: their full name, else their username."""

from django import template

register = template.Library()


@register.filter
def person(user) -> str:
    """`{{ contact.owner|person }}`: the same name for a rep in the queue, on the lead page and
    in the audit log."""
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()
