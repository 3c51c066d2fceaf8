"""AuditEvent: the record's access history, for those who may read it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from dmp.access.kernel import MAX_OFFSET, MAX_PAGE
from dmp.domain.ins import PatientKey
from dmp.errors import (
    BadRequest,
)
from dmp.fhir import params
from dmp.fhir.common import checked_params, fhir, patient_param, telling_assumed_oid
from dmp.front import fhir_mapping as mapping
from dmp.front.deps import Gate

router = APIRouter()


@router.get("/AuditEvent", name="fhir_auditevent_search")
def auditevent_search(request: Request, access: Gate) -> Response:
    """The record's traces: the holder and the GP see all, a professional their own."""
    applied = checked_params(request, {"patient": "reference", "patient.identifier": "token"})
    params.total_mode(applied)
    patient = patient_param(request, access)
    try:
        count = int(request.query_params.get("_count", "50"))
        offset = int(request.query_params.get("_offset", "0"))
    except ValueError:
        raise BadRequest("_count and _offset are whole numbers") from None
    if not 0 <= count <= MAX_PAGE or not 0 <= offset <= MAX_OFFSET:
        raise BadRequest(f"_count must be 0 to {MAX_PAGE}, _offset 0 to {MAX_OFFSET}")
    with telling_assumed_oid(request.query_params.get("patient.identifier")):
        page = access.history(patient, limit=max(count, 1), offset=offset)
    items = page.items if count else []  # _count=0: the total alone
    # The history names the record's key: no second action (and no second trace) to learn it.
    key = patient.id if isinstance(patient, PatientKey) else page.patient_key
    assert key is not None
    events = [mapping.audit_event(t, key, offset + n) for n, t in enumerate(items)]
    return fhir(mapping.searchset(events, page.total, {"self": str(request.url)}))
