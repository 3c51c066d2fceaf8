"""JSON endpoints for records, documents, consents and the access history."""

from __future__ import annotations

import base64
import binascii
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from dmp.access.views import Demographics, DocumentView, NewDocument, RecordView, TraceView
from dmp.domain.codes import CreationChannel, VisibilityFlag
from dmp.domain.ins import OID_NIR, Ins
from dmp.errors import InvalidInput
from dmp.front.content import content_response
from dmp.front.deps import Gate

router = APIRouter(prefix="/api/records", tags=["records"])

InsOid = Annotated[str, Query(description="INS assigning authority OID (default: INS-NIR)")]


def _ins(value: str, oid: str) -> Ins:
    return Ins(oid=oid, value=value.replace(" ", "").upper())


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class InsIn(Strict):
    oid: str = OID_NIR
    value: str = Field(min_length=1, max_length=32)


class DemographicsIn(Strict):
    birth_family_name: str = Field(min_length=1, max_length=100)
    used_name: str | None = Field(default=None, max_length=100)
    given_names: str = Field(min_length=1, max_length=200)
    sex: str = Field(pattern="^[MFU]$")
    birth_date: date
    birth_place_code: str | None = Field(default=None, max_length=5)
    residence_commune: str = Field(min_length=5, max_length=5)


class OpenRecordIn(Strict):
    ins: InsIn
    demographics: DemographicsIn
    channel: CreationChannel
    patient_consent: bool = Field(description="the patient was informed and agrees")
    identity_document: str | None = Field(
        default=None,
        max_length=4,
        description="the identity document checked (FR Core validation mode: CN, PA, CS, CE, "
        "IE qualify the identity; AN, LE, PC, CM leave it provisional)",
    )


class CloseRecordIn(Strict):
    reason: str = Field(min_length=1, max_length=200)


class ConsentIn(Strict):
    id_nat_ps: str | None = Field(default=None, max_length=32)


class DocumentIn(Strict):
    replaces: str | None = Field(
        default=None, max_length=64, description="id of the document replaced"
    )
    unique_id: str | None = Field(default=None, max_length=128)
    type_code: str = Field(max_length=20)
    format_code: str = Field(max_length=80)
    mime_type: str = Field(max_length=80)
    title: str = Field(min_length=1, max_length=250)
    creation_time: datetime
    service_start: datetime
    service_stop: datetime | None = None
    confidentiality: str = "N"
    masked_ps: bool = False
    invisible_patient: bool = False
    invisible_representatives: bool = False
    facility_type: str | None = Field(default=None, max_length=20)
    practice_setting: str | None = Field(default=None, max_length=20)
    content_base64: str
    size: int | None = None
    sha1: str | None = Field(default=None, max_length=40)


def record_json(v: RecordView) -> dict[str, Any]:
    d = v.demographics
    return {
        "ins": {"oid": v.ins.oid, "value": v.ins.value},
        "status": v.status,
        "channel": v.channel,
        "opened_at": v.opened_at.isoformat(),
        "closed_at": v.closed_at.isoformat() if v.closed_at else None,
        "closure_reason": v.closure_reason,
        "departement": v.departement,
        "medecin_traitant": v.medecin_traitant,
        "oppose_bris_de_glace": v.oppose_bris_de_glace,
        "oppose_centre_15": v.oppose_centre_15,
        "identity": {
            "status": v.identity_status,
            "document": v.identity_document,
            "checked_at": v.identity_checked_at.isoformat() if v.identity_checked_at else None,
        },
        "deletion_requested_at": (
            v.deletion_requested_at.isoformat() if v.deletion_requested_at else None
        ),
        "demographics": {
            "birth_family_name": d.birth_family_name,
            "used_name": d.used_name,
            "given_names": d.given_names,
            "sex": d.sex,
            "birth_date": d.birth_date.isoformat(),
            "birth_place_code": d.birth_place_code,
            "residence_commune": d.residence_commune,
        },
    }


def document_json(d: DocumentView) -> dict[str, Any]:
    flags = [
        f
        for f, on in (
            (VisibilityFlag.MASQUE_PS, d.masked_ps),
            (VisibilityFlag.INVISIBLE_PATIENT, d.invisible_patient),
            (VisibilityFlag.INVISIBLE_REPRESENTANTS_LEGAUX, d.invisible_representatives),
        )
        if on
    ]
    return {
        "id": d.logical_id,
        "entry_id": d.id,
        "version": d.version,
        "unique_id": d.unique_id,
        "status": d.status,
        "type_code": d.type_code,
        "class_code": d.class_code,
        "format_code": d.format_code,
        "mime_type": d.mime_type,
        "title": d.title,
        "language": d.language,
        "creation_time": d.creation_time.isoformat(),
        "service_start": d.service_start.isoformat(),
        "service_stop": d.service_stop.isoformat() if d.service_stop else None,
        "author": {"kind": d.author_kind, "id": d.author_id, "structure": d.author_structure},
        "confidentiality": [d.confidentiality, *flags],
        "size": d.size,
        "sha1": d.sha1,
        "sha256": d.sha256,
        "submitted_at": d.submitted_at.isoformat(),
    }


def trace_json(t: TraceView) -> dict[str, Any]:
    return {
        "at": t.at.isoformat(),
        "actor": {"kind": t.actor_kind, "id": t.actor_id, "structure": t.structure_id},
        "action": t.action,
        "target": t.target,
        "documents": list(t.documents),
        "purpose": t.purpose,
        "outcome": t.outcome,
        "reason": t.reason,
    }


@router.post("", status_code=201, name="open_record")
def open_record(body: OpenRecordIn, access: Gate) -> dict[str, Any]:
    d = body.demographics
    view = access.open_record(
        Ins(body.ins.oid, body.ins.value.replace(" ", "").upper()),
        Demographics(
            d.birth_family_name,
            d.given_names,
            d.sex,
            d.birth_date,
            d.residence_commune.upper(),
            d.used_name,
            d.birth_place_code,
        ),
        channel=body.channel,
        patient_consent=body.patient_consent,
        identity_document=body.identity_document,
    )
    return record_json(view)


@router.get("/{ins}", name="read_record")
def read_record(ins: str, access: Gate, oid: InsOid = OID_NIR) -> dict[str, Any]:
    return record_json(access.read_record(_ins(ins, oid)))


@router.post("/{ins}/close", status_code=204, name="close_record")
def close_record(ins: str, body: CloseRecordIn, access: Gate, oid: InsOid = OID_NIR) -> Response:
    access.close_record(_ins(ins, oid), body.reason)
    return Response(status_code=204)


@router.post("/{ins}/consents", status_code=204, name="declare_consent")
def declare_consent(ins: str, body: ConsentIn, access: Gate, oid: InsOid = OID_NIR) -> Response:
    access.declare_consent(_ins(ins, oid), body.id_nat_ps)
    return Response(status_code=204)


@router.post("/{ins}/documents", status_code=201, name="deposit_document")
def deposit_document(
    ins: str, body: DocumentIn, access: Gate, oid: InsOid = OID_NIR
) -> dict[str, Any]:
    try:
        content = base64.b64decode(body.content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("content_base64 is not valid base64") from None
    meta = NewDocument(
        type_code=body.type_code,
        format_code=body.format_code,
        mime_type=body.mime_type,
        title=body.title,
        creation_time=body.creation_time,
        service_start=body.service_start,
        unique_id=body.unique_id,
        service_stop=body.service_stop,
        confidentiality=body.confidentiality,
        masked_ps=body.masked_ps,
        invisible_patient=body.invisible_patient,
        invisible_representatives=body.invisible_representatives,
        facility_type=body.facility_type,
        practice_setting=body.practice_setting,
        expected_size=body.size,
        expected_sha1=body.sha1,
    )
    return document_json(
        access.deposit_document(_ins(ins, oid), meta, content, replaces=body.replaces)
    )


@router.get("/{ins}/documents", name="search_documents")
def search_documents(
    ins: str,
    access: Gate,
    oid: InsOid = OID_NIR,
    type: Annotated[list[str] | None, Query()] = None,
    status: Annotated[list[str] | None, Query()] = None,
    service_from: datetime | None = None,
    service_to: datetime | None = None,
    count: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    page = access.search_documents(
        _ins(ins, oid),
        type_codes=tuple(type) if type else None,
        statuses=tuple(status) if status else ("current",),
        service_from=service_from,
        service_to=service_to,
        limit=count,
        offset=offset,
    )
    return {"total": page.total, "documents": [document_json(d) for d in page.items]}


@router.get("/{ins}/documents/{document_id}", name="read_document")
def read_document(
    ins: str, document_id: str, access: Gate, oid: InsOid = OID_NIR
) -> dict[str, Any]:
    return document_json(access.read_document(_ins(ins, oid), document_id))


@router.get("/{ins}/documents/{document_id}/content", name="read_document_content")
def read_document_content(
    ins: str, document_id: str, access: Gate, oid: InsOid = OID_NIR
) -> Response:
    doc, chunks = access.stream_content(_ins(ins, oid), document_id)
    return content_response(doc, chunks)


@router.get("/{ins}/history", name="read_history")
def read_history(
    ins: str,
    access: Gate,
    oid: InsOid = OID_NIR,
    count: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    page = access.history(_ins(ins, oid), limit=count, offset=offset)
    return {"total": page.total, "events": [trace_json(t) for t in page.items]}


class DocumentUpdateIn(Strict):
    masked_ps: bool | None = None
    invisible_patient: bool | None = None
    invisible_representatives: bool | None = None
    archived: bool | None = None
    expected_version: int | None = Field(
        default=None, ge=1, le=10**9, description="the version the change applies to (else 412)"
    )


@router.patch("/{ins}/documents/{document_id}", name="update_document")
def update_document(
    ins: str, document_id: str, body: DocumentUpdateIn, access: Gate, oid: InsOid = OID_NIR
) -> dict[str, Any]:
    """Mask or unmask, hide from the patient or the representatives, archive or restore."""
    doc = access.update_document(
        _ins(ins, oid),
        document_id,
        masked_ps=body.masked_ps,
        invisible_patient=body.invisible_patient,
        invisible_representatives=body.invisible_representatives,
        archived=body.archived,
        expected_version=body.expected_version,
    )
    return document_json(doc)


@router.delete("/{ins}/documents/{document_id}", status_code=204, name="delete_document")
def delete_document(ins: str, document_id: str, access: Gate, oid: InsOid = OID_NIR) -> Response:
    access.delete_document(_ins(ins, oid), document_id)
    return Response(status_code=204)


class ProfessionalRef(Strict):
    id_nat_ps: str = Field(min_length=1, max_length=32)


@router.post("/{ins}/blocks", status_code=204, name="block_professional")
def block_professional(
    ins: str, body: ProfessionalRef, access: Gate, oid: InsOid = OID_NIR
) -> Response:
    access.block_professional(_ins(ins, oid), body.id_nat_ps)
    return Response(status_code=204)


@router.delete("/{ins}/blocks/{id_nat_ps}", status_code=204, name="unblock_professional")
def unblock_professional(ins: str, id_nat_ps: str, access: Gate, oid: InsOid = OID_NIR) -> Response:
    access.unblock_professional(_ins(ins, oid), id_nat_ps)
    return Response(status_code=204)


@router.post("/{ins}/care-team", status_code=204, name="declare_care_team")
def declare_care_team(
    ins: str, body: ProfessionalRef, access: Gate, oid: InsOid = OID_NIR
) -> Response:
    access.declare_care_team(_ins(ins, oid), body.id_nat_ps)
    return Response(status_code=204)


class SettingsIn(Strict):
    oppose_bris_de_glace: bool | None = None
    oppose_centre_15: bool | None = None
    mask_all: bool | None = None
    medecin_traitant: str | None = Field(default=None, max_length=32)
    clear_medecin_traitant: bool = False


@router.patch("/{ins}/settings", name="update_settings")
def update_settings(
    ins: str, body: SettingsIn, access: Gate, oid: InsOid = OID_NIR
) -> dict[str, Any]:
    view = access.update_settings(
        _ins(ins, oid),
        oppose_bris_de_glace=body.oppose_bris_de_glace,
        oppose_centre_15=body.oppose_centre_15,
        mask_all=body.mask_all,
        medecin_traitant=body.medecin_traitant,
        clear_medecin_traitant=body.clear_medecin_traitant,
    )
    return record_json(view)


@router.post("/{ins}/activation", status_code=204, name="activate_account")
def activate_account(ins: str, access: Gate, oid: InsOid = OID_NIR) -> Response:
    """The holder activated their online account (counted in the adoption statistics)."""
    access.activate_account(_ins(ins, oid))
    return Response(status_code=204)
