"""The outbox against a real SMTP server (aiosmtpd on 127.0.0.1): what arrives, and what does not."""

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from django.test import Client
from django.utils import timezone

from nurturing.models import OutboundEmail, Sequence, SequenceStep
from nurturing.sequences import enrol_contact, enrolments_advance_due
from nurturing.services import outbox_send_due

from ..factories import AccountFactory, ContactFactory
from ..worker import free_port
from .smtp_sink import RecordingHandler, queue_nurture_email

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp_server(settings):
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.DEFAULT_FROM_EMAIL = "Acme Marketing <marketing@acme-crm.example>"
    settings.COMPANY_POSTAL_ADDRESS = "Acme Marketing GmbH, Hauptstraße 1, 10115 Berlin"
    yield handler
    controller.stop()


@pytest.fixture
def contact():
    return ContactFactory(email="ada@lovelace.example", first_name="Ada", account=AccountFactory(name="Analytical"))


def test_a_nurture_email_arrives_with_headers_both_parts_and_the_footer(smtp_server, contact, settings):
    email = queue_nurture_email(contact)

    assert outbox_send_due() == 1

    [envelope] = smtp_server.envelopes
    [message] = smtp_server.messages
    assert envelope.mail_from == "marketing@acme-crm.example"
    assert envelope.rcpt_tos == ["ada@lovelace.example"]
    assert message["From"] == "Acme Marketing <marketing@acme-crm.example>"
    assert message["To"] == "ada@lovelace.example"
    assert message["Subject"] == "Hi Ada, a guide for Analytical"
    assert message["Message-ID"] == f"<outbox-{email.pk}@acme-crm.example>"
    unsubscribe = message["List-Unsubscribe"].strip()  # folded onto its own line: it is longer than 78 characters
    assert unsubscribe.startswith(f"<{settings.SITE_URL}/e/u/") and unsubscribe.endswith("/>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert text.startswith("Hello Ada,") and "**Analytical**" in text
    assert "Hello Ada," in html and "<strong>Analytical</strong>" in html
    for part in (text, html):
        assert unsubscribe.strip("<>") in part
        assert "Acme Marketing GmbH, Hauptstraße 1, 10115 Berlin" in part
    assert f'<a href="{settings.SITE_URL}/e/c/' in html and "docs.example" not in html
    assert f'<img src="{settings.SITE_URL}/e/o/' in html
    email.refresh_from_db()
    assert email.status == "sent"


def test_sending_twice_delivers_once(smtp_server, contact):
    queue_nurture_email(contact)

    outbox_send_due()
    outbox_send_due()

    assert len(smtp_server.envelopes) == 1


def test_an_unsubscribed_contacts_queued_email_never_reaches_the_server(smtp_server, contact):
    email = queue_nurture_email(contact)
    unsubscribe = urlsplit(email.headers["List-Unsubscribe"].strip("<>")).path
    Client(enforce_csrf_checks=True).post(unsubscribe, data={"List-Unsubscribe": "One-Click"})

    assert outbox_send_due() == 0

    assert smtp_server.envelopes == []
    email.refresh_from_db()
    assert (email.status, email.error) == ("skipped", "suppressed: contact is unsubscribed")


def test_a_temporary_refusal_is_retried_later(smtp_server, contact):
    email = queue_nurture_email(contact)
    smtp_server.data_replies.append("451 4.3.0 Try again later")

    assert outbox_send_due() == 0

    email.refresh_from_db()
    assert smtp_server.envelopes == []
    assert (email.status, email.attempts) == ("queued", 1)
    assert email.next_attempt_at > timezone.now() + timedelta(seconds=20)
    assert "Try again later" in email.error

    OutboundEmail.objects.filter(pk=email.pk).update(next_attempt_at=timezone.now())
    assert outbox_send_due() == 1
    assert len(smtp_server.envelopes) == 1


@pytest.mark.parametrize(
    "stage, reply",
    [("rcpt_replies", "550 5.1.1 No such user"), ("data_replies", "554 5.7.1 Message rejected as spam")],
    ids=["unknown recipient", "content refused"],
)
def test_a_permanent_refusal_marks_the_email_failed_for_good(smtp_server, contact, stage, reply):
    email = queue_nurture_email(contact)
    getattr(smtp_server, stage).append(reply)

    outbox_send_due()
    OutboundEmail.objects.filter(pk=email.pk).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    outbox_send_due()

    email.refresh_from_db()
    assert (email.status, email.attempts) == ("failed", 1)
    assert reply.split(" ", 2)[2] in email.error
    assert smtp_server.envelopes == []


def test_a_greylisted_recipient_is_retried_not_failed(smtp_server, contact):
    email = queue_nurture_email(contact)
    smtp_server.rcpt_replies.append("450 4.2.0 Greylisted, come back later")

    outbox_send_due()

    email.refresh_from_db()
    assert email.status == "queued"


def test_a_sequence_step_goes_out_compliant_end_to_end(smtp_server, contact):
    sequence = Sequence.objects.create(name="Content track", status="active", entry="manual")
    SequenceStep.objects.create(
        sequence=sequence, position=1, delay_amount=0, delay_unit="hours", subject="Hi {{ first_name }}", body="Hi."
    )
    enrol_contact(sequence=sequence, contact=contact)

    enrolments_advance_due(now=timezone.now() + timedelta(seconds=1))
    outbox_send_due()

    [message] = smtp_server.messages
    assert message["Subject"] == "Hi Ada"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Acme Marketing GmbH" in message.get_body(("plain",)).get_content()
