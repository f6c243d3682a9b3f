"""Open and click tracking for marketing email: signed tokens, link rewriting, and the
activities that opens and clicks become (so they move the contact's score)."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from leads.services import IngestEvent, activities_ingest

from .models import EmailLink, OutboundEmail, StepSend

ACTIVITY_SOURCE = "email"
# An <a> tag's href, quoted (nh3, which sanitises our HTML, always quotes attributes).
LINK_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
# A transparent 1×1 GIF.
PIXEL_GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


# --- tokens ---------------------------------------------------------------------------------


def make_token(value, *, purpose: str) -> str:
    """Sign ids (never URLs or addresses) for one purpose: a click token is no unsubscribe token."""
    return signing.dumps(value, salt=f"nurturing.{purpose}")


def read_token(token: str, *, purpose: str):
    """The ids a token carries, or None when it was tampered with, made for another purpose or
    is older than EMAIL_LINK_MAX_AGE_DAYS."""
    try:
        return signing.loads(
            token, salt=f"nurturing.{purpose}", max_age=timedelta(days=settings.EMAIL_LINK_MAX_AGE_DAYS)
        )
    except signing.BadSignature:  # SignatureExpired is one too
        return None


def read_id_token(token: str, *, purpose: str) -> int | None:
    value = read_token(token, purpose=purpose)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def public_url(view_name: str, token: str) -> str:
    return settings.SITE_URL.rstrip("/") + reverse(view_name, args=[token])


# --- preparing an email ------------------------------------------------------------------------


def links_track(email: OutboundEmail) -> str:
    """Store every http(s) link of the HTML part and return the HTML with each one replaced by
    its click-tracking URL. mailto:, tel: and relative links are left alone."""
    position = 0

    def replace(match: re.Match) -> str:
        nonlocal position
        url = html.unescape(match.group(3)).strip()
        parts = urlsplit(url)
        if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
            return match.group(0)
        position += 1
        link = EmailLink.objects.create(email=email, position=position, url=url)
        tracked = public_url("email:click", make_token(link.pk, purpose="click"))
        return f"{match.group(1)}{match.group(2)}{html.escape(tracked)}{match.group(2)}"

    return LINK_HREF.sub(replace, email.body_html)


def open_pixel_html(email: OutboundEmail) -> str:
    url = public_url("email:open", make_token(email.pk, purpose="open"))
    return format_html('<img src="{}" width="1" height="1" alt="" style="display:block;border:0">', url)


# --- recording opens and clicks -------------------------------------------------------------------


def email_campaign(email: OutboundEmail) -> str:
    """The sequence (and step) an email was sent for, as scoring rules and reports name it."""
    send = StepSend.objects.filter(email=email).select_related("enrolment__sequence", "step").first()
    if send is None:
        return ""
    return f"{send.enrolment.sequence.name} · step {send.step.position}"


def email_record_open(*, email_id: int) -> bool:
    """Record that a marketing email was opened; returns True the first time only.

    An email counts one open however often its pixel loads: mail clients reload images,
    and privacy proxies (Apple Mail) fetch them without a person reading, so counting each
    load would inflate the score. The fixed external id makes a second load, even a
    concurrent one, a duplicate that activities_ingest drops.
    """
    email = OutboundEmail.objects.filter(pk=email_id, marketing=True).first()
    if email is None or email.contact_id is None:
        return False
    return _record(email, "email_open", external_id=f"open-{email.pk}", properties={"campaign": email_campaign(email)})


def email_record_click(*, link: EmailLink) -> bool:
    """Record a click on a stored link; returns True the first time only.

    Each link of each email counts once, for the same reason as opens: link scanners and
    double clicks repeat requests that say nothing more about the person's interest.
    """
    email = link.email
    if email.contact_id is None:
        return False
    properties = {"url": link.url, "campaign": email_campaign(email)}
    return _record(email, "email_click", external_id=f"click-{link.pk}", properties=properties)


def _record(email: OutboundEmail, type_key: str, *, external_id: str, properties: dict) -> bool:
    event = IngestEvent(
        index=0,
        type_key=type_key,
        occurred_at=timezone.now(),
        source=ACTIVITY_SOURCE,
        external_id=external_id,
        properties={**properties, "email_id": email.pk},
        contact_id=email.contact_id,
    )
    [outcome] = activities_ingest(events=[event])
    return outcome.status == "created"
