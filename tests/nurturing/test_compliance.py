"""Marketing email compliance: footer and headers, unsubscribing, suppression, bounces."""

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from leads.models import Activity, Contact
from nurturing.compliance import prepare_marketing_email, unsubscribe_url
from nurturing.models import Enrolment, Sequence, Suppression
from nurturing.services import email_enqueue_message, outbox_send_due
from nurturing.tracking import make_token

from ..factories import ContactFactory

pytestmark = pytest.mark.django_db
FEEDBACK_SECRET = "feedback-secret-for-tests"


@pytest.fixture
def contact():
    return ContactFactory(email="ada@acme.example", first_name="Ada", email_consent_status="opted_in")


def queue_marketing_email(contact, *, key="nurture:1:1", to=None):
    email = email_enqueue_message(
        key=key,
        to=to or contact.email,
        subject="A guide for Acme",
        body_text="Hello Ada,\n\nread the guide: https://docs.example/guide",
        body_html='<p>Hello Ada, read <a href="https://docs.example/guide">the guide</a>.</p>',
        contact=contact,
        marketing=True,
    )
    prepare_marketing_email(email)
    return email


def path_of(url):
    return urlsplit(url).path


def unsubscribe_path(email):
    return path_of(email.headers["List-Unsubscribe"].strip("<>"))


def activities(contact, type_key):
    return Activity.objects.filter(contact=contact, type__key=type_key)


# --- the prepared email ----------------------------------------------------------------------


def test_both_parts_show_the_unsubscribe_link_and_the_postal_address(contact, settings):
    settings.COMPANY_POSTAL_ADDRESS = "Acme Marketing GmbH, Hauptstraße 1, 10115 Berlin"

    email = queue_marketing_email(contact)

    email.refresh_from_db()
    link = email.headers["List-Unsubscribe"].strip("<>")
    assert link.startswith(settings.SITE_URL + "/e/u/")
    assert email.body_text.startswith("Hello Ada,")
    assert f"Unsubscribe from these emails: {link}" in email.body_text
    assert "Acme Marketing GmbH, Hauptstraße 1, 10115 Berlin" in email.body_text
    assert f'<a href="{link}">Unsubscribe</a>' in email.body_html
    assert "Acme Marketing GmbH, Hauptstraße 1, 10115 Berlin" in email.body_html


def test_the_postal_address_is_escaped_in_the_html_part(contact, settings):
    settings.COMPANY_POSTAL_ADDRESS = "Smith & Sons <Ltd>, 1 Road"

    email = queue_marketing_email(contact)

    assert "Smith &amp; Sons &lt;Ltd&gt;, 1 Road" in email.body_html
    assert "<Ltd>" not in email.body_html


def test_the_email_asks_for_one_click_unsubscribe(contact):
    email = queue_marketing_email(contact)

    email.refresh_from_db()
    assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email.headers["List-Unsubscribe"].startswith("<http")


def test_preparing_the_same_email_twice_adds_one_footer(contact):
    email = queue_marketing_email(contact)
    again = email_enqueue_message(
        key="nurture:1:1", to=contact.email, subject="x", body_text="x", contact=contact, marketing=True
    )

    prepare_marketing_email(again)

    email.refresh_from_db()
    assert email.body_text.count("Unsubscribe from these emails") == 1
    assert email.body_html.count(">Unsubscribe</a>") == 1
    assert email.links.count() == 1


def test_a_notification_email_cannot_be_prepared_as_marketing(contact):
    email = email_enqueue_message(key="notify:1", to="rep@crm.example", subject="New MQL", body_text="…")

    with pytest.raises(ValueError):
        prepare_marketing_email(email)


# --- unsubscribing ---------------------------------------------------------------------------------


def test_opening_the_unsubscribe_link_only_asks(contact):
    email = queue_marketing_email(contact)

    response = Client().get(unsubscribe_path(email))

    page = response.content.decode()
    assert response.status_code == 200
    assert "ada@acme.example" in page and '<form method="post">' in page
    contact.refresh_from_db()
    assert contact.email_consent_status == "opted_in"
    assert not activities(contact, "unsubscribe").exists()


def test_one_click_post_without_cookies_or_csrf_token_unsubscribes(contact):
    email = queue_marketing_email(contact)
    browserless = Client(enforce_csrf_checks=True)

    response = browserless.post(unsubscribe_path(email), data={"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "You are unsubscribed" in response.content.decode()
    assert not response.cookies
    contact.refresh_from_db()
    assert contact.email_consent_status == "unsubscribed"
    assert contact.email_consent_source == "one-click unsubscribe"
    assert timezone.now() - contact.email_consent_at < timedelta(minutes=1)
    assert activities(contact, "unsubscribe").count() == 1


def test_the_confirmation_button_unsubscribes_too(contact, client):
    email = queue_marketing_email(contact)

    response = client.post(unsubscribe_path(email))

    assert response.status_code == 200
    contact.refresh_from_db()
    assert (contact.email_consent_status, contact.email_consent_source) == ("unsubscribed", "unsubscribe page")


def test_unsubscribing_ends_the_contacts_active_sequences(contact, client):
    sequence = Sequence.objects.create(name="Content track", status="active")
    enrolment = Enrolment.objects.create(sequence=sequence, contact=contact, enrolled_at=timezone.now())
    email = queue_marketing_email(contact)

    client.post(unsubscribe_path(email), data={"List-Unsubscribe": "One-Click"})

    enrolment.refresh_from_db()
    assert (enrolment.status, enrolment.exit_reason) == ("exited", "unsubscribed")


def test_unsubscribing_twice_records_one_unsubscribe(contact, client):
    email = queue_marketing_email(contact)

    client.post(unsubscribe_path(email), data={"List-Unsubscribe": "One-Click"})
    second = client.post(unsubscribe_path(email), data={"List-Unsubscribe": "One-Click"})

    assert second.status_code == 200
    assert activities(contact, "unsubscribe").count() == 1


def test_a_do_not_email_contact_stays_do_not_email_after_unsubscribing(contact, client):
    email = queue_marketing_email(contact)
    Contact.objects.filter(pk=contact.pk).update(email_consent_status="do_not_email")

    client.post(unsubscribe_path(email))

    contact.refresh_from_db()
    assert contact.email_consent_status == "do_not_email"


def test_an_unsubscribe_stops_emails_already_queued(contact, client, mailoutbox):
    first = queue_marketing_email(contact, key="nurture:1:1")
    second = queue_marketing_email(contact, key="nurture:1:2")

    client.post(unsubscribe_path(first), data={"List-Unsubscribe": "One-Click"})
    outbox_send_due()

    assert mailoutbox == []
    for email in (first, second):
        email.refresh_from_db()
        assert email.status == "skipped"
        assert email.error == "suppressed: contact is unsubscribed"


def forged(path, value):
    """The same signed link with its payload swapped for `value`: what an attacker would try."""
    token = path.rstrip("/").rsplit("/", 1)[1]
    _, signed_at, signature = token.split(":")
    payload = base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")
    return path.replace(token, f"{payload}:{signed_at}:{signature}")


def test_a_tampered_unsubscribe_link_changes_nothing(contact, client):
    email = queue_marketing_email(contact)
    other = ContactFactory()
    signed_for_clicks = f"/e/u/{make_token([other.pk, email.pk], purpose='click')}/"

    for path in (forged(unsubscribe_path(email), [other.pk, email.pk]), signed_for_clicks, "/e/u/not-a-token/"):
        response = client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 404

    for person in (contact, other):
        person.refresh_from_db()
        assert person.email_consent_status != "unsubscribed"
    assert not Activity.objects.filter(type__key="unsubscribe").exists()


def test_an_unsubscribe_link_older_than_its_lifetime_changes_nothing(contact, client, monkeypatch, settings):
    settings.EMAIL_LINK_MAX_AGE_DAYS = 365
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: timezone.now().timestamp() - 366 * 86400)
        path = path_of(unsubscribe_url(contact_id=contact.pk, email_id=None))

    response = client.post(path, data={"List-Unsubscribe": "One-Click"})

    assert response.status_code == 404
    assert "not valid" in response.content.decode()
    contact.refresh_from_db()
    assert contact.email_consent_status == "opted_in"


# --- suppression at send time -----------------------------------------------------------------------


def test_a_do_not_email_contact_gets_no_marketing_email(contact, mailoutbox):
    email = queue_marketing_email(contact)
    Contact.objects.filter(pk=contact.pk).update(email_consent_status="do_not_email")

    outbox_send_due()

    email.refresh_from_db()
    assert mailoutbox == []
    assert (email.status, email.error) == ("skipped", "suppressed: contact is do not email")


def test_a_notification_to_a_suppressed_address_is_still_sent(mailoutbox):
    Suppression.objects.create(address="rep@crm.example", reason="hard_bounce")
    email_enqueue_message(key="notify:1", to="rep@crm.example", subject="New MQL for you", body_text="…")

    outbox_send_due()

    assert [message.subject for message in mailoutbox] == ["New MQL for you"]


# --- bounces and complaints ----------------------------------------------------------------------------


@pytest.fixture
def feedback(client, settings):
    settings.EMAIL_FEEDBACK_SECRET = FEEDBACK_SECRET

    def post(payload, *, secret=FEEDBACK_SECRET, timestamp=None, body=None):
        body = body if body is not None else json.dumps(payload).encode()
        signed_at = str(timestamp or int(time.time()))
        signature = hmac.new(secret.encode(), signed_at.encode() + b"." + body, hashlib.sha256).hexdigest()
        return client.post(
            reverse("email:feedback"),
            data=json.dumps(payload).encode(),
            content_type="application/json",
            headers={"X-CRM-Signature": f"t={signed_at},v1={signature}"},
        )

    return post


def bounce(email, kind="hard", event_id="evt-1"):
    return {
        "id": event_id,
        "recipient": email.to.upper(),
        "kind": kind,
        "message_id": f"<outbox-{email.pk}@example.com>",
    }


def test_a_signed_hard_bounce_suppresses_the_address_and_later_sends_are_skipped(contact, feedback, mailoutbox):
    sent = queue_marketing_email(contact, key="nurture:1:1")

    response = feedback(bounce(sent, "hard"))
    later = queue_marketing_email(contact, key="nurture:1:2")
    outbox_send_due()

    assert response.status_code == 200
    assert Suppression.objects.get().address == "ada@acme.example"
    assert [a.properties["kind"] for a in activities(contact, "email_bounce")] == ["hard"]
    later.refresh_from_db()
    assert (later.status, later.error) == ("skipped", "suppressed: hard bounce")
    assert mailoutbox == []


def test_a_hard_bounce_ends_the_contacts_sequences(contact, feedback):
    sequence = Sequence.objects.create(name="Content track", status="active")
    enrolment = Enrolment.objects.create(sequence=sequence, contact=contact, enrolled_at=timezone.now())

    feedback(bounce(queue_marketing_email(contact), "hard"))

    enrolment.refresh_from_db()
    assert (enrolment.status, enrolment.exit_reason) == ("exited", "hard bounce")


def test_a_soft_bounce_is_recorded_but_mail_keeps_flowing(contact, feedback, mailoutbox):
    feedback(bounce(queue_marketing_email(contact, key="nurture:1:1"), "soft"))

    outbox_send_due()

    assert [a.properties["kind"] for a in activities(contact, "email_bounce")] == ["soft"]
    assert not Suppression.objects.exists()
    assert len(mailoutbox) == 1


def test_a_spam_complaint_suppresses_and_opts_the_contact_out(contact, feedback):
    response = feedback(bounce(queue_marketing_email(contact), "complaint"))

    assert response.status_code == 200
    assert Suppression.objects.get().reason == "complaint"
    contact.refresh_from_db()
    assert (contact.email_consent_status, contact.email_consent_source) == ("do_not_email", "spam complaint")
    assert activities(contact, "unsubscribe").count() == 1


def test_the_same_report_twice_counts_once(contact, feedback):
    email = queue_marketing_email(contact)

    feedback(bounce(email, "hard"))
    again = feedback(bounce(email, "hard"))

    assert again.status_code == 200
    assert Suppression.objects.count() == 1
    assert activities(contact, "email_bounce").count() == 1


def test_a_report_for_an_address_without_a_contact_still_suppresses_it(feedback):
    feedback({"id": "evt-9", "recipient": "Gone@Old.example", "kind": "hard"})

    assert Suppression.objects.get().address == "gone@old.example"


@pytest.mark.parametrize(
    "forgery",
    [
        {"secret": "a guessed secret"},
        {"body": b'{"id": "evt-1", "recipient": "someone@else.example", "kind": "hard"}'},
        {"timestamp": int(time.time()) - 3600},
    ],
    ids=["wrong secret", "body changed after signing", "replayed an hour later"],
)
def test_a_forged_report_changes_nothing(contact, feedback, forgery):
    email = queue_marketing_email(contact)

    response = feedback(bounce(email, "hard"), **forgery)

    assert response.status_code == 403
    assert not Suppression.objects.exists()
    assert not activities(contact, "email_bounce").exists()


def test_reports_are_refused_while_no_secret_is_configured(contact, feedback, settings):
    email = queue_marketing_email(contact)
    settings.EMAIL_FEEDBACK_SECRET = ""

    response = feedback(bounce(email, "hard"), secret="")

    assert response.status_code == 403
    assert not Suppression.objects.exists()


def test_a_signed_report_that_is_not_a_report_is_rejected(feedback):
    response = feedback({"id": "evt-1", "recipient": "not an address", "kind": "meltdown"})

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"recipient", "kind"}
    assert not Suppression.objects.exists()


def test_the_report_endpoint_only_accepts_post(client):
    assert client.get(reverse("email:feedback")).status_code == 405
