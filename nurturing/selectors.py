"""Reads for nurture: sequence statistics."""

from django.db.models import Count, Q

from leads.models import StageChange

from .models import Enrolment, OutboundEmail, Sequence, StepSend


def sequence_stats(sequence: Sequence) -> dict:
    """Enrolled, sent, failed, unsubscribed, bounced and became-MQL counts for one sequence."""
    enrolments = Enrolment.objects.filter(sequence=sequence).aggregate(
        enrolled=Count("id"),
        active=Count("id", filter=Q(status="active")),
        completed=Count("id", filter=Q(status="completed")),
        unsubscribed=Count("id", filter=Q(exit_reason="unsubscribed")),
        became_mql=Count("id", filter=Q(exit_reason="became an MQL")),
    )
    sends = StepSend.objects.filter(enrolment__sequence=sequence).aggregate(
        skipped=Count("id", filter=Q(skipped=True)),
        sent=Count("id", filter=Q(email__status=OutboundEmail.Status.SENT)),
        failed=Count("id", filter=Q(email__status=OutboundEmail.Status.FAILED)),
        suppressed=Count("id", filter=Q(email__status=OutboundEmail.Status.SKIPPED)),
    )
    return {**enrolments, **sends}


def step_stats(sequence: Sequence) -> list[dict]:
    """Per step and variant: how many were sent, skipped and failed."""
    rows = (
        StepSend.objects.filter(enrolment__sequence=sequence)
        .values("step__position", "step__subject", "variant")
        .annotate(
            total=Count("id"),
            skipped=Count("id", filter=Q(skipped=True)),
            sent=Count("id", filter=Q(email__status=OutboundEmail.Status.SENT)),
            failed=Count("id", filter=Q(email__status=OutboundEmail.Status.FAILED)),
        )
        .order_by("step__position", "variant")
    )
    return list(rows)


def mql_after_enrolment(sequence: Sequence) -> int:
    """Contacts who became MQLs after entering the sequence (whether or not they had left it)."""
    return (
        StageChange.objects.filter(to_stage="mql", contact__enrolments__sequence=sequence)
        .values("contact")
        .distinct()
        .count()
    )


def contact_nurture_panel(contact) -> dict:
    """The contact page's nurture section: its enrolments, and the sequences it could join."""
    return {
        "enrolments": contact.enrolments.select_related("sequence"),
        "nurture_sequences": Sequence.objects.filter(status=Sequence.Status.ACTIVE),
    }
