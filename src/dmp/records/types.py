"""Values the records layer returns and the scope type that only the access gate creates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from dmp.domain.visibility import DocumentVisibility

__all__ = ["DocumentVisibility"]


@dataclass(frozen=True, slots=True)
class AuthorizedPatient:
    """Proof that the access gate decided the current actor may act on this patient's record.

    Patient-scoped repository functions require it, so a read that skipped the gate does not
    type-check. Only :mod:`dmp.access.record_access` constructs it (checked by a test).
    """

    patient_id: str
    departement: str = ""  # for the adoption counters


@dataclass(frozen=True, slots=True)
class PatientRow:
    id: str
    ins_oid: str
    ins_value: str
    birth_family_name: str
    used_name: str | None
    given_names: str
    sex: str
    birth_date: date
    birth_place_code: str | None
    residence_commune: str
    departement: str
    created_at: datetime
    identity_status: str = "PROV"
    identity_document: str | None = None
    identity_checked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RecordRow:
    patient_id: str
    status: str
    channel: str
    opened_at: datetime
    opened_by_kind: str
    opened_by: str
    opened_by_structure: str | None
    initial_consent_at: datetime | None
    initial_consent_collected_by: str | None
    closed_at: datetime | None
    closure_reason: str | None
    closed_by: str | None
    oppose_bris_de_glace: bool
    oppose_centre_15: bool
    mask_all: bool
    medecin_traitant: str | None
    is_minor: bool
    activated_at: datetime | None
    reopened_at: datetime | None = None
    died_at: datetime | None = None
    deletion_requested_at: datetime | None = None
    purge_due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PermissionRow:
    consented_at: datetime | None
    consent_declared_by: str | None
    blocked_at: datetime | None


@dataclass(frozen=True, slots=True)
class DocumentRow:
    patient_id: str
    id: str
    logical_id: str
    version: int
    unique_id: str
    status: str
    type_code: str
    class_code: str
    format_code: str
    mime_type: str
    title: str
    language: str
    creation_time: datetime
    service_start: datetime
    service_stop: datetime | None
    facility_type: str | None
    practice_setting: str | None
    author_kind: str
    author_id: str
    author_structure: str | None
    confidentiality: str
    masked_ps: bool
    invisible_patient: bool
    invisible_patient_until: datetime | None
    invisible_representatives: bool
    size: int
    sha256: str
    sha1: str
    content_id: str
    replaces_id: str | None
    submitted_at: datetime
    latest: bool
    version_at: datetime | None
    # The code systems of the facility type and practice setting when they are not the
    # national sets' (the DMP guide's examples send SNOMED CT); None: the set's own.
    facility_system: str | None = None
    practice_system: str | None = None
    # The document this one is an addendum to (XDS APND, MHD relatesTo appends): it stays
    # current.
    appends_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    chain_id: str
    seq: int
    event_id: str
    at: datetime
    patient_id: str | None
    actor_kind: str
    actor_id: str
    structure_id: str | None
    action: str
    target: str | None
    targets: str | None
    purpose: str
    outcome: str
    reason: str
    request_id: str | None
    client_addr: str | None
    prev_hash: str
    hash: str
    key_id: str | None
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProfessionalRow:
    id_nat_ps: str
    family_name: str
    given_name: str
    profession_code: str
    specialty_code: str | None
    pharmacist_section: str | None
    structure_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeyRow:
    key_id: str
    kek_id: str
    wrapped: bytes | None


@dataclass(frozen=True, slots=True)
class DocumentCriteria:
    """What the caller asked for (search parameters), applied after visibility."""

    statuses: tuple[str, ...] | None = None
    type_codes: tuple[str, ...] | None = None
    service_from: datetime | None = None
    service_to: datetime | None = None
    document_id: str | None = None
    class_codes: tuple[str, ...] | None = None
    format_codes: tuple[str, ...] | None = None
    mime_types: tuple[str, ...] | None = None
    facility_types: tuple[str, ...] | None = None
    practice_settings: tuple[str, ...] | None = None
    unique_ids: tuple[str, ...] | None = None
    document_ids: tuple[str, ...] | None = None  # logical ids (FHIR _id)
    author_ids: tuple[str, ...] | None = None
    replaces_ids: tuple[str, ...] | None = None
    confidentiality: tuple[str, ...] | None = None  # N, R, V, MASQUE_PS, INVISIBLE_PATIENT...
    created_from: datetime | None = None  # creation time (attachment.creation)
    created_to: datetime | None = None
    submitted_from: datetime | None = None  # DocumentReference.date
    submitted_to: datetime | None = None
    service_end_from: datetime | None = None
    service_end_to: datetime | None = None
    # Negations and presence (FHIR :not, :missing and the date prefix ne), by criterion name
    # (records.documents.CRITERIA): a document matches when it has none of the values, when
    # the element is absent (True) or present (False), when its date is outside [start, end).
    excluded: tuple[tuple[str, tuple[str, ...]], ...] = ()
    missing: tuple[tuple[str, bool], ...] = ()
    outside: tuple[tuple[str, datetime, datetime], ...] = ()
    oldest_first: bool = False
    limit: int = 20
    offset: int = 0
