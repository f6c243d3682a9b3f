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
    """'https://WWW.Acme.com/about' -> 'acme.com'; '' -> None."""
    value = (value or "").strip().lower()
    if not value:
        return None
    if "@" in value and "/" not in value:
        value = value.rsplit("@", 1)[1]
    if "//" not in value:
        value = "//" + value
    host = urlsplit(value).hostname or ""
    host = re.sub(r"^www\d*\.", "", host).strip(".")
    return host or None


def email_domain(email: str | None) -> str | None:
    email = normalise_email(email)
    if not email or "@" not in email:
        return None
    return email.rsplit("@", 1)[1]
