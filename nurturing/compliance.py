"""What makes a marketing email lawful and honoured: the footer and List-Unsubscribe
headers, unsubscribing, and suppression of addresses that bounced or complained.

Consent (unsubscribed, do not email) lives on the contact; suppression (hard bounce,
spam complaint) on the address, in Suppression. Both are checked when the outbox sends,
not when the email is queued, so an unsubscribe stops emails that are already queued.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.html import format_html

from leads.models import ConsentStatus, Contact
from leads.selectors import contacts_by_email
from leads.services import IngestEvent, activities_ingest, contact_update

from .models import OutboundEmail, Suppression
from .tracking import ACTIVITY_SOURCE, email_campaign, links_track, make_token, open_pixel_html, public_url, read_token

NO_EMAIL = {ConsentStatus.UNSUBSCRIBED, ConsentStatus.DO_NOT_EMAIL}
LIST_UNSUBSCRIBE = "List-Unsubscribe"
FEEDBACK_KINDS = {"hard", "soft", "complaint"}
# A signed feedback request older than this is refused, so a captured one cannot be replayed later.
FEEDBACK_TOLERANCE_SECONDS = 300
MESSAGE_ID = re.compile(r"<?outbox-(\d+)@")
BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


# --- preparing a marketing email --------------------------------------------------------------


def prepare_marketing_email(email: OutboundEmail) -> None:
    """Make a freshly queued marketing email compliant and trackable, and save it.

    Adds the visible unsubscribe link and the postal address to both parts, the
    List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 one-click) headers, click tracking
    on every http(s) link of the HTML part and an open pixel. Call it in the transaction
    that created the row, before anything can send it. Idempotent: a row already prepared
    (the same key queued twice returns the stored row) is left as it is.
    """
    if LIST_UNSUBSCRIBE in email.headers:
        return
    if not email.marketing or email.contact_id is None:
        raise ValueError("Only a marketing email with a contact can be prepared: the unsubscribe link names them.")
    unsubscribe = unsubscribe_url(contact_id=email.contact_id, email_id=email.pk)
    email.body_text = email.body_text.rstrip() + _text_footer(unsubscribe)
    if email.body_html:
        email.body_html = _append_to_body(links_track(email), _html_footer(unsubscribe) + open_pixel_html(email))
    email.headers = {
        **email.headers,
        LIST_UNSUBSCRIBE: f"<{unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    email.save(update_fields=["body_text", "body_html", "headers"])


def unsubscribe_url(*, contact_id: int, email_id: int | None) -> str:
    return public_url("email:unsubscribe", make_token([contact_id, email_id], purpose="unsubscribe"))


def read_unsubscribe_token(token: str) -> tuple[int, int | None] | None:
    value = read_token(token, purpose="unsubscribe")
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)):
        return None
    return value[0], value[1]


def _text_footer(unsubscribe: str) -> str:
    return f"\n\n-- \nUnsubscribe from these emails: {unsubscribe}\n{settings.COMPANY_POSTAL_ADDRESS}\n"


def _html_footer(unsubscribe: str) -> str:
    return format_html(
        '<hr><p style="font-size:12px;color:#666666">You receive this email because you are in touch with us. '
        '<a href="{}">Unsubscribe</a> from these emails.<br>{}</p>',
        unsubscribe,
        settings.COMPANY_POSTAL_ADDRESS,
    )


def _append_to_body(body_html: str, addition: str) -> str:
    """Put `addition` at the end of the document: before </body> when the HTML has one."""
    ends = list(BODY_END.finditer(body_html))
    if not ends:
        return body_html + addition
    at = ends[-1].start()
    return body_html[:at] + addition + body_html[at:]


# --- at send time ----------------------------------------------------------------------------------


def suppression_reason(email: OutboundEmail) -> str:
    """Why this marketing email must not be sent now, or "" when it may.

    Read by the outbox right before sending, from the database as it is then: an
    unsubscribe committed before this read stops the email; one committed while the
    message is already on the wire cannot.
    """
    contacts = [email.contact] if email.contact else []
    contacts += list(contacts_by_email([email.to]).exclude(pk__in=[c.pk for c in contacts]))
    for contact in contacts:
        if contact.email_consent_status in NO_EMAIL:
            return f"suppressed: contact is {contact.get_email_consent_status_display().lower()}"
    suppression = Suppression.objects.filter(address=email.to.strip().lower()).first()
    if suppression:
        return f"suppressed: {suppression.get_reason_display().lower()}"
    return ""


# --- unsubscribing ---------------------------------------------------------------------------------


@transaction.atomic
def contact_unsubscribe(
    *, contact_id: int, source: str, email_id: int | None = None, status: str = ConsentStatus.UNSUBSCRIBED
) -> bool:
    """Opt the contact out of marketing email now; False when they already were (or are gone).

    Sets consent (with time and source), records an "unsubscribe" activity (scoring's
    negative rule) and ends their active enrolments. Emails already queued are left to the
    outbox, which skips them at send time. The contact row is locked, so two requests at
    once (a mail client's one-click POST and the person's own click) record one unsubscribe.
    """
    contact = Contact.objects.select_for_update().filter(pk=contact_id).first()
    if contact is None or contact.email_consent_status in NO_EMAIL:
        return False
    now = timezone.now()
    contact_update(contact=contact, email_consent_status=status, email_consent_at=now, email_consent_source=source)
    email = OutboundEmail.objects.filter(pk=email_id).first() if email_id else None
    properties = {"via": source, "campaign": email_campaign(email) if email else "", "email_id": email_id}
    _ingest(contact, "unsubscribe", properties=properties, external_id=f"unsubscribe-{contact.pk}-{now.timestamp()}")
    _exit_enrolments(contact, reason="unsubscribed")
    return True


def _exit_enrolments(contact: Contact, *, reason: str) -> None:
    from .sequences import enrolments_exit  # sequences imports the outbox, which imports this module

    enrolments_exit(contact=contact, reason=reason)


def _ingest(contact: Contact, type_key: str, *, properties: dict, external_id: str) -> None:
    event = IngestEvent(
        index=0,
        type_key=type_key,
        occurred_at=timezone.now(),
        source=ACTIVITY_SOURCE,
        external_id=external_id[:200],
        properties=properties,
        contact_id=contact.pk,
    )
    activities_ingest(events=[event])


# --- bounces and complaints ------------------------------------------------------------------------


def feedback_signature_valid(body: bytes, header: str) -> bool:
    """Check `X-CRM-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>` made with
    EMAIL_FEEDBACK_SECRET. Without a secret configured, nothing is accepted."""
    secret = settings.EMAIL_FEEDBACK_SECRET
    fields = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, signature = fields.get("t", ""), fields.get("v1", "")
    if not secret or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > FEEDBACK_TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


@transaction.atomic
def delivery_feedback_record(*, recipient: str, kind: str, event_id: str, message_id: str = "") -> None:
    """A bounce or a spam complaint reported for an address by the mail provider.

    Hard bounce: the address is suppressed, an email_bounce activity (kind "hard") is
    recorded and the contact leaves their sequences. Soft bounce: only the activity.
    Complaint: the address is suppressed and the contact is opted out (do not email), which
    records an unsubscribe activity. Safe to receive twice: suppression is one row per
    address and the activity is keyed on the provider's event id.
    """
    address = recipient.strip().lower()
    email = _feedback_email(address, message_id)
    contact = email.contact if email and email.contact else contacts_by_email([address]).first()
    if kind == "complaint":
        address_suppress(address=address, reason=Suppression.Reason.COMPLAINT, detail=event_id)
        if contact:
            contact_unsubscribe(
                contact_id=contact.pk,
                source="spam complaint",
                email_id=email.pk if email else None,
                status=ConsentStatus.DO_NOT_EMAIL,
            )
        return
    if kind == "hard":
        address_suppress(address=address, reason=Suppression.Reason.HARD_BOUNCE, detail=event_id)
    if contact is None:
        return
    properties = {
        "kind": kind,
        "campaign": email_campaign(email) if email else "",
        "email_id": email.pk if email else None,
    }
    _ingest(contact, "email_bounce", properties=properties, external_id=f"feedback-{event_id}")
    if kind == "hard":
        _exit_enrolments(contact, reason="hard bounce")


def _feedback_email(address: str, message_id: str) -> OutboundEmail | None:
    """The outbox row the feedback is about, when its Message-ID names one sent to this address."""
    match = MESSAGE_ID.search(message_id or "")
    if match is None:
        return None
    email = OutboundEmail.objects.filter(pk=int(match.group(1))).select_related("contact").first()
    return email if email and email.to.strip().lower() == address else None


def address_suppress(*, address: str, reason: str, detail: str = "") -> Suppression:
    """Never send marketing email to this address again (the first reason recorded stays)."""
    suppression, _ = Suppression.objects.get_or_create(
        address=address.strip().lower(), defaults={"reason": reason, "detail": detail[:500]}
    )
    return suppression
