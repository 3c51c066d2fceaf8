"""List: ITI-66 Find Lists and List read (SubmissionSets and Folders, showing only what the
caller may see), with every search parameter of the PDSm document-sharing server role."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from dmp.access.views import ListView
from dmp.errors import BadRequest, InvalidInput, NotFound
from dmp.fhir import params
from dmp.fhir.common import base_url, fhir, http_date, patient_value, telling_assumed_oid
from dmp.fhir.params import Param
from dmp.front import fhir_mapping as mapping
from dmp.front.deps import Gate

router = APIRouter()

# The List search parameters of the PDSm "Gestionnaire de partage de documents" role (its
# CapabilityStatement), by the code a client sends, with their FHIR type.
LIST_PARAMETERS = {
    "patient": "reference",
    "patient.identifier": "token",
    "subject": "reference",
    "code": "token",
    "status": "token",
    "identifier": "token",
    "date": "date",
    "designationType": "token",
    "isArchived": "token",
    "title": "string",
    "sourceId": "token",
    "source": "reference",
    "authorOrg": "reference",
}
MAX_COUNT = 100


def _token_any(wanted: list[str], system: str | None, code: str | None) -> bool:
    return any(params.token_matches(w, system, code) for w in wanted)


def _matches(lst: ListView, applied: list[Param]) -> bool:
    """Every criterion holds (AND between parameters, OR within one parameter's values)."""
    kinds, source = mapping.list_source(lst)
    for p in applied:
        values = p.value.split(",")
        match p.name:
            case "code":
                ok = _token_any(values, mapping.MHD_LIST_TYPES, lst.kind)
            case "status":
                ok = _token_any(values, "http://hl7.org/fhir/list-status", "current")
            case "identifier":
                ok = any(
                    params.token_matches(v, mapping.RFC3986, lst.unique_id)
                    or params.token_matches(v, None, mapping.list_fhir_id(lst))
                    for v in values
                )
            case "date":
                ok = params.date_matches(p.value, "date", lst.submitted_at)
            case "designationType":
                ok = _token_any(values, None, lst.code)
            case "isArchived":
                ok = _token_any(values, None, "false")  # a List is never archived here
            case "title":
                ok = any(params.string_matches(v, p.modifier, lst.title) for v in values)
            case "sourceId":
                ok = any(
                    params.token_matches(v, None, lst.source_id)
                    or params.token_matches(v, None, (lst.source_id or "").removeprefix("urn:oid:"))
                    for v in values
                )
            case "source":
                ok = any(params.reference_matches(v, p.modifier, kinds, source) for v in values)
            case "authorOrg":
                org = (mapping.STRUCT_OID, lst.author_structure) if lst.author_structure else None
                ok = any(
                    params.reference_matches(v, p.modifier, ("Organization",), org) for v in values
                )
            case _:
                ok = True  # the patient and the controls were applied before
        if p.modifier == "not" and p.name in LIST_PARAMETERS:
            ok = not ok
        if not ok:
            return False
    return True


@router.get("/List", name="fhir_list_search")
def list_search(request: Request, access: Gate) -> Response:
    """ITI-66 Find Lists: SubmissionSets (code=submissionset) and Folders (code=folder)."""
    lenient = params.lenient(request.headers.get("prefer"))
    applied = params.parse(request.query_params, LIST_PARAMETERS, lenient_handling=lenient)
    patient = patient_value(applied, access)
    if any(p.name == "status" and p.modifier is None for p in applied):
        for v in params.values(applied, "status"):
            if v.split("|")[-1] not in ("current", "retired", "entered-in-error"):
                raise BadRequest(f"status: {v!r} is not a List status (current, retired, ...)")
    try:
        count = int(params.first(applied, "_count") or "20")
        offset = int(params.first(applied, "_offset") or "0")
    except ValueError:
        raise BadRequest("_count and _offset are whole numbers") from None
    if not 0 <= count <= MAX_COUNT or not 0 <= offset <= 10**9:
        raise BadRequest(f"_count must be 0 to {MAX_COUNT}, _offset 0 or more")
    kinds = {v.split("|")[-1] for v in params.values(applied, "code")}
    kind = next(iter(kinds)) if len(kinds) == 1 and kinds <= {"submissionset", "folder"} else None
    summary = params.summary(params.first(applied, "_summary"))
    params.total_mode(applied)
    with telling_assumed_oid(params.first(applied, "patient.identifier")):
        page = access.search_lists(
            patient,
            kind,
            where=lambda lst: _matches(lst, applied),
            limit=max(count, 1),
            offset=offset,
            count_only=summary == "count" or count == 0,
        )
    base = base_url(request)
    resources: list[dict[str, Any]] = []
    for lst in page.items:
        r = mapping.list_resource(lst)
        r["_fullUrl"] = f"{base}/List/{r['id']}"
        resources.append(r)
    links = _links(base, applied, page.total, count, offset)
    profile = mapping.PDSM_SD + "pdsm-find-lists-response"
    return fhir(mapping.searchset(resources, page.total, links, profile))


def _links(base: str, applied: list[Param], total: int, count: int, offset: int) -> dict[str, str]:
    """The self link states the parameters applied (an ignored one is not there)."""
    stated = [
        (f"{p.name}:{p.modifier}" if p.modifier else p.name, p.value)
        for p in applied
        if p.name not in ("_count", "_offset")
    ]

    def url(off: int) -> str:
        query = urlencode([*stated, ("_count", str(count)), ("_offset", str(off))])
        return f"{base}/List?{query}"

    links = {"self": url(offset)}
    if count and offset + count < total:
        links["next"] = url(offset + count)
    if offset > 0:
        links["previous"] = url(max(0, offset - count))
    return links


@router.get("/List/{fhir_id}", name="fhir_list_read")
def list_read(fhir_id: str, request: Request, access: Gate) -> Response:
    try:
        key, list_id = mapping.parse_doc_id(fhir_id)
    except InvalidInput:
        raise NotFound("no such List") from None
    lst = access.read_list(key, list_id)
    # A List never changes once submitted: one version, dated by its submission.
    headers = {"ETag": 'W/"1"', "Last-Modified": http_date(lst.submitted_at)}
    return fhir(mapping.list_resource(lst), headers=headers)
