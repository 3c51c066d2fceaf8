"""Shared pieces of the FHIR adapter: responses, request bodies, resource ids, patient
parameters, and the checks ITI-65 and ITI-105 share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import orjson
from fastapi import Request, Response
from pydantic import ValidationError

from dmp.access.record_access import RecordAccess
from dmp.access.views import DocumentView, NewDocument
from dmp.domain import cda
from dmp.domain.ins import Ins, PatientKey, PatientRef, parse_ins_token
from dmp.errors import (
    BadRequest,
    InvalidInput,
    NotFound,
)
from dmp.fhir import fastcheck
from dmp.fhir.outcome import FHIR_JSON, operation_outcome
from dmp.fhir.params import Param
from dmp.front import assumed
from dmp.front import fhir_mapping as mapping
from dmp.front.deps import fhir_base

MAX_BUNDLE_ENTRIES = 200


base_url = fhir_base


def fhir(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type=FHIR_JSON)


def created(request: Request, resource: dict[str, Any], location: str) -> Response:
    """201 for a create, shaped by ``Prefer: return=`` (FHIR R4 3.1.0.8.1): ``minimal`` (no
    body), ``representation`` (the resource; the default), ``OperationOutcome``."""
    prefer = {
        p.strip().replace(" ", "")
        for part in request.headers.get("prefer", "").split(",")
        for p in part.split(";")
    }
    headers = {"Location": location}
    version = str((resource.get("meta") or {}).get("versionId", "1"))
    headers["ETag"] = f'W/"{version}"'
    if "return=minimal" in prefer:
        return Response(status_code=201, headers=headers)
    if "return=OperationOutcome" in prefer:
        outcome = operation_outcome(
            201,
            f"created {location.rsplit('/fhir/', 1)[-1]}",
            code="informational",
            severity="information",
        )
        return fhir(outcome, 201, headers)
    return fhir(resource, 201, headers)


def version_headers(doc: DocumentView) -> dict[str, str]:
    """ETag (the metadata version) and Last-Modified (when that version was made)."""
    return {
        "ETag": f'W/"{doc.version}"',
        "Last-Modified": http_date(doc.version_at or doc.submitted_at),
    }


def http_date(at: datetime) -> str:
    """An HTTP date (Last-Modified)."""
    return format_datetime(at.astimezone(UTC), usegmt=True)


async def read_resource(request: Request, kind: str) -> dict[str, Any]:
    """The request body as a resource of the expected type (400 otherwise)."""
    res = await read_json(request)
    if not isinstance(res, dict) or res.get("resourceType") != kind:
        raise BadRequest(f"expected a {kind} resource")
    return res


async def read_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON") from None


def doc_ref(fhir_id: str) -> tuple[PatientKey, str]:
    try:
        return mapping.parse_doc_id(fhir_id)
    except InvalidInput:
        raise NotFound("no such document") from None


def validate_resource(model: Any, resource: Any, what: str) -> None:
    """Accepted by the ``fhir.resources`` model, or a 422 naming the first error. The compiled
    check answers first; whatever it is unsure of goes to the model itself."""
    if fastcheck.accepts(model, resource):
        return
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(
            f"{fhir_path(what, first.get('loc', ()))}: {first.get('msg')}",
            reason=fhir_path(what, first.get("loc", ())),
        ) from None
    except (AttributeError, TypeError, KeyError, ValueError):
        # The models fail outside pydantic's errors on some shapes (a resourceType that names
        # no resource, a url that is no string): still the request's fault, nothing is stored.
        foreign = fastcheck.foreign_resource(resource)
        if foreign is not None:
            where = fhir_path(what, foreign)
            raise InvalidInput(
                f"{where}: resourceType is not a FHIR R4 resource type", reason=where
            ) from None
        raise InvalidInput(
            f"{what}: an element's JSON type is not the one its FHIR type allows", reason=what
        ) from None


def fhir_path(resource: str, loc: Any) -> str:
    """A pydantic location as a FHIR path: ``Patient.name[0].given``."""
    path = resource
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in ("__root__",):
            path += f".{str(part).removesuffix('__ext')}"
    return path


def prepare_document(
    res: dict[str, Any], content: bytes, access: RecordAccess, patient: PatientRef | None
) -> tuple[PatientRef, NewDocument, bytes, str | None]:
    """Checks shared by ITI-65 and ITI-105: patient, CDA header, metadata."""
    subject = (res.get("subject") or {}).get("reference")
    if patient is None:
        if not subject:
            raise InvalidInput("DocumentReference.subject is required")
        patient = mapping.patient_ref(str(subject), test_mode=access.accepts_test_ins)
    header = cda.parse_header(content) if cda.looks_like_cda(content) else None
    if header is not None:
        _fill_from_cda(res, header)
    meta, replaces = mapping.new_document(res, content)
    return patient, meta, content, replaces


def _fill_from_cda(res: dict[str, Any], header: cda.CdaHeader) -> None:
    """ITI-105 without metadata: type, title and dates come from the CDA header."""
    if not res.get("type") and header.type_code:
        res["type"] = {"coding": [{"code": header.type_code}]}
    att = res["content"][0]["attachment"]
    if not att.get("title") and header.title:
        att["title"] = header.title
    if not att.get("creation") and not res.get("date") and header.effective_time:
        att["creation"] = header.effective_time.isoformat()
    period = res.setdefault("context", {}).setdefault("period", {})
    if not period.get("start") and header.service_start:
        period["start"] = header.service_start.isoformat()
    if not res.get("securityLabel") and header.confidentiality in ("N", "R", "V"):
        res["securityLabel"] = [{"coding": [{"code": header.confidentiality}]}]


def checked_params(request: Request, declared: dict[str, str]) -> list[Param]:
    """A search's parameters checked against those it declares (400 naming the others, or
    ignored with ``Prefer: handling=lenient``)."""
    from dmp.fhir import params

    return params.parse(
        request.query_params,
        declared,
        lenient_handling=params.lenient(request.headers.get("prefer")),
    )


def ins_param(token: str, *, test_mode: bool) -> Ins:
    """An INS a search names (``urn:oid:<OID>|<INS>``, or bare: INS-NIR); a value that is no
    INS is a bad request (400), as for any malformed search parameter."""
    try:
        return parse_ins_token(token, test_mode=test_mode)
    except InvalidInput as exc:
        raise BadRequest(f"{token[:40]!r} is not an INS: {exc.message}") from None


NO_SYSTEM = "the identifier has no system"


@contextmanager
def telling_assumed_oid(token: str | None) -> Iterator[None]:
    """A record not found for an INS given without its system says which OID was assumed."""
    try:
        yield
    except NotFound as exc:
        if token is None or "|" in token:
            raise
        raise assumed.explained(exc, NO_SYSTEM) from None


def patient_param(request: Request, access: RecordAccess) -> PatientRef:
    value = request.query_params.get("patient.identifier") or request.query_params.get("patient")
    if not value:
        raise BadRequest("patient or patient.identifier is required")
    if "|" in value or value.isdigit():
        return ins_param(value, test_mode=access.accepts_test_ins)
    return mapping.patient_ref(
        value if value.startswith("Patient") else f"Patient/{value}",
        test_mode=access.accepts_test_ins,
    )


def patient_value(applied: list[Param], access: RecordAccess) -> PatientRef:
    """The patient a search is about: ``patient`` or ``subject`` (``Patient/<key>``, the key, or
    with ``:identifier`` the INS token), or ``patient.identifier`` (the INS token)."""
    for p in applied:
        if p.name == "patient.identifier" or (
            p.name in ("patient", "subject") and p.modifier == "identifier"
        ):
            return ins_param(p.value, test_mode=access.accepts_test_ins)
        if p.name in ("patient", "subject"):
            value = p.value
            if "|" in value:  # an INS token given as a plain value (lenient reading)
                return ins_param(value, test_mode=access.accepts_test_ins)
            return mapping.patient_ref(
                value if value.startswith("Patient") else f"Patient/{value}",
                test_mode=access.accepts_test_ins,
            )
    raise BadRequest("patient, subject or patient.identifier is required")


def is_submission_set(res: dict[str, Any]) -> bool:
    """MHD: the List's code says submissionset or folder; a SubmissionSet also has a sourceId."""
    codes = {c for _, c in mapping.codes(res.get("code"))}
    if codes & {"submissionset", "folder"}:
        return "submissionset" in codes
    return any(str(e.get("url", "")).endswith("sourceId") for e in res.get("extension") or [])


def label_code(label: dict[str, Any]) -> str | None:
    coding = label.get("coding") or [{}]
    code = coding[0].get("code")
    return str(code) if code is not None else None
