"""DocumentReference: ITI-67 search, read, history, ITI-105 publication, PDSm PATCH, delete."""

from __future__ import annotations

import dataclasses
from typing import Any

import jsonpatch
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.parameters import Parameters

from dmp.access.views import DocumentChange, DocumentView
from dmp.domain.codes import VisibilityFlag
from dmp.errors import (
    BadRequest,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
)
from dmp.fhir import params
from dmp.fhir.common import (
    base_url,
    created,
    doc_ref,
    fhir,
    label_code,
    prepare_document,
    read_json,
    read_resource,
    telling_assumed_oid,
    validate_resource,
    version_headers,
)
from dmp.fhir.search import applied_parameters, page_links, parse_document_search
from dmp.fhir.transaction import refuse_fhir_documents
from dmp.front import fhir_mapping as mapping
from dmp.front.deps import Gate

router = APIRouter()


@router.get("/DocumentReference", name="fhir_docref_search")
def docref_search(
    request: Request,
    access: Gate,
) -> Response:
    query = applied_parameters(
        request.query_params, lenient_handling=params.lenient(request.headers.get("prefer"))
    )
    q = parse_document_search(query, test_mode=access.accepts_test_ins)
    base = base_url(request)
    count_only = params.summary(query.get("_summary")) == "count" or q.count == 0
    with telling_assumed_oid(q.bare_ins):
        page = access.search_documents(
            q.patient,
            type_codes=q.type_codes,
            statuses=q.statuses,
            service_from=q.service_from,
            service_to=q.service_to,
            limit=max(q.count, 1),
            offset=q.offset,
            criteria=q.criteria,
            # _summary=count and _count=0 inside the gate: the audit names only what leaves
            # (nothing).
            count_only=count_only or q.impossible,
        )
    items, total = (page.items, page.total) if not q.impossible else ([], 0)
    resources = []
    for doc in items:
        r = mapping.document_reference(doc, base)
        r["_fullUrl"] = f"{base}/DocumentReference/{r['id']}"
        resources.append(r)
    links = page_links(base, query, total, q.count, q.offset)
    profile = mapping.PDSM_SD + "pdsm-find-documentreferences-comprehensive-response"
    return fhir(mapping.searchset(resources, total, links, profile))


@router.get("/DocumentReference/{fhir_id}", name="fhir_docref_read")
def docref_read(
    fhir_id: str,
    request: Request,
    access: Gate,
) -> Response:
    key, logical = doc_ref(fhir_id)
    doc = access.read_document(key, logical)
    return fhir(mapping.document_reference(doc, base_url(request)), headers=version_headers(doc))


@router.get("/DocumentReference/{fhir_id}/_history", name="fhir_docref_history")
def docref_history(
    fhir_id: str,
    request: Request,
    access: Gate,
) -> Response:
    key, logical = doc_ref(fhir_id)
    versions = access.document_versions(key, logical)
    base = base_url(request)
    entries = [
        {
            "fullUrl": f"{base}/DocumentReference/{fhir_id}/_history/{v.version}",
            "resource": mapping.document_reference(v, base),
        }
        for v in reversed(versions)
    ]
    return fhir(
        {"resourceType": "Bundle", "type": "history", "total": len(entries), "entry": entries}
    )


@router.get("/DocumentReference/{fhir_id}/_history/{vid}", name="fhir_docref_vread")
def docref_vread(
    fhir_id: str,
    vid: str,
    request: Request,
    access: Gate,
) -> Response:
    key, logical = doc_ref(fhir_id)
    for v in access.document_versions(key, logical):
        if str(v.version) == vid:
            return fhir(mapping.document_reference(v, base_url(request)))
    raise NotFound("no such version")


@router.post("/DocumentReference", name="fhir_docref_create")
async def docref_create(
    request: Request,
    access: Gate,
) -> Response:
    """ITI-105 Simplified Publish: a DocumentReference carrying its content in attachment.data."""
    res = await read_resource(request, "DocumentReference")
    refuse_fhir_documents({"entry": [{"resource": res}]})
    validate_resource(DocumentReference, res, "DocumentReference")
    content = mapping.attachment_bytes(res)
    if content is None:
        raise InvalidInput("ITI-105 needs the content in attachment.data")
    patient, meta, content, replaces = prepare_document(res, content, access, None)
    # ITI-105: the recipient computes size and hash from attachment.data itself.
    meta = dataclasses.replace(meta, expected_size=None, expected_sha1=None)
    if replaces is not None and "." in replaces:
        replaces = doc_ref(replaces)[1]
    doc = await run_in_threadpool(
        access.deposit_document, patient, meta, content, replaces=replaces
    )
    base = base_url(request)
    return created(
        request,
        mapping.document_reference(doc, base),
        f"{base}/DocumentReference/{mapping.doc_fhir_id(doc)}/_history/1",
    )


PATCHABLE = ("status", "securityLabel", "extension")


@router.patch("/DocumentReference/{fhir_id}", name="fhir_docref_patch")
async def docref_patch(
    fhir_id: str,
    request: Request,
    access: Gate,
) -> Response:
    """PDSm metadata update: only status, securityLabel and the isArchived extension; a new
    version each time. JSON Patch or FHIRPath Patch (a Parameters resource)."""
    key, logical = doc_ref(fhir_id)
    body = await read_json(request)
    base = base_url(request)
    if not isinstance(body, list) and not (
        isinstance(body, dict) and body.get("resourceType") == "Parameters"
    ):
        raise BadRequest("send a JSON Patch array or a FHIRPath Patch Parameters resource")
    if isinstance(body, dict):
        validate_resource(Parameters, body, "Parameters")  # a wrong shape is a 422, not a 500
    expected = _if_match(request.headers.get("if-match"))

    def change(current: DocumentView) -> DocumentChange:
        # Runs inside the gate's transaction, on the version it holds.
        return _patched_change(current, body, base)

    doc = await run_in_threadpool(access.patch_document, key, logical, change, expected)
    return fhir(mapping.document_reference(doc, base), headers={"ETag": f'W/"{doc.version}"'})


def _if_match(value: str | None) -> int | None:
    """``If-Match: W/"3"`` (or ``"3"``) names the version a change expects."""
    if value is None:
        return None
    raw = value.strip().removeprefix("W/").strip('"')
    if not raw.isdigit() or len(raw) > 9:
        raise BadRequest('If-Match must name a version, as in W/"3"')
    return int(raw)


def _patched_change(current: DocumentView, body: Any, base: str) -> DocumentChange:
    """The flags a PATCH changes, from the document as it stands (PDSm: only status,
    securityLabel and the isArchived extension)."""
    before = mapping.document_reference(current, base)
    if isinstance(body, list):
        try:
            after = jsonpatch.apply_patch(before, body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise InvalidInput(f"the JSON Patch does not apply: {exc}") from None
    else:
        after = _fhirpath_patch(before, body)
    if not isinstance(after, dict):
        raise InvalidInput("the patch must leave a DocumentReference")
    # What the patch leaves must still be a DocumentReference (a label of the wrong shape
    # is named, not a crash).
    validate_resource(DocumentReference, after, "DocumentReference")
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    if changed - set(PATCHABLE):
        raise MethodNotAllowed(
            "only status, securityLabel and isArchived may change, not "
            + ", ".join(sorted(changed - set(PATCHABLE)))
        )
    conf, flags = mapping.security_flags(after.get("securityLabel") or [])
    archived = next(
        (
            e.get("valueBoolean")
            for e in after.get("extension") or []
            if e.get("url") == mapping.EXT_ARCHIVED
        ),
        None,
    )
    if conf != current.confidentiality:
        raise MethodNotAllowed("the confidentiality level (N/R/V) cannot be changed by PATCH")
    if after.get("status") != before.get("status"):
        if after.get("status") != "superseded":
            raise InvalidInput("status can only become superseded")
        raise MethodNotAllowed("a document becomes superseded by its replacement (ITI-65)")

    def differs(new: bool, old: bool) -> bool | None:
        return new if new != old else None

    change = DocumentChange(
        masked_ps=differs(flags[VisibilityFlag.MASQUE_PS], current.masked_ps),
        invisible_patient=differs(
            flags[VisibilityFlag.INVISIBLE_PATIENT], current.invisible_patient
        ),
        invisible_representatives=differs(
            flags[VisibilityFlag.INVISIBLE_REPRESENTANTS_LEGAUX], current.invisible_representatives
        ),
        archived=(
            differs(bool(archived), current.status == "archived") if archived is not None else None
        ),
    )
    if change == DocumentChange():
        raise InvalidInput("the patch changes nothing")
    return change


def _fhirpath_patch(resource: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The subset of FHIRPath Patch that PDSm uses: add/replace/delete on DocumentReference
    status, securityLabel and extension."""
    out = orjson.loads(orjson.dumps(resource))
    for op in params.get("parameter") or []:
        parts = {p.get("name"): p for p in op.get("part") or []}
        kind = (parts.get("type") or {}).get("valueCode")
        path = str((parts.get("path") or {}).get("valueString", ""))
        name = (parts.get("name") or {}).get("valueString")
        value_part = parts.get("value") or {}
        value = next((v for k, v in value_part.items() if k.startswith("value")), None)
        field = path.removeprefix("DocumentReference.").split("[")[0].split(".")[0]
        target = name if kind == "add" and path == "DocumentReference" else field
        if target not in PATCHABLE:
            raise MethodNotAllowed(f"{path or target} cannot be patched")
        if kind == "replace" and target == "status":
            out["status"] = value
        elif kind in ("add", "replace") and target == "securityLabel":
            label = value if isinstance(value, dict) and "coding" in value else {"coding": [value]}
            if kind == "replace":
                out["securityLabel"] = [
                    lbl
                    for lbl in out.get("securityLabel", [])
                    if label_code(lbl) in ("N", "R", "V")
                ] + [label]
            else:
                out.setdefault("securityLabel", []).append(label)
        elif kind == "delete" and target == "securityLabel":
            code = path.split("code='")[-1].split("'")[0] if "code='" in path else None
            out["securityLabel"] = [
                lbl
                for lbl in out.get("securityLabel", [])
                if label_code(lbl) in ("N", "R", "V") or (code and label_code(lbl) != code)
            ]
        elif kind in ("add", "replace") and target == "extension":
            out["extension"] = [{"url": mapping.EXT_ARCHIVED, "valueBoolean": bool(value)}]
        else:
            raise MethodNotAllowed(f"unsupported FHIRPath Patch operation {kind} on {path}")
    return dict(out)


@router.delete("/DocumentReference/{fhir_id}", name="fhir_docref_delete")
def docref_delete(fhir_id: str, request: Request, access: Gate) -> Response:
    key, logical = doc_ref(fhir_id)
    expected = _if_match(request.headers.get("if-match"))
    access.delete_document(key, logical, expected_version=expected)
    return Response(status_code=204)
