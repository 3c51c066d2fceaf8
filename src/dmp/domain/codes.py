"""Code systems of the DMP (domain reference §3): enumerations used across layers."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class RecordStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


class CreationChannel(StrEnum):
    """How a record was opened (the channels counted by the adoption statistics)."""

    PHARMACY = "pharmacy"
    INSURER_DESK = "insurer_desk"
    HEALTH_FACILITY = "health_facility"
    PROFESSIONAL = "professional"
    ONLINE = "online"
    INSURER_PROVISIONING = "insurer_provisioning"


class PurposeOfUse(StrEnum):
    """Access mode, TRE_R248 (OID 1.2.250.1.213.1.1.4.336)."""

    NORMAL = "normal"
    EMERGENCY = "bris_de_glace"  # emergency access, "bris de glace" (breaking the glass)
    REGULATION = "centre_15"  # the regulation centre (SAMU, "centre 15")


class AvailabilityStatus(StrEnum):
    """XDS availabilityStatus (JDV_J52), named by its FHIR meaning."""

    CURRENT = "current"
    SUPERSEDED = "superseded"
    ARCHIVED = "archived"
    DELETED = "deleted"


class Confidentiality(StrEnum):
    """HL7 v3 confidentiality (TRE_A08)."""

    NORMAL = "N"
    RESTRICTED = "R"
    VERY_RESTRICTED = "V"


class VisibilityFlag(StrEnum):
    """TRE_A07_StatutVisibiliteDocument (OID 1.2.250.1.213.1.1.4.13)."""

    MASQUE_PS = "MASQUE_PS"  # masked from health professionals
    INVISIBLE_PATIENT = "INVISIBLE_PATIENT"  # hidden from the patient pending an announcement
    INVISIBLE_REPRESENTANTS_LEGAUX = "INVISIBLE_REPRESENTANTS_LEGAUX"  # hidden from representatives


class AuditAction(StrEnum):
    RECORD_OPEN = "record.open"
    RECORD_CLOSE = "record.close"
    RECORD_READ = "record.read"
    DOCUMENT_CREATE = "document.create"
    DOCUMENT_READ = "document.read"
    DOCUMENT_SEARCH = "document.search"
    CONSENT_DECLARE = "consent.declare"
    CONSENT_REVOKE = "consent.revoke"
    HISTORY_READ = "history.read"
    RECORD_UPDATE = "record.update"  # oppositions, mask-all, GP
    PERMISSION_BLOCK = "permission.block"
    PERMISSION_UNBLOCK = "permission.unblock"
    CARE_TEAM_DECLARE = "care_team.declare"
    REPRESENTATIVE_ADD = "representative.add"
    REPRESENTATIVE_INVITE = "representative.invite"  # an account made for a representative
    EMERGENCY_OPEN = "emergency.open"
    DOCUMENT_UPDATE = "document.update"
    DOCUMENT_REPLACE = "document.replace"
    DOCUMENT_DELETE = "document.delete"
    LIST_SEARCH = "list.search"  # SubmissionSets and Folders (ITI-66)
    PROFESSIONAL_IMPORT = "directory.import"
    KEYS_ROTATE = "keys.rotate"
    KEY_SHRED = "keys.shred"
    ACTIVATION_ISSUE = "account.activation_code"  # an activation letter was printed
    ACCOUNT_RECOVERY = "account.recovery"  # a recovery code was sent to the holder
    ACCOUNT_RESET = "account.reset"  # the holder set a new password with a code
    RECORD_DELETION_WITHDRAW = "record.deletion_withdraw"  # the holder withdrew the request
    RECORD_REOPEN = "record.reopen"
    RECORD_DEATH = "record.death"  # closed by the holder's death
    RECORD_DELETION_REQUEST = "record.deletion_request"
    RECORD_PURGE = "record.purge"  # retention over or deletion due: clinical rows deleted
    DATABASE_BACKUP = "database.backup"  # `dmp backup` copied the database
    DATABASE_RESTORE = "database.restore"  # `dmp restore` loaded a backup (written after it)
    PROVISIONING_IMPORT = "provisioning.import"  # the insurer's beneficiaries were imported
    PROVISIONING_OBJECTION = "provisioning.objection"  # someone objected (nobody named)
    NOTICE_CONTACT_READ = "notifications.contact"  # the worker read a recipient's contact
    NOTICES_LIST = "notifications.list"  # an operator listed the outbox (`dmp notifications`)
    NOTICE_RETRY = "notifications.retry"  # an operator queued a dead notice again
    SUMMARY_READ = "summary.read"  # the summary of care, built from the documents it names
    SNOOPING_REPORT = "report.snooping"  # an operator read the professionals' reading patterns
    IDENTITY_MATCH = "identity.match"  # a FranceConnect identity compared with the records
    ACCOUNT_LOGIN = "account.login"  # the holder logged in through an identity provider
    APP_ALLOW = "app.allow"  # the holder allowed an app to read their record
    APP_REVOKE = "app.revoke"  # the holder (or the app) ended an app's access
    APP_LIST = "app.list"  # the holder read the list of the apps allowed


class Outcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"


# Sex, as in the INS (1 male, 2 female) and FHIR administrative gender.
SEXES = {"M": "male", "F": "female", "U": "unknown"}

# Document type (LOINC / TRE_A05) -> class code (JDV_J57), after table ASS_X04.
TYPE_TO_CLASS: dict[str, str] = {
    "60591-5": "11",  # Synthèse médicale
    "34133-9": "11",  # Synthèse d'épisode de soins
    "34112-3": "10",  # CR hospitalier
    "11490-0": "10",  # Lettre de liaison de sortie
    "18761-7": "10",  # Note de transfert
    "11502-2": "10",  # CR d'examens biologiques
    "18748-4": "31",  # CR d'imagerie médicale
    "11488-4": "10",  # CR de consultation
    "15507-7": "10",  # CR de passage aux urgences
    "34874-8": "10",  # CR opératoire
    "57833-6": "42",  # Prescription de produits de santé
    "57832-8": "42",  # Prescription de soins
    "60593-1": "43",  # Dispensation médicamenteuse
    "11369-6": "11",  # Historique des vaccinations
    "87273-9": "11",  # Note de vaccination
    "74207-2": "11",  # Document de liaison d'urgence
    "89601-9": "52",  # Certificat médical
    "REMB": "60",  # Données de remboursement
    "EXPPAT_1": "90",
    "EXPPAT_2": "90",
    "EXPPAT_3": "90",  # Directives anticipées
    "SYNTH": "11",  # Synthèse (TRE_A05; the VSM of the CI-SIS examples)
    "PROT_ALD": "44",  # Protocole de soins ALD
    "IMG-KOS": "31",  # Manifeste d'imagerie (DICOM KOS)
    **{f"DOCPAT{n:02d}": "90" for n in range(1, 10)},  # documents deposited by the patient
}

TYPE_LABELS: dict[str, str] = {
    "60591-5": "Synthèse médicale",
    "34133-9": "Synthèse d'épisode de soins",
    "34112-3": "Compte rendu hospitalier",
    "11490-0": "Lettre de liaison à la sortie d'un établissement",
    "18761-7": "Note de transfert",
    "11502-2": "Compte rendu d'examens biologiques",
    "18748-4": "Compte rendu d'imagerie médicale",
    "11488-4": "Compte rendu de consultation",
    "15507-7": "Compte rendu de passage aux urgences",
    "34874-8": "Compte rendu opératoire",
    "57833-6": "Prescription de produits de santé",
    "57832-8": "Prescription de soins",
    "60593-1": "Dispensation médicamenteuse",
    "11369-6": "Historique des vaccinations",
    "87273-9": "Note de vaccination",
    "74207-2": "Document de liaison d'urgence",
    "89601-9": "Certificat médical",
    "REMB": "Données de remboursement",
    "EXPPAT_1": "Volontés et droits du patient",
    "EXPPAT_2": "Autre document du patient",
    "EXPPAT_3": "Directives anticipées",
    "SYNTH": "Synthèse",
    "PROT_ALD": "Protocole de soins ALD",
    "IMG-KOS": "Manifeste d'imagerie médicale",
    # The national value set's names (JDV_J07, TRE_A05), no code shown.
    "DOCPAT01": "Synthèse déposée par le patient",
    "DOCPAT02": "Traitement ou document de soins déposé par le patient",
    "DOCPAT03": "Compte rendu déposé par le patient",
    "DOCPAT04": "Imagerie déposée par le patient",
    "DOCPAT05": "Compte rendu de biologie déposé par le patient",
    "DOCPAT06": "Compte rendu de prévention déposé par le patient",
    "DOCPAT07": "Certificat déposé par le patient",
    "DOCPAT08": "Profil médical Mon espace santé",
    "DOCPAT09": "Document administratif déposé par le patient",
}

MIME_TYPES = frozenset(
    {
        "text/xml",
        "application/xml",
        "application/pdf",
        "text/plain",
        "image/jpeg",
        "image/tiff",
        "application/rtf",
        "application/dicom",
        "application/fhir+json",
    }
)


# Identity reliability (RNIV; FR Core extension fr-core-identity-reliability on Patient). The
# record's identity is provisional until its five strict traits were checked against a
# high-trust identity document at a desk, by the insurer's provisioning file (a trusted third
# party), or by the person's own identity provider; then it is qualified.
IDENTITY_PROVISIONAL = "PROV"
IDENTITY_QUALIFIED = "QUAL"
IDENTITY_STATUS_SYSTEM = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status"
IDENTITY_STATUS_LABELS = {
    IDENTITY_PROVISIONAL: "Identité provisoire",
    IDENTITY_QUALIFIED: "Identité qualifiée",
}
IDENTITY_DOCUMENT_SYSTEM = (
    "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-mode-validation-identity"
)
# The documents a desk records having checked (FR Core's validation modes).
IDENTITY_DOCUMENTS = {
    "CN": "Carte nationale d'identité",
    "PA": "Passeport",
    "CS": "Carte de séjour",
    "CE": "Carte Européenne",
    "IE": "Identification électronique EIDAS",
    "AN": "Extrait d'acte de naissance",
    "LE": "Livret de famille",
    "PC": "Permis de conduire",
    "CM": "Carte militaire",
    "TC": "Tiers de confiance",
}
# Those of high trust (RNIV): only they qualify an identity. A birth certificate, a family
# record book or a driving licence are recorded, and the identity stays provisional.
HIGH_TRUST_DOCUMENTS = frozenset({"CN", "PA", "CS", "CE", "IE"})
TRUSTED_THIRD_PARTY = "TC"  # the insurer's provisioning file


def unique_id_forms(value: str) -> tuple[str, ...]:
    """The forms a document's unique id is stored under: an OID arrives bare through XDS
    (``1.2.250.1.999.1``) and as a URI through MHD (``urn:oid:1.2.250.1.999.1``); a search by
    either finds both."""
    plain = value.removeprefix("urn:oid:")
    if plain and plain.replace(".", "").isdigit():
        return (plain, f"urn:oid:{plain}")
    return (value,)


def as_uri(unique_id: str) -> str:
    """A unique id as MHD writes it (masterIdentifier, a URI): an OID as ``urn:oid:``."""
    forms = unique_id_forms(unique_id)
    return forms[1] if len(forms) == 2 else unique_id


def as_oid(unique_id: str) -> str:
    """A unique id as XDS writes it: an OID bare."""
    return unique_id_forms(unique_id)[0]


def confidentiality_of(codes: Iterable[str]) -> tuple[str, dict[VisibilityFlag, bool], list[str]]:
    """The confidentiality level (N, R, V; N when none), the visibility flags (TRE_A07) and the
    codes that are neither, among a document's confidentiality codes (XDS) or security labels
    (FHIR)."""
    level = "N"
    flags = dict.fromkeys(VisibilityFlag, False)
    known = {f.value: f for f in VisibilityFlag}
    unknown = []
    for code in codes:
        if code in ("N", "R", "V"):
            level = code
        elif code in known:
            flags[known[code]] = True
        else:
            unknown.append(code)
    return level, flags, unknown
