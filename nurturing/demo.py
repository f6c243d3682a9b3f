"""The two demo sequences `seed_demo` creates: a content track and a re-engagement track."""

from .models import Sequence, SequenceStep

AWARENESS_STEPS = [
    (
        0,
        "hours",
        "A quick guide for {{ company | your team }}",
        "Hi {{ first_name | there }},\n\nTeams like **{{ company | yours }}** use lead scoring to spend "
        "sales time where it counts. Our [five-minute guide](https://example.com/guide) shows how."
        "\n\nCheers,\nThe Marketing team",
    ),
    (
        3,
        "days",
        "How a {{ job_title | team lead }} picks leads worth calling",
        "Hi {{ first_name | there }},\n\nThree signals predict a sales conversation better than any other: a demo "
        "request, a pricing-page visit, and a webinar. [See the research](https://example.com/research).",
    ),
    (
        5,
        "days",
        "Want to see it on your own data?",
        "Hi {{ first_name | there }},\n\nBook a 20-minute walkthrough and bring a CSV of your leads: "
        "[pick a time](https://example.com/demo).",
    ),
]
RE_ENGAGEMENT_STEPS = [
    (
        7,
        "days",
        "Is now a better time, {{ first_name | there }}?",
        "Hi {{ first_name | there }},\n\nWhen we last spoke the timing wasn't right. Here is what changed since: "
        "[product updates](https://example.com/updates).",
    ),
    (
        14,
        "days",
        "One last note from us",
        "Hi {{ first_name | there }},\n\nIf lead scoring is back on your list, "
        "[reply to this email or book a call](https://example.com/demo).",
    ),
]


def demo_sequences_create() -> list[Sequence]:
    """Create the demo sequences if missing (idempotent: matched by name)."""
    awareness = _sequence(
        "Awareness to consideration",
        description="Content for new leads with a reasonable fit who are not sales-ready yet.",
        entry_stages=["subscriber", "lead"],
        entry_grades=["A", "B", "C"],
        entry_max_score=59,
        steps=AWARENESS_STEPS,
    )
    recycled = _sequence(
        "Re-engagement for recycled leads",
        description="Leads sales handed back (bad timing, no budget…) hear from us again later.",
        entry_stages=["recycled"],
        steps=RE_ENGAGEMENT_STEPS,
    )
    return [awareness, recycled]


def _sequence(name: str, *, steps, **fields) -> Sequence:
    sequence, created = Sequence.objects.get_or_create(name=name, defaults={**fields, "status": "active"})
    if created:
        SequenceStep.objects.bulk_create(
            [
                SequenceStep(
                    sequence=sequence,
                    position=n,
                    delay_amount=amount,
                    delay_unit=unit,
                    subject=subject,
                    body=body,
                    send_weekdays=[0, 1, 2, 3, 4],
                    send_hour_from=8,
                    send_hour_to=18,
                )
                for n, (amount, unit, subject, body) in enumerate(steps, start=1)
            ]
        )
    return sequence
