"""French as people read it: dates in Paris time, professions by name (TRE_G15)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)
PROFESSIONS = {
    "10": "médecin",
    "21": "pharmacien",
    "26": "audioprothésiste",
    "28": "opticien-lunetier",
    "40": "chirurgien-dentiste",
    "50": "sage-femme",
    "60": "infirmier",
    "70": "masseur-kinésithérapeute",
    "80": "pédicure-podologue",
    "91": "orthophoniste",
    "92": "orthoptiste",
    "94": "ergothérapeute",
    "95": "psychomotricien",
    "96": "manipulateur d'électroradiologie",
}


def date_fr(value: date | datetime | None) -> str:
    """27 novembre 2026 (a time is taken in Paris time)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(PARIS).date() if value.tzinfo else value.date()
    day = "1er" if value.day == 1 else str(value.day)
    return f"{day} {MONTHS[value.month - 1]} {value.year}"


def datetime_fr(value: datetime | None) -> str:
    """27 novembre 2026 à 14 h 05 (Paris time)."""
    if value is None:
        return ""
    local = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(PARIS)
    return f"{date_fr(local.date())} à {local.hour} h {local.minute:02d}"


NARROW_NBSP = "\u202f"  # the French thousands separator and the space before %


def number_fr(n: int) -> str:
    """619 362 (a narrow no-break space between thousands)."""
    return f"{n:,}".replace(",", NARROW_NBSP)


def percent_fr(value: float) -> str:
    """A percentage in French notation: 16,1 % (one decimal), and small shares with two
    significant digits so that they do not read as zero: 0,0019 %."""
    if value >= 1 or value == 0:
        text = f"{value:.1f}"
    else:
        value = float(f"{value:.2g}")  # two significant digits, rounded first
        digits = 1 - math.floor(math.log10(value))
        text = f"{value:.{digits}f}"
    return text.replace(".", ",") + NARROW_NBSP + "%"
