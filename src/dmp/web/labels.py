"""French wording for the pages: codes as people read them, dates and numbers in French."""

from __future__ import annotations

from datetime import datetime

from dmp.domain.codes import TYPE_LABELS
from dmp.domain.french import MONTHS, PARIS, PROFESSIONS, date_fr, datetime_fr

__all__ = ["PROFESSIONS", "date_fr", "datetime_fr"]

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
    "account.recovery": "envoi d'un code de récupération de votre compte",
    "account.reset": "nouveau mot de passe choisi avec un code à usage unique",
    "record.deletion_withdraw": "retrait de la demande de suppression",
    "record.reopen": "réouverture du dossier",
    "record.death": "fermeture du dossier (décès)",
    "record.deletion_request": "demande de suppression du dossier",
    "record.purge": "suppression du dossier",
    "notifications.contact": "lecture des coordonnées du destinataire d'une notification",
    "representative.invite": "création du compte en ligne d'un représentant légal",
    "summary.read": "consultation de la synthèse de soins",
    "account.login": "connexion à votre espace",
    "app.allow": "autorisation d'une application",
    "app.revoke": "fin de l'accès d'une application",
    "app.list": "consultation des applications autorisées",
}
SUMMARY_SECTIONS = (
    ("allergy", "Allergies et intolérances", "Aucune allergie n'est inscrite dans les documents."),
    (
        "treatment",
        "Traitements en cours",
        "Aucun traitement en cours n'est inscrit dans les documents.",
    ),
    ("vaccination", "Vaccinations", "Aucune vaccination n'est inscrite dans les documents."),
    ("problem", "Problèmes de santé en cours", "Aucun problème en cours n'est inscrit."),
    ("result", "Derniers résultats", "Aucun résultat de biologie structuré dans les documents."),
)


def partial_date(on: str) -> str:
    """2019 -> 2019; 2019-08 -> août 2019; 2019-08-11 -> 11 août 2019."""
    parts = on.split("-")
    if len(parts) == 1:
        return on
    month = MONTHS[int(parts[1]) - 1]
    if len(parts) == 2:
        return f"{month} {parts[0]}"
    day = int(parts[2])
    return f"{'1er' if day == 1 else day} {month} {parts[0]}"


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
OUTCOMES = {"success": "effectué", "denied": "refusé", "failure": "échec"}
STATUSES = {
    "current": "en vigueur",
    "superseded": "remplacé",
    "archived": "archivé",
    "deleted": "supprimé",
}


def type_label(code: str) -> str:
    return TYPE_LABELS.get(code, code)


def iso_date(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(PARIS).date().isoformat()
