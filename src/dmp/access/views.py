"""What the gate hands to adapters: plain, immutable values (no storage types leak out)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Generic, TypeVar

from dmp.domain.ins import Ins
from dmp.domain.summary import Entry
from dmp.records.types import DocumentCriteria, DocumentRow

T = TypeVar("T")

# A document's metadata as stored. Adapters read it; only the gate produces it.
DocumentView = DocumentRow
# Search parameters beyond the common ones (the FHIR search builds them).
SearchCriteria = DocumentCriteria


@dataclass(frozen=True, slots=True)
class Demographics:
    birth_family_name: str
    given_names: str
    sex: str  # M, F or U
    birth_date: date
    residence_commune: str  # INSEE code
    used_name: str | None = None
    birth_place_code: str | None = None


@dataclass(frozen=True, slots=True)
class RecordView:
    key: str  # the server's opaque patient key (FHIR Patient.id)
    ins: Ins
    demographics: Demographics
    departement: str
    status: str
    channel: str
    opened_at: datetime
    closed_at: datetime | None
    closure_reason: str | None
    medecin_traitant: str | None
    oppose_bris_de_glace: bool
    oppose_centre_15: bool
    # RNIV identity reliability: PROV or QUAL, the document checked (FR Core code), when.
    identity_status: str = "PROV"
    identity_document: str | None = None
    identity_checked_at: datetime | None = None
    deletion_requested_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewDocument:
    """Metadata a producer sends with a document (XDS DocumentEntry / MHD DocumentReference)."""

    type_code: str
    format_code: str
    mime_type: str
    title: str  # empty: the document type's name (JDV_J07), as MHD minimal metadata allows
    creation_time: datetime | None  # None: the submission time (MHD minimal metadata)
    service_start: datetime | None  # None: the creation time
    unique_id: str | None = None
    service_stop: datetime | None = None
    confidentiality: str = "N"
    masked_ps: bool = False
    invisible_patient: bool = False
    invisible_representatives: bool = False
    facility_type: str | None = None
    practice_setting: str | None = None
    # The code systems of those two when they are not the national sets' (SNOMED CT...).
    facility_system: str | None = None
    practice_system: str | None = None
    language: str = "fr-FR"
    expected_size: int | None = None
    expected_sha1: str | None = None  # hex
    class_code: str | None = None  # derived from the type when absent (JDV_J57 / ASS_X04)
    appends: str | None = None  # the logical id of the document this is an addendum to


@dataclass(frozen=True, slots=True)
class AccessBasis:
    """What allowed an access, as the record showed it then: the consent (or care-team
    declaration) in force and who declared it, the initial consent, the emergency window with
    its justification. Empty fields did not apply."""

    consent_at: datetime | None = None
    consent_by: str | None = None  # the kind of actor who declared it (patient, professional)
    care_team_at: datetime | None = None
    initial_consent_at: datetime | None = None
    emergency_opened_at: datetime | None = None
    emergency_until: datetime | None = None
    justification: str | None = None


@dataclass(frozen=True, slots=True)
class DocumentBrief:
    """A document a trace names, as the reader may see it."""

    id: str
    type_code: str
    title: str
    created: datetime


@dataclass(frozen=True, slots=True)
class SummaryLine:
    """One line of the summary of care and the documents it was read from (newest first)."""

    entry: Entry
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CareSummary:
    """The summary of care as this reader may see it: its lines by kind, the documents they
    come from, how many documents were read, how many older ones were not, and which could
    not be read (a malformed CDA)."""

    lines: list[SummaryLine]
    documents: dict[str, DocumentBrief]
    read: int
    more: int
    unreadable: list[str]

    def of(self, kind: str) -> list[SummaryLine]:
        return [line for line in self.lines if line.entry.kind == kind]


@dataclass(frozen=True, slots=True)
class TraceView:
    """One line of a record's access history: who, when, what, why (the reason code and what
    allowed it), the documents read or refused, and the outcome."""

    at: datetime
    actor_kind: str
    actor_id: str
    structure_id: str | None
    action: str
    target: str | None
    documents: tuple[str, ...]
    purpose: str
    outcome: str
    reason: str
    seq: int = 0  # its position in the record's chain
    basis: AccessBasis = field(default_factory=AccessBasis)
    briefs: tuple[DocumentBrief, ...] = ()  # the documents named, those the reader may see
    client_id: str | None = None  # the software or app the access came through


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    patient_key: str | None = None  # the record's key, when the caller named it by INS


@dataclass(frozen=True, slots=True)
class NewList:
    """A SubmissionSet or Folder sent with a Provide Document Bundle (MHD List)."""

    kind: str  # submissionset | folder
    documents: tuple[int, ...]  # positions of its documents in the batch
    unique_id: str | None = None
    source_id: str | None = None
    title: str | None = None
    code: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)  # known to the caller at once


@dataclass(frozen=True, slots=True)
class ListView:
    id: str
    patient_id: str
    kind: str
    unique_id: str | None
    source_id: str | None
    title: str | None
    code: str | None
    submitted_at: datetime
    author_id: str
    author_structure: str | None
    document_ids: tuple[str, ...]  # only the documents this caller may see


@dataclass(frozen=True, slots=True)
class DocumentChange:
    """A change of a document's flags or archiving (None: unchanged). Visibility flags: the
    XDS confidentiality codes MASQUE_PS, INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS_LEGAUX."""

    masked_ps: bool | None = None
    invisible_patient: bool | None = None
    invisible_representatives: bool | None = None
    archived: bool | None = None

    def columns(self, now: datetime, reveal_delay: timedelta) -> dict[str, object]:
        """The stored columns this change sets (an INVISIBLE_PATIENT flag reveals itself after
        ``reveal_delay``, AC-11)."""
        out: dict[str, object] = {}
        if self.masked_ps is not None:
            out["masked_ps"] = self.masked_ps
        if self.invisible_patient is not None:
            out["invisible_patient"] = self.invisible_patient
            out["invisible_patient_until"] = now + reveal_delay if self.invisible_patient else None
        if self.invisible_representatives is not None:
            out["invisible_representatives"] = self.invisible_representatives
        if self.archived is not None:
            out["status"] = "archived" if self.archived else "current"
        return out


@dataclass(frozen=True, slots=True)
class Recovery:
    """A recovery started for the holder: the channel the code goes by (courriel, sms or
    courrier) and when it stops working. The code itself is never returned."""

    channel: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Activation:
    """A one-time activation code, as printed on the letter (never stored in clear)."""

    login: str
    code: str
    expires_at: datetime
    holder: str = ""  # the holder's name as the record has it (given names, then used name)
