"""Why an action was allowed or refused, in plain French, with its legal source.

Every reason code the gate writes into an audit event has one sentence here, addressed to the
record's holder ("vous"), and the text it comes from. The portal's history, the FHIR AuditEvent
and the export all read this one table; ``docs/access-history.md`` lists it for people and a
test keeps both equal.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    sentence: str  # why, in French, to the holder
    source: str  # the legal text (Code de la santé publique unless named)
    rule: str  # the rule's identifier in docs/access-rules.md


RULES: dict[str, Rule] = {
    "ALLOW_HOLDER": Rule(
        "Vous êtes le titulaire du dossier : vous y avez accès à tout moment.",
        "art. L1111-19 CSP",
        "AC-17",
    ),
    "ALLOW_REPRESENTATIVE": Rule(
        "Votre représentant légal exerce vos droits sur le dossier.",
        "art. R1111-40 CSP",
        "AC-12",
    ),
    "ALLOW_MEDECIN_TRAITANT": Rule(
        "Ce médecin est votre médecin traitant déclaré : il peut lire tout le dossier, "
        "y compris les documents masqués.",
        "art. L1111-16 CSP",
        "AC-7",
    ),
    "ALLOW_CONSENT": Rule(
        "Vous avez donné votre consentement à ce professionnel pour qu'il consulte votre dossier.",
        "art. L1111-17 II CSP",
        "AC-4",
    ),
    "ALLOW_CARE_TEAM": Rule(
        "Ce professionnel fait partie de votre équipe de soins, à laquelle vous avez donné "
        "votre consentement initial.",
        "art. L1110-12 CSP ; arrêté du 26 octobre 2023 ; Conseil d'État, 15 octobre 2025",
        "AC-4",
    ),
    "ALLOW_BRIS_DE_GLACE": Rule(
        "Accès en urgence (« bris de glace ») : le professionnel a déclaré que vous ne "
        "pouviez pas exprimer votre volonté face à un risque immédiat pour votre santé ; "
        "vous ne vous y étiez pas opposé.",
        "art. L1111-17 I et R1111-48 CSP",
        "AC-8",
    ),
    "ALLOW_CENTRE_15": Rule(
        "Un médecin régulateur du SAMU-centre 15 a consulté le dossier pour une urgence ; "
        "vous ne vous y étiez pas opposé.",
        "art. L1111-17 I CSP",
        "AC-9",
    ),
    "ALLOW_CARE_DEPOSIT": Rule(
        "Un professionnel qui vous soigne peut ajouter un document à votre dossier, même sans "
        "droit de le lire.",
        "art. L1111-17 III et R1111-47 CSP",
        "AC-10",
    ),
    "ALLOW_AUTHOR": Rule(
        "Ce professionnel (ou sa structure) est l'auteur du document concerné.",
        "Cadre d'interopérabilité des SIS, volet DMP (TD3.3c)",
        "AC-13/14",
    ),
    "ALLOW_OPEN": Rule(
        "Le dossier a été ouvert, ou votre compte servi, par un guichet ou un professionnel "
        "avec votre accord.",
        "art. L1111-14 et R1111-28 CSP",
        "opening",
    ),
    "ALLOW_OWN_TRACES": Rule(
        "Un professionnel peut lire les traces de ses propres actions sur le dossier.",
        "art. R1111-43 CSP",
        "AC-17",
    ),
    "ALLOW_CONSENT_DECLARATION": Rule(
        "Le consentement que vous avez donné à ce professionnel a été enregistré.",
        "art. L1111-17 II CSP",
        "AC-4",
    ),
    "ALLOW_SYSTEM": Rule(
        "Une opération automatique du service (ouverture, archivage, suppression ou "
        "maintenance), prévue par la réglementation.",
        "art. L1111-14 et R1111-36 CSP",
        "system",
    ),
    "DENY_UNKNOWN_PATIENT": Rule(
        "Refusé : aucun dossier n'a été trouvé pour cette identité.",
        "art. L1111-14 CSP",
        "—",
    ),
    "DENY_RECORD_EXISTS": Rule(
        "Refusé : vous aviez déjà un dossier, un second n'est pas ouvert.",
        "art. L1111-14 CSP",
        "opening",
    ),
    "DENY_RECORD_CLOSED": Rule(
        "Refusé : le dossier est fermé.",
        "art. R1111-36 CSP",
        "lifecycle",
    ),
    "DENY_FORBIDDEN_ACTOR": Rule(
        "Refusé : les assureurs, les employeurs et la médecine du travail n'ont jamais accès "
        "au dossier, même avec votre accord.",
        "art. L1111-18 CSP",
        "AC-16",
    ),
    "DENY_BLOCKED": Rule(
        "Refusé : vous avez bloqué ce professionnel.",
        "art. L1111-19 et R1111-42 CSP",
        "AC-3",
    ),
    "DENY_NO_CONSENT": Rule(
        "Refusé : vous n'avez pas donné votre consentement à ce professionnel.",
        "art. L1111-17 II CSP",
        "AC-4",
    ),
    "DENY_OPPOSED_EMERGENCY": Rule(
        "Refusé : vous vous êtes opposé à l'accès en urgence à votre dossier.",
        "art. L1111-17 I CSP",
        "AC-8",
    ),
    "DENY_OPPOSED_CENTRE_15": Rule(
        "Refusé : vous vous êtes opposé à l'accès par le centre de régulation (SAMU-centre 15).",
        "art. L1111-17 I CSP",
        "AC-9",
    ),
    "DENY_JUSTIFICATION_REQUIRED": Rule(
        "Refusé : un accès en urgence doit être justifié, et aucune justification n'a été donnée.",
        "art. R1111-48 CSP",
        "AC-8",
    ),
    "DENY_NOT_REGULATOR": Rule(
        "Refusé : seul un médecin régulateur du SAMU-centre 15 accède dans ce mode.",
        "art. L1111-17 I CSP",
        "AC-9",
    ),
    "DENY_NOT_AUTHOR": Rule(
        "Refusé : seul l'auteur du document (ou sa structure) peut le modifier.",
        "Cadre d'interopérabilité des SIS, volet DMP (TD3.3c)",
        "AC-13/14",
    ),
    "DENY_NOT_HOLDER": Rule(
        "Refusé : cette personne n'est ni le titulaire du dossier ni un représentant légal "
        "enregistré.",
        "art. R1111-40 CSP",
        "AC-12",
    ),
    "DENY_ACTOR_KIND": Rule(
        "Refusé : ce type d'utilisateur ne peut pas faire cette action.",
        "art. L1111-19 et R1111-42 CSP",
        "holder controls",
    ),
    "DENY_NO_STRUCTURE": Rule(
        "Refusé : le professionnel doit agir pour le compte d'une structure de soins.",
        "art. R1111-42 CSP",
        "AC-10",
    ),
    "DENY_NOT_FOUND": Rule(
        "Refusé : le document demandé n'existe pas ou n'est pas visible pour cette personne "
        "(la tentative est tracée).",
        "art. R1111-43 CSP",
        "AC-17",
    ),
    "DENY_NORMAL_MODE_ONLY": Rule(
        "Refusé : l'équipe de soins ne se déclare qu'en accès normal, pas pendant un accès en "
        "urgence.",
        "art. L1110-12 CSP ; arrêté du 26 octobre 2023",
        "AC-4",
    ),
    "DENY_SCOPE": Rule(
        "Refusé : le logiciel utilisé n'avait pas l'autorisation de faire cette action.",
        "Référentiel d'interopérabilité (art. L1470-5 CSP)",
        "scopes",
    ),
    "DENY_OTHER_PATIENT": Rule(
        "Refusé : l'autorisation du logiciel portait sur un autre patient.",
        "Référentiel d'interopérabilité (art. L1470-5 CSP)",
        "scopes",
    ),
    "DENY_UNBOUND_EMERGENCY": Rule(
        "Refusé : une autorisation d'urgence doit désigner le seul patient concerné.",
        "art. L1111-17 I CSP",
        "AC-8",
    ),
    "DENY_APP_WITHDRAWN": Rule(
        "Refusé : l'autorisation donnée à cette application a été retirée.",
        "art. L1111-19 CSP ; SMART App Launch",
        "apps",
    ),
    "DENY_SUBJECT_BLOCKED": Rule(
        "Refusé : vous avez bloqué ce professionnel ; vous seul pouvez le débloquer.",
        "art. L1111-19 et R1111-42 CSP",
        "AC-3",
    ),
    "DENY_ACCOUNT_ACTIVE": Rule(
        "Refusé : votre compte en ligne est déjà activé ; seule une récupération (code envoyé "
        "à vous) est possible.",
        "art. R1111-32 CSP",
        "account",
    ),
    "DENY_ACCOUNT_NOT_ACTIVE": Rule(
        "Refusé : votre compte en ligne n'a jamais été activé ; une lettre d'activation convient.",
        "art. R1111-32 CSP",
        "account",
    ),
    "DENY_DELETION_PENDING": Rule(
        "Refusé : vous avez demandé la suppression du dossier ; vous seul (ou un représentant "
        "légal) pouvez retirer cette demande.",
        "art. R1111-36 CSP",
        "lifecycle",
    ),
}

UNKNOWN = Rule("Action tracée par le service.", "art. R1111-43 CSP", "AC-17")


def rule_for(reason: str) -> Rule:
    """The explanation of a reason code; a code this version does not know (an older event)
    still gets a sentence."""
    return RULES.get(reason, UNKNOWN)
