"""Text that ends in a header, an address or a line: no control characters (CR, LF, NUL...).

A CR or LF in a MIME type, a contact or a title would end up in an HTTP header, an e-mail
header or a log line; a NUL cannot be stored by PostgreSQL. Every door refuses them with a
clear error, through these checks, before anything is stored.
"""

from __future__ import annotations

import re

from dmp.errors import InvalidInput

# RFC 6838 restricted names: type "/" subtype, optional ";" parameters of token=value.
_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MIME = re.compile(rf"^{_NAME}/{_NAME}(\s*;\s*{_NAME}=(?:{_NAME}|\"[^\"\\]*\"))*$")
_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$"
)
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")


def has_control(value: str, *, newlines: bool = False) -> bool:
    """A C0 control character or DEL (tab allowed; CR and LF only with ``newlines``)."""
    allowed = {"\t", "\r", "\n"} if newlines else {"\t"}
    return any((ord(c) < 32 or ord(c) == 127) and c not in allowed for c in value)


def single_line(value: str, field: str, french: str | None = None) -> str:
    """``field`` names the field in English (the APIs), ``french`` in French (the portals)."""
    if has_control(value):
        raise InvalidInput(
            f"{field} holds a control character (CR, LF, NUL...), which it may not",
            french=f"le champ « {french or field} » contient un caractère de contrôle (retour "
            "à la ligne, NUL...) : retirez-le",
        )
    return value


def mime_type(value: str) -> str:
    """A MIME type as RFC 6838 names them (``text/plain``, ``application/pdf``)."""
    if has_control(value) or not _MIME.match(value) or len(value) > 80:
        raise InvalidInput(
            f"the MIME type {value[:40]!r} is not a type/subtype (RFC 6838), as in application/pdf"
        )
    return value


def contact(channel: str, value: str) -> str:
    """An e-mail address (courriel) or a phone number in international or French form (sms),
    normalised; empty stays empty."""
    value = value.strip()
    if not value:
        return ""
    single_line(value, "contact")
    if channel == "sms":
        digits = re.sub(r"[\s.()-]", "", value)
        if digits.startswith("0") and len(digits) == 10:
            digits = "+33" + digits[1:]
        if not _PHONE.match(digits):
            raise InvalidInput(
                f"{value[:40]!r} is not a phone number",
                french="ce numéro de téléphone n'est pas valide (par exemple 06 12 34 56 78)",
            )
        return digits
    if len(value) > 200 or not _EMAIL.match(value):
        raise InvalidInput(
            f"{value[:40]!r} is not an e-mail address",
            french="cette adresse électronique n'est pas valide (par exemple nom@exemple.fr)",
        )
    return value
