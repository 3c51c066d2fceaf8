"""What notices say, in French: what happened and where to log in. Never clinical content,
never a document's title, never the patient's identity (the e-mail or SMS may be read by
others); a notice about an emergency access names the professional, the structure, the time,
and says that a justification was given."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dmp.domain.french import PROFESSIONS, datetime_fr


@dataclass(frozen=True, slots=True)
class Professional:
    name: str
    profession: str | None
    structure: str | None

    def describe(self) -> str:
        parts = [self.name]
        if self.profession:
            parts.append(PROFESSIONS.get(self.profession, "professionnel de santé"))
        if self.structure:
            parts.append(self.structure)
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    body: str
    sms: str


_DIGEST = {
    "new_document": ("nouveau document", "nouveaux documents"),
    "document_revealed": ("document devenu visible", "documents devenus visibles"),
    "first_access": (
        "professionnel a consulté votre dossier pour la première fois",
        "professionnels ont consulté votre dossier pour la première fois",
    ),
    "night_access": ("consultation de nuit", "consultations de nuit"),
    "distant_access": (
        "professionnel d'une autre région a consulté votre dossier",
        "professionnels d'une autre région ont consulté votre dossier",
    ),
}


def _digest_lines(counts: dict[str, int]) -> str:
    parts = [
        f"{n} {_DIGEST[k][0] if n == 1 else _DIGEST[k][1]}"
        for k, n in sorted(counts.items())
        if k in _DIGEST
    ]
    return " ; ".join(parts) or "rien de nouveau"


def when(at: datetime) -> str:
    return f"le {datetime_fr(at)}"


def compose(
    kind: str,
    *,
    recipient: str,
    at: datetime,
    portal_url: str,
    professional: Professional | None = None,
    count: int = 1,
    structure: str | None = None,
    code: str | None = None,
    code_hours: int = 24,
    counts: dict[str, int] | None = None,
) -> Message:
    """The message for one notice (``count`` > 1: a digest of new documents). ``structure``:
    the desk that acted on the holder's account; ``code``: the one-time code a recovery
    carries (only ever in the message to the holder)."""
    who = professional.describe() if professional else "un professionnel de santé"
    desk = f"l'accueil de {structure}" if structure else "un guichet d'accueil"
    if_not_you = (
        "Si vous n'êtes pas à l'origine de cette démarche, contactez votre caisse d'assurance "
        "maladie sans attendre."
    )
    login = f"Connectez-vous pour en savoir plus : {portal_url}"
    gp = recipient == "medecin_traitant"
    texts: dict[str, tuple[str, str]] = {
        "first_access": (
            "Un professionnel a consulté votre dossier pour la première fois",
            f"{who} a consulté votre dossier médical partagé pour la première fois, {when(at)}.",
        ),
        "emergency_access": (
            "Accès en urgence à un dossier médical partagé"
            if gp
            else "Accès en urgence à votre dossier médical partagé",
            (
                f"{who} a accédé en urgence (bris de glace), {when(at)}, au dossier médical "
                "partagé d'un patient dont vous êtes le médecin traitant. Une justification a "
                "été enregistrée."
                if gp
                else f"{who} a accédé à votre dossier médical partagé en urgence (bris de "
                f"glace), {when(at)}. Une justification a été enregistrée ; vous la retrouvez "
                "dans l'historique des accès."
            ),
        ),
        "regulation_access": (
            "Accès par le centre de régulation (SAMU-centre 15)",
            (
                f"{who}, médecin régulateur, a accédé {when(at)} au dossier médical partagé "
                "d'un patient dont vous êtes le médecin traitant."
                if gp
                else f"{who}, médecin régulateur du SAMU-centre 15, a accédé à votre dossier "
                f"médical partagé {when(at)}."
            ),
        ),
        "emergency_expired": (
            "Fin d'un accès en urgence à votre dossier",
            f"L'accès en urgence à votre dossier médical partagé ouvert par {who} a pris fin "
            f"{when(at)}.",
        ),
        "night_access": (
            "Consultation de nuit de votre dossier",
            f"{who} a consulté votre dossier médical partagé {when(at)}, la nuit. Vous avez "
            "demandé à être prévenu de ces accès ; retrouvez-les dans l'historique.",
        ),
        "distant_access": (
            "Un professionnel d'une autre région a consulté votre dossier",
            f"{who}, qui exerce dans une autre région que la vôtre, a consulté votre dossier "
            f"médical partagé pour la première fois {when(at)}.",
        ),
        "digest": (
            "Résumé du jour de votre dossier médical partagé",
            "Depuis le dernier résumé : " + _digest_lines(counts or {}) + ".",
        ),
        "new_document": (
            "Nouveau document dans votre dossier"
            if count == 1
            else f"{count} nouveaux documents dans votre dossier",
            "Un nouveau document a été ajouté à votre dossier médical partagé."
            if count == 1
            else f"{count} nouveaux documents ont été ajoutés à votre dossier médical partagé.",
        ),
        "document_pending_announcement": (
            "Votre dossier a été mis à jour",
            "Votre dossier médical partagé a été mis à jour. Un professionnel de santé "
            "souhaite vous présenter ce nouvel élément lors d'une consultation : nous vous "
            "invitons à prendre rendez-vous avec votre médecin.",
        ),
        "document_revealed": (
            "Un document de votre dossier est désormais visible",
            "Un document de votre dossier médical partagé est désormais visible.",
        ),
        "record_opened": (
            "Votre dossier médical partagé est ouvert",
            f"Votre dossier médical partagé a été ouvert {when(at)}. Vous pouvez activer votre "
            "compte avec le code de votre lettre d'activation, ou vous opposer à son "
            "utilisation.",
        ),
        "record_closed": (
            "Votre dossier médical partagé est fermé",
            f"Votre dossier médical partagé a été fermé {when(at)}. Plus aucun professionnel "
            "ne peut y accéder.",
        ),
        "record_reopened": (
            "Votre dossier médical partagé est rouvert",
            f"Votre dossier médical partagé a été rouvert {when(at)}.",
        ),
        "activation_letter": (
            "Une lettre d'activation de votre compte a été imprimée",
            f"Une lettre d'activation de votre compte en ligne a été imprimée par {desk}, "
            f"{when(at)}. {if_not_you}",
        ),
        "account_recovery": (
            "Votre code de récupération de compte",
            f"À la demande faite auprès de {desk}, {when(at)}, voici votre code de récupération "
            f"à usage unique : {code}. Il est valable {code_hours} heures. Sur le portail, "
            "choisissez « Activer mon compte », saisissez votre INS et ce code, puis un "
            "nouveau mot de passe. D'ici là, votre mot de passe actuel reste valable. "
            f"{if_not_you}",
        ),
        "account_reset": (
            "Le mot de passe de votre compte a été changé",
            f"Un nouveau mot de passe a été choisi pour votre compte en ligne {when(at)}, avec un "
            f"code à usage unique ; vos autres sessions ont été fermées. {if_not_you}",
        ),
        "record_opening_planned": (
            "Votre dossier médical partagé va être ouvert",
            "Votre caisse d'assurance maladie va ouvrir votre dossier médical partagé. Vous "
            "pouvez vous y opposer pendant six semaines.",
        ),
    }
    subject, text = texts.get(kind, ("Votre dossier médical partagé", "Votre dossier a changé."))
    body = f"Bonjour,\n\n{text}\n\n{login}\n\nCe message est envoyé automatiquement.\n"
    sms = f"DMP : {text} {portal_url}"
    return Message(subject, body, sms[:320])
