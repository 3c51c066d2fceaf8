"""The alerts a holder may choose: which events, how often, and when an access is "at night"
or "far from home"."""

from __future__ import annotations

from datetime import datetime

from dmp.domain.french import PARIS
from dmp.domain.geo import geography

# (preference key, what the holder reads, the default when they never chose). The three
# notices the law or habit wants are on by default; the two new watches are the holder's
# choice (off until they turn them on).
EVENTS = (
    ("premier_acces", "Un professionnel accède à mon dossier pour la première fois", "immediat"),
    ("urgence", "Un accès en urgence ou par le centre de régulation", "immediat"),
    ("nouveau_document", "Un nouveau document est ajouté", "immediat"),
    ("nuit", "Un professionnel consulte mon dossier la nuit", "jamais"),
    (
        "loin",
        "Un professionnel exerçant dans une autre région consulte mon dossier pour la "
        "première fois",
        "jamais",
    ),
)
DEFAULTS = {key: default for key, _, default in EVENTS}


def is_night(at: datetime, start_hour: int, end_hour: int) -> bool:
    """Between ``start_hour`` and ``end_hour`` o'clock, Paris time (22 to 6 by default)."""
    hour = at.astimezone(PARIS).hour
    if start_hour <= end_hour:
        return start_hour <= hour < end_hour
    return hour >= start_hour or hour < end_hour


def far_apart(patient_departement: str | None, structure_departement: str | None) -> bool:
    """A professional works far from the patient when their structure is in another region
    than the patient's département of residence (unknown: not far)."""
    if not patient_departement or not structure_departement:
        return False
    known = geography().departements
    a, b = known.get(patient_departement), known.get(structure_departement)
    return a is not None and b is not None and a.region != b.region
