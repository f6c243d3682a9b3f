"""Reads for nurture: sequence statistics."""

from django.db.models import Count, Q

from leads.models import Activity, StageChange

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
    email_ids = list(
        StepSend.objects.filter(enrolment__sequence=sequence, email__isnull=False).values_list("email_id", flat=True)
    )
    engaged = {
        "opened": len(_emails_with(email_ids, "email_open")),
        "clicked": len(_emails_with(email_ids, "email_click")),
        "bounced": Enrolment.objects.filter(sequence=sequence, exit_reason="hard bounce").count(),
    }
    return {**enrolments, **sends, **engaged}


def _emails_with(email_ids: list[int], activity_type: str) -> set[int]:
    """Which of these emails have an open (or click) recorded by the tracking endpoints."""
    if not email_ids:
        return set()
    return set(
        Activity.objects.filter(type__key=activity_type, properties__email_id__in=email_ids).values_list(
            "properties__email_id", flat=True
        )
    )


def step_stats(sequence: Sequence) -> list[dict]:
    """Per step and variant: processed, sent, skipped, failed, opened and clicked (A/B results)."""
    sends = list(
        StepSend.objects.filter(enrolment__sequence=sequence).values(
            "step__position", "step__subject", "variant", "skipped", "email_id", "email__status"
        )
    )
    email_ids = [send["email_id"] for send in sends if send["email_id"]]
    opened, clicked = _emails_with(email_ids, "email_open"), _emails_with(email_ids, "email_click")
    rows: dict[tuple, dict] = {}
    for send in sends:
        key = (send["step__position"], send["variant"])
        row = rows.setdefault(
            key,
            {
                "step__position": key[0],
                "step__subject": send["step__subject"],
                "variant": key[1],
                "total": 0,
                "sent": 0,
                "skipped": 0,
                "failed": 0,
                "opened": 0,
                "clicked": 0,
            },
        )
        row["total"] += 1
        row["skipped"] += send["skipped"]
        row["sent"] += send["email__status"] == OutboundEmail.Status.SENT
        row["failed"] += send["email__status"] == OutboundEmail.Status.FAILED
        row["opened"] += send["email_id"] in opened
        row["clicked"] += send["email_id"] in clicked
    return [rows[key] for key in sorted(rows)]


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


def daily_results(sequence: Sequence, *, days: int = 30) -> list[dict]:
    """Emails sent, opened and clicked per day over the last `days` days (the chart)."""
    from datetime import timedelta

    from django.db.models.functions import TruncDate
    from django.utils import timezone

    since = timezone.now() - timedelta(days=days)
    email_ids = list(
        StepSend.objects.filter(enrolment__sequence=sequence, email__isnull=False).values_list("email_id", flat=True)
    )
    series: dict = {}
    sent = (
        OutboundEmail.objects.filter(id__in=email_ids, status=OutboundEmail.Status.SENT, sent_at__gte=since)
        .annotate(day=TruncDate("sent_at"))
        .values("day")
        .annotate(n=Count("id"))
    )
    for row in sent:
        series.setdefault(row["day"], {"day": row["day"], "sent": 0, "opened": 0, "clicked": 0})["sent"] = row["n"]
    for key, type_key in (("opened", "email_open"), ("clicked", "email_click")):
        engaged = (
            Activity.objects.filter(type__key=type_key, properties__email_id__in=email_ids, occurred_at__gte=since)
            .annotate(day=TruncDate("occurred_at"))
            .values("day")
            .annotate(n=Count("id"))
        )
        for row in engaged:
            series.setdefault(row["day"], {"day": row["day"], "sent": 0, "opened": 0, "clicked": 0})[key] = row["n"]
    return [series[day] for day in sorted(series)]
