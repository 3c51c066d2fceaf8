"""French wording for the pages: codes as people read them, dates and numbers in French."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from dmp.domain.codes import TYPE_LABELS

PARIS = ZoneInfo("Europe/Paris")

ACTIONS = {
    "record.open": "ouverture du dossier",
    "record.close": "fermeture du dossier",
    "record.read": "consultation de l'identité et du statut du dossier",
    "record.update": "modification des paramètres du dossier",
    "document.create": "ajout d'un document",
    "document.read": "consultation d'un document",
    "document.search": "consultation de la liste des documents",
    "document.update": "modification de la visibilité d'un document",
    "document.replace": "remplacement d'un document",
    "document.delete": "suppression d'un document",
    "consent.declare": "déclaration du consentement du patient",
    "consent.revoke": "retrait du consentement",
    "history.read": "consultation de l'historique",
    "permission.block": "blocage d'un professionnel",
    "permission.unblock": "déblocage d'un professionnel",
    "care_team.declare": "ajout à l'équipe de soins",
    "representative.add": "ajout d'un représentant légal",
    "emergency.open": "accès en urgence (bris de glace) ouvert",
    "list.search": "consultation des lots de documents",
    "keys.shred": "destruction des clés",
    "account.activation_code": "impression d'une lettre d'activation",
}
PURPOSES = {
    "normal": "accès normal",
    "bris_de_glace": "accès en urgence (bris de glace)",
    "centre_15": "accès par le centre de régulation (SAMU-centre 15)",
}
ACTOR_KINDS = {
    "professional": "professionnel de santé",
    "patient": "vous",
    "representative": "représentant légal",
    "desk_agent": "guichet d'accueil",
    "system": "système (opération automatique)",
}
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
OUTCOMES = {"success": "effectué", "denied": "refusé", "failure": "échec"}
STATUSES = {
    "current": "en vigueur",
    "superseded": "remplacé",
    "archived": "archivé",
    "deleted": "supprimé",
}
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


def type_label(code: str) -> str:
    return TYPE_LABELS.get(code, code)


def date_fr(value: date | datetime | None) -> str:
    """27 novembre 2026 (a time is shown in Paris time)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(PARIS).date() if value.tzinfo else value.date()
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}"


def datetime_fr(value: datetime | None) -> str:
    """27 novembre 2026 à 14 h 05 (Paris time)."""
    if value is None:
        return ""
    local = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(PARIS)
    return f"{date_fr(local.date())} à {local.hour} h {local.minute:02d}"


def iso_date(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(PARIS).date().isoformat()
