"""INSEE commune codes and the département they belong to."""

from __future__ import annotations

import re

from dmp.errors import InvalidInput

_COMMUNE = re.compile(r"^(\d{5}|2[AB]\d{3})$")


def departement_of_commune(commune: str) -> str:
    """The département of an INSEE commune code: 2 characters (01-95, 2A, 2B) or 3 (971-976)."""
    code = commune.strip().upper()
    if not _COMMUNE.match(code):
        raise InvalidInput(
            f"{commune!r} is not an INSEE commune code (5 characters, 2A/2B for Corsica)"
        )
    if code.startswith("97"):
        return code[:3]
    if code.startswith("20"):
        raise InvalidInput("Corsican communes are coded 2A or 2B, not 20")
    return code[:2]
