"""Reads of the CRM core."""

from collections.abc import Iterable

from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower

from .models import Activity, Contact, StageChange


def contacts_by_email(emails: Iterable[str]) -> QuerySet[Contact]:
    """Contacts whose email matches any of `emails`, ignoring case.

    Filters on LOWER(email) so PostgreSQL uses the case-insensitive unique index.
    """
    lowered = {email.lower() for email in emails if email}
    return Contact.objects.annotate(email_lower=Lower("email")).filter(email_lower__in=lowered)


def contact_ids_by_email(emails: Iterable[str]) -> dict[str, int]:
    """{lower-cased email: contact id} for these emails (the ingest's hot path: one array
    parameter on PostgreSQL instead of one placeholder per email)."""
    lowered = sorted({email.lower() for email in emails if email})
    if not lowered:
        return {}
    if connection.vendor != "postgresql":
        return {email.lower(): pk for email, pk in contacts_by_email(lowered).values_list("email", "id")}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT lower(email), id FROM {Contact._meta.db_table} WHERE lower(email) = ANY(%s::text[])", [lowered]
        )
        return dict(cursor.fetchall())


def contact_search(queryset: QuerySet[Contact], text: str) -> QuerySet[Contact]:
    """Contacts whose name, email or company contains every word of `text` (or whose external id starts with it)."""
    for word in text.split():
        queryset = queryset.filter(
            Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
            | Q(email__icontains=word)
            | Q(account__name__icontains=word)
            | Q(external_id__istartswith=word)
        )
    return queryset


def contact_timeline(contact: Contact, *, limit: int = 200) -> QuerySet[Activity]:
    return contact.activities.select_related("type").order_by("-occurred_at", "-id")[:limit]


def contact_stage_history(contact: Contact) -> QuerySet[StageChange]:
    return contact.stage_changes.select_related("changed_by").order_by("-changed_at", "-id")


def lead_handoff_panel(contact: Contact, user) -> dict:
    """What the lead page shows of the hand-off: the actions this user may take and the history."""
    from .forms_handoff import FeedbackForm, OutcomeForm, ReassignForm, RejectForm
    from .handoff import can_act_on
    from .roles import ADMIN, MANAGER, has_role

    return {
        "can_act": can_act_on(user, contact),
        "reject_form": RejectForm(prefix=f"lead{contact.pk}"),
        "feedback_form": FeedbackForm(),
        "outcome_form": OutcomeForm(),
        "reassign_form": ReassignForm() if has_role(user, MANAGER, ADMIN) else None,
        "decisions": contact.handoff_decisions.select_related("decided_by"),
        "feedback_given": contact.feedback.select_related("given_by"),
    }
