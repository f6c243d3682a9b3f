"""Nurture sequences: who enters, what is sent when, who leaves."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from leads import handoff
from leads.models import Contact, LifecycleStage
from leads.services import contact_set_stage
from nurturing.models import Enrolment, OutboundEmail, Sequence, SequenceStep, StepSend, StepVariant
from nurturing.sequences import (
    enrol_contact,
    enrolments_advance_due,
    next_window_start,
    render_message,
    sequences_enrol_segments,
)

from ..factories import ContactFactory, ContactScoreFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sequence():
    sequence = Sequence.objects.create(name="Content track", status="active", entry_stages=["lead"])
    SequenceStep.objects.create(
        sequence=sequence,
        position=1,
        delay_amount=0,
        delay_unit="hours",
        subject="Hi {{ first_name | there }}",
        body="A guide for **{{ company | you }}**.",
    )
    SequenceStep.objects.create(
        sequence=sequence, position=2, delay_amount=3, delay_unit="days", subject="Part two", body="More."
    )
    return sequence


def _due(enrolment, minutes_ago=1):
    Enrolment.objects.filter(pk=enrolment.pk).update(next_due_at=timezone.now() - timedelta(minutes=minutes_ago))


class TestEntry:
    def test_the_segment_enrols_matching_contacts_once(self, sequence):
        lead = ContactFactory(lifecycle_stage="lead")
        ContactFactory(lifecycle_stage="customer")
        ContactFactory(lifecycle_stage="lead", email_consent_status="unsubscribed")

        assert sequences_enrol_segments() == 1
        assert sequences_enrol_segments() == 0
        assert list(Enrolment.objects.values_list("contact", flat=True)) == [lead.pk]

    def test_conditions_on_attributes_and_score_narrow_the_segment(self, sequence):
        sequence.entry_conditions = [{"field": "contact.country", "operator": "equals", "value": "France"}]
        sequence.entry_min_score = 10
        sequence.save()
        french = ContactFactory(country="France")
        ContactScoreFactory(contact=french, total=15)
        ContactFactory(country="France")  # not scored: 0 points
        ContactScoreFactory(contact=ContactFactory(country="France"), total=5)
        ContactFactory(country="Spain")

        sequences_enrol_segments()

        assert list(Enrolment.objects.values_list("contact", flat=True)) == [french.pk]

    def test_a_paused_sequence_enrols_nobody(self, sequence):
        sequence.status = "paused"
        sequence.save()
        ContactFactory()
        assert sequences_enrol_segments() == 0

    def test_rejected_for_bad_timing_enters_the_re_engagement_track(self, rep):
        track = Sequence.objects.create(
            name="Re-engage", status="active", entry="event", entry_reject_reason="bad_timing"
        )
        SequenceStep.objects.create(sequence=track, position=1, subject="Still interested?", body="…")
        contact = ContactFactory()
        contact_set_stage(contact=contact, to_stage=LifecycleStage.MQL)

        handoff.lead_reject(contact_id=contact.pk, user=rep, reason="bad_timing")

        assert Enrolment.objects.get(contact=contact).sequence == track


class TestSending:
    def test_a_due_step_is_mailed_once_with_merge_fields_filled(self, sequence):
        contact = ContactFactory(first_name="", account__name="Acme")
        enrolment = enrol_contact(sequence=sequence, contact=contact)
        _due(enrolment)

        assert enrolments_advance_due() == 1
        assert enrolments_advance_due() == 0

        email = OutboundEmail.objects.get()
        assert (email.to, email.subject, email.marketing) == (contact.email, "Hi there", True)
        assert "<strong>Acme</strong>" in email.body_html
        enrolment.refresh_from_db()
        assert enrolment.next_position == 2
        assert timedelta(days=2, hours=23) < enrolment.next_due_at - timezone.now() <= timedelta(days=3)

    def test_the_last_step_completes_the_enrolment(self, sequence):
        enrolment = enrol_contact(sequence=sequence, contact=ContactFactory())
        for _ in range(2):
            _due(enrolment)
            enrolments_advance_due()
            enrolment.refresh_from_db()

        assert enrolment.status == "completed"
        assert StepSend.objects.filter(enrolment=enrolment).count() == 2

    def test_a_contact_who_became_an_mql_leaves_without_another_email(self, sequence):
        contact = ContactFactory()
        enrolment = enrol_contact(sequence=sequence, contact=contact)
        contact_set_stage(contact=contact, to_stage=LifecycleStage.MQL)
        _due(enrolment)

        enrolments_advance_due()

        enrolment.refresh_from_db()
        assert (enrolment.status, enrolment.exit_reason) == ("exited", "became an MQL")
        assert not OutboundEmail.objects.exists()

    def test_accepting_a_lead_takes_it_out_of_nurture(self, sequence, rep):
        contact = ContactFactory()
        enrolment = enrol_contact(sequence=sequence, contact=contact)
        Contact.objects.filter(pk=contact.pk).update(lifecycle_stage=LifecycleStage.MQL)

        handoff.lead_accept(contact_id=contact.pk, user=rep)

        enrolment.refresh_from_db()
        assert (enrolment.status, enrolment.exit_reason) == ("exited", "accepted by sales")

    def test_a_skip_condition_skips_the_step(self, sequence):
        step = sequence.steps.get(position=1)
        step.skip_condition = {"field": "contact.country", "operator": "equals", "value": "Germany"}
        step.save()
        enrolment = enrol_contact(sequence=sequence, contact=ContactFactory(country="Germany"))
        _due(enrolment)

        enrolments_advance_due()

        assert StepSend.objects.get(enrolment=enrolment).skipped
        assert not OutboundEmail.objects.exists()

    def test_variants_split_contacts_stably(self, sequence):
        step = sequence.steps.get(position=1)
        StepVariant.objects.create(step=step, label="B", subject="Variant B", body="B body", weight=50)
        enrolments = [enrol_contact(sequence=sequence, contact=ContactFactory()) for _ in range(40)]
        for enrolment in enrolments:
            _due(enrolment)

        enrolments_advance_due()

        variants = list(StepSend.objects.values_list("variant", flat=True))
        assert sorted(set(variants)) == ["A", "B"]
        assert OutboundEmail.objects.filter(subject="Variant B").count() == variants.count("B")


class TestSendingWindow:
    def test_outside_the_window_waits_for_it_to_open(self, sequence, settings):
        settings.TIME_ZONE = "UTC"
        step = sequence.steps.get(position=1)
        step.send_weekdays, step.send_hour_from, step.send_hour_to = [0, 1, 2, 3, 4], 9, 17
        saturday_noon = datetime(2026, 11, 21, 12, tzinfo=UTC)

        assert next_window_start(step, saturday_noon) == datetime(2026, 11, 23, 9, tzinfo=UTC)

    def test_inside_the_window_sends_now(self, sequence):
        step = sequence.steps.get(position=1)
        step.send_hour_from, step.send_hour_to = 0, 24
        now = timezone.now()
        assert next_window_start(step, now) == now


def test_merge_fields_are_escaped_in_html_and_markdown_is_sanitised():
    contact = ContactFactory.build(first_name="<script>x</script>", account=None)

    message = render_message(
        "Hi {{ first_name | there }}", "Hello {{ first_name }} <img src=x onerror=alert(1)>", contact
    )

    assert "<script>" not in message["body_html"] and "onerror" not in message["body_html"]
    assert message["subject"] == "Hi <script>x</script>"  # a plain-text header: escaping is the mail client's job


class TestPages:
    def test_a_marketer_builds_and_activates_a_sequence(self, marketer_client):
        response = marketer_client.post(
            reverse("nurturing:sequence_new"),
            {"name": "Webinar follow-up", "entry": "segment", "entry_stages": ["lead"], "exit_on_mql": "on"},
        )
        sequence = Sequence.objects.get(name="Webinar follow-up")
        assert response["Location"] == reverse("nurturing:sequence_detail", args=[sequence.pk])

        bad = marketer_client.post(
            reverse("nurturing:step_new", args=[sequence.pk]),
            {"position": 1, "delay_amount": 1, "delay_unit": "days", "subject": "Hi {{ nickname }}", "body": "x"},
        )
        assert "Unknown merge field" in bad.content.decode()
        marketer_client.post(
            reverse("nurturing:step_new", args=[sequence.pk]),
            {
                "position": 1,
                "delay_amount": 1,
                "delay_unit": "days",
                "subject": "Hi {{ first_name | there }}",
                "body": "Thanks for joining.",
            },
        )
        marketer_client.post(reverse("nurturing:sequence_status", args=[sequence.pk, "active"]))

        sequence.refresh_from_db()
        assert sequence.status == "active" and sequence.steps.count() == 1

    def test_preview_renders_for_a_real_contact_and_a_test_goes_to_the_marketer(
        self, marketer_client, marketer, sequence
    ):
        contact = ContactFactory(first_name="Mira")
        step = sequence.steps.get(position=1)

        page = marketer_client.get(
            reverse("nurturing:step_preview", args=[sequence.pk, step.pk]), {"contact": contact.pk}
        ).content.decode()
        assert "Hi Mira" in page
        marketer_client.post(reverse("nurturing:step_send_test", args=[sequence.pk, step.pk]), {"contact": contact.pk})

        test_email = OutboundEmail.objects.get()
        assert (test_email.to, test_email.subject) == (marketer.email, "[TEST] Hi Mira")

    def test_sales_reps_cannot_edit_sequences(self, rep_client, sequence):
        assert rep_client.get(reverse("nurturing:sequence_list")).status_code == 403
        assert rep_client.post(reverse("nurturing:sequence_status", args=[sequence.pk, "paused"])).status_code == 403
        sequence.refresh_from_db()
        assert sequence.status == "active"


def test_results_count_opens_and_clicks_per_step_and_variant(sequence):
    from nurturing.models import EmailLink
    from nurturing.selectors import sequence_stats, step_stats
    from nurturing.tracking import email_record_click, email_record_open

    step = sequence.steps.get(position=1)
    step.body = "Read [the guide](https://example.com/guide)."
    step.save()
    StepVariant.objects.create(
        step=step, label="B", subject="Variant B", body="[Guide](https://example.com/b)", weight=50
    )
    enrolments = [enrol_contact(sequence=sequence, contact=ContactFactory()) for _ in range(24)]
    for enrolment in enrolments:
        _due(enrolment)
    enrolments_advance_due()
    sends = list(StepSend.objects.select_related("email"))
    opened = [s for s in sends if s.variant == "B"][:2] + [s for s in sends if s.variant == "A"][:1]
    for send in opened:
        email_record_open(email_id=send.email_id)
        email_record_open(email_id=send.email_id)  # a second open of the same email counts once
    email_record_click(link=EmailLink.objects.filter(email=opened[0].email).first())

    rows = {row["variant"]: row for row in step_stats(sequence)}
    assert (rows["B"]["opened"], rows["B"]["clicked"], rows["A"]["opened"], rows["A"]["clicked"]) == (2, 1, 1, 0)
    assert rows["A"]["total"] + rows["B"]["total"] == 24
    stats = sequence_stats(sequence)
    assert (stats["opened"], stats["clicked"], stats["enrolled"]) == (3, 1, 24)


def test_the_sequence_page_charts_sends_per_day(marketer_client, sequence):
    from nurturing.services import outbox_send_due

    enrolment = enrol_contact(sequence=sequence, contact=ContactFactory())
    _due(enrolment)
    enrolments_advance_due()
    outbox_send_due()

    response = marketer_client.get(reverse("nurturing:sequence_detail", args=[sequence.pk]))

    [today] = response.context["daily"]
    assert (today["sent"], today["opened"]) == (1, 0)
    assert "Emails sent, opened and clicked per day" in response.content.decode()
