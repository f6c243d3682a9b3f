"""Canonical forms for the keys we match records on."""

import re
from urllib.parse import urlsplit

FREE_MAIL_DOMAINS = frozenset(
    """gmail.com googlemail.com yahoo.com yahoo.co.uk yahoo.fr hotmail.com hotmail.co.uk
    outlook.com live.com msn.com aol.com icloud.com me.com mac.com mail.com gmx.com gmx.de
    gmx.net web.de yandex.com yandex.ru proton.me protonmail.com zoho.com rediffmail.com
    qq.com 163.com 126.com""".split()
)


def normalise_email(email: str | None) -> str | None:
    email = (email or "").strip()
    return email.lower() or None


def normalise_domain(value: str | None) -> str | None:
    """'https://WWW.Acme.com/about' -> 'acme.com'; '' or no host in it -> None.

    Idempotent: a stored domain normalises to itself, so looking it up again matches.
    """
    value = (value or "").strip().lower()
    if not value:
        return None
    if "@" in value and "/" not in value:
        value = value.rsplit("@", 1)[1]
    if "//" not in value:
        value = "//" + value
    try:
        host = urlsplit(value).hostname or ""
    except ValueError:  # e.g. "http://[oops": there is no host to find
        return None
    # Every leading "www." and stray dot or space, not just the first, or a second pass differs.
    host = re.sub(r"^(?:www\d*\.|[.\s])+|[.\s]+$", "", host)
    if ":" in host:  # an IPv6 literal, not a company's domain
        return None
    return host or None


def email_domain(email: str | None) -> str | None:
    email = normalise_email(email)
    if not email or "@" not in email:
        return None
    return email.rsplit("@", 1)[1]
