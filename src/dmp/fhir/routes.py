"""FHIR R4 endpoints (IHE MHD ITI-65, 66, 67, 68, ITI-105; PDSm metadata updates; Patient,
Consent, AuditEvent), all through the access gate."""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

import jsonpatch
import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import ValidationError

from dmp import __version__
from dmp.access import smart
from dmp.access.gateway import RecordAccess
from dmp.access.smart import TokenEndpoint
from dmp.access.views import Demographics, DocumentChange, DocumentView, NewDocument, NewList
from dmp.api.deps import Gate, token_endpoint
from dmp.domain import cda
from dmp.domain.codes import CreationChannel
from dmp.domain.ins import Ins, PatientKey, PatientRef, parse_ins_token
from dmp.errors import (
    BadRequest,
    Forbidden,
    InvalidInput,
    InvalidItem,
    MethodNotAllowed,
    NotFound,
)
from dmp.fhir import mapping
from dmp.fhir.outcome import FHIR_JSON
from dmp.fhir.search import SUPPORTED as SEARCH_PARAMETERS
from dmp.fhir.search import page_links, parse_document_search

router = APIRouter(prefix="/fhir", tags=["fhir"])

MAX_BUNDLE_ENTRIES = 200


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def fhir(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type=FHIR_JSON)


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


Tokens = Annotated[TokenEndpoint, Depends(token_endpoint)]


# -- capability and authentication ---------------------------------------------------------------


@router.get("/metadata", name="fhir_metadata")
def metadata(request: Request) -> Response:
    return fhir(capability_statement(base_url(request)))


@router.post("/auth/token", name="fhir_token")
async def token(request: Request, endpoint: Tokens) -> JSONResponse:
    """SMART Backend Services token endpoint (client_credentials + private_key_jwt)."""
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    try:
        answer = await run_in_threadpool(
            lambda: endpoint.exchange(
                grant_type=form.get("grant_type", ""),
                assertion_type=form.get("client_assertion_type", ""),
                assertion=form.get("client_assertion", ""),
                scope=form.get("scope", ""),
                token_url=str(request.url).split("?")[0],
            )
        )
    except smart.InvalidClient as exc:
        return JSONResponse({"error": "invalid_client", "error_description": exc.message}, 401)
    except InvalidInput as exc:
        return JSONResponse(
            {"error": exc.reason or "invalid_request", "error_description": exc.message}, 400
        )
    return JSONResponse(
        {
            "access_token": answer.access_token,
            "token_type": "bearer",
            "expires_in": answer.expires_in,
            "scope": answer.scope,
        },
        headers={"Cache-Control": "no-store"},
    )


# -- Patient ---------------------------------------------------------------------------------------


@router.get("/Patient", name="fhir_patient_search")
def patient_search(request: Request, access: Gate) -> Response:
    identifier = request.query_params.get("identifier")
    if not identifier:
        raise BadRequest("Patient search needs identifier=urn:oid:<INS OID>|<INS>")
    ins = parse_ins_token(identifier, test_mode=access.accepts_test_ins)
    base = base_url(request)
    view = access.find_record(ins)
    if view is None:
        return fhir(mapping.searchset([], 0, {"self": str(request.url)}))
    resource = mapping.patient(view, view.key)
    resource["_fullUrl"] = f"{base}/Patient/{view.key}"
    return fhir(mapping.searchset([resource], 1, {"self": str(request.url)}))


@router.get("/Patient/{key}", name="fhir_patient_read")
def patient_read(key: str, access: Gate) -> Response:
    view = access.read_record(PatientKey(key))
    return fhir(mapping.patient(view, view.key))


CONSENT_EXTENSION = "https://dmp.example.org/fhir/StructureDefinition/dmp-consentement-ouverture"


@router.post("/Patient", name="fhir_patient_create")
async def patient_create(request: Request, access: Gate) -> Response:
    """Open a record. The patient's consent is stated with the extension
    ``dmp-consentement-ouverture`` (valueBoolean true)."""
    res = await read_resource(request, "Patient")
    ins = None
    for ident in res.get("identifier") or []:
        system = str(ident.get("system", ""))
        if system.startswith("urn:oid:1.2.250.1.213.1.4."):
            ins = Ins(system.removeprefix("urn:oid:"), str(ident.get("value", "")))
    if ins is None:
        raise InvalidInput("Patient.identifier must hold an INS (urn:oid:1.2.250.1.213.1.4.x)")
    consent = any(
        e.get("url") == CONSENT_EXTENSION and e.get("valueBoolean") is True
        for e in res.get("extension") or []
    )
    names = res.get("name") or [{}]
    official = next((n for n in names if n.get("use") == "official"), names[0])
    address = (res.get("address") or [{}])[0]
    commune = (
        str(address.get("extension", [{}])[0].get("valueString", ""))
        if address.get("extension")
        else str(address.get("postalCode", ""))
    )
    try:
        birth = datetime.fromisoformat(str(res.get("birthDate"))).date()
    except ValueError:
        raise InvalidInput("Patient.birthDate is required (YYYY-MM-DD)") from None
    demo = Demographics(
        birth_family_name=str(official.get("family", "")),
        given_names=" ".join(official.get("given") or []),
        sex={"male": "M", "female": "F"}.get(str(res.get("gender")), "U"),
        birth_date=birth,
        residence_commune=commune.upper(),
    )
    view = await run_in_threadpool(
        access.open_record, ins, demo, channel=CreationChannel.PROFESSIONAL, patient_consent=consent
    )
    return fhir(
        mapping.patient(view, view.key),
        201,
        {"Location": f"{base_url(request)}/Patient/{view.key}/_history/1"},
    )


# -- DocumentReference -----------------------------------------------------------------------------


@router.get("/DocumentReference", name="fhir_docref_search")
def docref_search(
    request: Request,
    access: Gate,
) -> Response:
    q = parse_document_search(request.query_params, test_mode=access.accepts_test_ins)
    base = base_url(request)
    page = access.search_documents(
        q.patient,
        type_codes=q.type_codes,
        statuses=q.statuses,
        service_from=q.service_from,
        service_to=q.service_to,
        all_dates=q.all_dates,
        limit=q.count,
        offset=q.offset,
        criteria=q.criteria,
    )
    items, total = (page.items, page.total) if not q.impossible else ([], 0)
    resources = []
    for doc in items:
        r = mapping.document_reference(doc, base)
        r["_fullUrl"] = f"{base}/DocumentReference/{r['id']}"
        resources.append(r)
    return fhir(
        mapping.searchset(
            resources, total, page_links(base, request.query_params, total, q.count, q.offset)
        )
    )


def _doc(fhir_id: str) -> tuple[PatientKey, str]:
    try:
        return mapping.parse_doc_id(fhir_id)
    except InvalidInput:
        raise NotFound("no such document") from None


@router.get("/DocumentReference/{fhir_id}", name="fhir_docref_read")
def docref_read(
    fhir_id: str,
    request: Request,
    access: Gate,
) -> Response:
    key, logical = _doc(fhir_id)
    doc = access.read_document(key, logical)
    return fhir(
        mapping.document_reference(doc, base_url(request)), headers={"ETag": f'W/"{doc.version}"'}
    )


@router.get("/DocumentReference/{fhir_id}/_history", name="fhir_docref_history")
def docref_history(
    fhir_id: str,
    request: Request,
    access: Gate,
) -> Response:
    key, logical = _doc(fhir_id)
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
    key, logical = _doc(fhir_id)
    for v in access.document_versions(key, logical):
        if str(v.version) == vid:
            return fhir(mapping.document_reference(v, base_url(request)))
    raise NotFound("no such version")


def _validate(model: Any, resource: Any, what: str) -> None:
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidInput(f"invalid {what} at {where}: {first.get('msg')}") from None


def _prepare(
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


@router.post("/DocumentReference", name="fhir_docref_create")
async def docref_create(
    request: Request,
    access: Gate,
) -> Response:
    """ITI-105 Simplified Publish: a DocumentReference carrying its content in attachment.data."""
    res = await read_resource(request, "DocumentReference")
    _validate(DocumentReference, res, "DocumentReference")
    content = mapping.attachment_bytes(res)
    if content is None:
        raise InvalidInput("ITI-105 needs the content in attachment.data")
    patient, meta, content, replaces = _prepare(res, content, access, None)
    # ITI-105: the recipient computes size and hash from attachment.data itself.
    meta = dataclasses.replace(meta, expected_size=None, expected_sha1=None)
    if replaces is not None and "." in replaces:
        replaces = _doc(replaces)[1]
    doc = await run_in_threadpool(
        access.deposit_document, patient, meta, content, replaces=replaces
    )
    base = base_url(request)
    return fhir(
        mapping.document_reference(doc, base),
        201,
        {"Location": f"{base}/DocumentReference/{mapping.doc_fhir_id(doc)}/_history/1"},
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
    key, logical = _doc(fhir_id)
    body = await read_json(request)
    base = base_url(request)
    if not isinstance(body, list) and not (
        isinstance(body, dict) and body.get("resourceType") == "Parameters"
    ):
        raise BadRequest("send a JSON Patch array or a FHIRPath Patch Parameters resource")
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
        masked_ps=differs(flags["MASQUE_PS"], current.masked_ps),
        invisible_patient=differs(flags["INVISIBLE_PATIENT"], current.invisible_patient),
        invisible_representatives=differs(
            flags["INVISIBLE_REPRESENTANTS_LEGAUX"], current.invisible_representatives
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
                    lbl for lbl in out.get("securityLabel", []) if _code(lbl) in ("N", "R", "V")
                ] + [label]
            else:
                out.setdefault("securityLabel", []).append(label)
        elif kind == "delete" and target == "securityLabel":
            code = path.split("code='")[-1].split("'")[0] if "code='" in path else None
            out["securityLabel"] = [
                lbl
                for lbl in out.get("securityLabel", [])
                if _code(lbl) in ("N", "R", "V") or (code and _code(lbl) != code)
            ]
        elif kind in ("add", "replace") and target == "extension":
            out["extension"] = [{"url": mapping.EXT_ARCHIVED, "valueBoolean": bool(value)}]
        else:
            raise MethodNotAllowed(f"unsupported FHIRPath Patch operation {kind} on {path}")
    return dict(out)


def _code(label: dict[str, Any]) -> str | None:
    coding = label.get("coding") or [{}]
    code = coding[0].get("code")
    return str(code) if code is not None else None


@router.delete("/DocumentReference/{fhir_id}", name="fhir_docref_delete")
def docref_delete(fhir_id: str, request: Request, access: Gate) -> Response:
    key, logical = _doc(fhir_id)
    expected = _if_match(request.headers.get("if-match"))
    access.delete_document(key, logical, expected_version=expected)
    return Response(status_code=204)


# -- Binary (ITI-68) -----------------------------------------------------------------------------


@router.get("/Binary/{fhir_id}", name="fhir_binary_read")
def binary_read(
    fhir_id: str,
    request: Request,
    access: Gate,
) -> Response:
    key, logical = _doc(fhir_id)
    accept = request.headers.get("accept", "")
    as_fhir = request.query_params.get("_format") in ("json", "application/fhir+json")
    if "fhir+json" in accept or as_fhir:
        doc, content = access.read_content(key, logical)
        return fhir(mapping.binary(doc, content))
    doc, chunks = access.stream_content(key, logical)
    return StreamingResponse(
        chunks,
        media_type=doc.mime_type,
        headers={
            "Content-Length": str(doc.size),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "attachment",
        },
    )


# -- ITI-65 Provide Document Bundle ---------------------------------------------------------------


@router.post("", name="fhir_transaction")
async def transaction(
    request: Request,
    access: Gate,
) -> Response:
    bundle = await read_resource(request, "Bundle")
    if bundle.get("type") != "transaction":
        raise BadRequest("ITI-65 takes a transaction Bundle")
    entries = bundle.get("entry") or []
    if len(entries) > MAX_BUNDLE_ENTRIES:
        raise InvalidInput(f"a Bundle holds at most {MAX_BUNDLE_ENTRIES} entries")
    _validate(Bundle, bundle, "Bundle")
    by_url = {e.get("fullUrl"): e for e in entries if e.get("fullUrl")}
    lists = [e for e in entries if (e.get("resource") or {}).get("resourceType") == "List"]
    docs = [
        e for e in entries if (e.get("resource") or {}).get("resourceType") == "DocumentReference"
    ]
    patches = [e for e in entries if (e.get("request") or {}).get("method") == "PATCH"]
    if not docs:
        raise InvalidInput("the Bundle holds no DocumentReference")
    submission = [e for e in lists if _is_submission_set(e["resource"])]
    if len(submission) != 1:
        raise InvalidInput("the Bundle needs exactly one SubmissionSet List")
    patient: PatientRef | None = None
    items: list[tuple[NewDocument, bytes, str | None]] = []
    positions: dict[str, int] = {}  # fullUrl of each DocumentReference -> its place in items
    entry_of: list[int] = []  # place in items -> index of its Bundle entry
    for n, entry in enumerate(entries):
        res = entry.get("resource") or {}
        if res.get("resourceType") != "DocumentReference":
            continue
        where = f"Bundle.entry[{n}]"
        att = ((res.get("content") or [{}])[0] or {}).get("attachment") or {}
        url = att.get("url")
        if att.get("data") is not None:
            content = mapping.attachment_bytes(res)
        elif (binary := _binary_entry(entries, by_url, url)) is not None:
            data = binary.get("data")
            try:
                content = base64.b64decode(data or "", validate=True)
            except ValueError:
                raise InvalidInput(f"{where}: the Binary's data is not base64") from None
        else:
            raise InvalidInput(
                f"{where}: attachment.url {str(url)[:80]!r} does not resolve to a "
                "Binary of the Bundle"
            )
        assert content is not None
        try:
            ref, meta, content, replaces = _prepare(res, content, access, None)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc.message}", reason=exc.reason) from None
        if patient is not None and ref != patient:
            raise InvalidInput(f"{where}: every document of a Bundle is about the same patient")
        patient = ref
        if replaces is not None:
            replaces = _doc(replaces)[1] if "." in replaces else replaces
        positions[str(entry.get("fullUrl", ""))] = len(items)
        entry_of.append(n)
        items.append((meta, content, replaces))
    for p in patches:
        target = str((p.get("request") or {}).get("url", "")).removeprefix("DocumentReference/")
        if not any(r and (target.endswith(r)) for _, _, r in items):
            raise InvalidInput(f"the PATCH of {target[:80]} does not match a relatesTo replaces")
    assert patient is not None
    new_lists = [_new_list(e["resource"], positions, len(items)) for e in lists]
    try:
        stored = await run_in_threadpool(access.deposit_batch, patient, items, new_lists)
    except InvalidItem as exc:  # size, hash, metadata: name the entry
        raise InvalidInput(f"Bundle.entry[{entry_of[exc.index]}]: {exc.message}") from None
    base = base_url(request)
    response_entries = []
    it = iter(stored)
    for entry in entries:
        kind = (entry.get("resource") or {}).get("resourceType")
        if kind == "DocumentReference":
            doc = next(it)
            response_entries.append(
                {
                    "response": {
                        "status": "201 Created",
                        "location": f"{base}/DocumentReference/"
                        f"{mapping.doc_fhir_id(doc)}/_history/1",
                    }
                }
            )
        elif (entry.get("request") or {}).get("method") == "PATCH":
            response_entries.append({"response": {"status": "200 OK"}})
        else:
            response_entries.append({"response": {"status": "201 Created"}})
    return fhir(
        {"resourceType": "Bundle", "type": "transaction-response", "entry": response_entries}, 200
    )


def _binary_entry(
    entries: list[dict[str, Any]], by_url: dict[str, Any], url: Any
) -> dict[str, Any] | None:
    """The Binary an attachment.url points to: a fullUrl (urn:uuid:, urn:oid:, absolute) or a
    relative ``Binary/<id>`` reference to an entry of the Bundle."""
    if not isinstance(url, str):
        return None
    entry = by_url.get(url)
    if entry is None and url.startswith("Binary/"):
        wanted = url.removeprefix("Binary/")
        for e in entries:
            res = e.get("resource") or {}
            if res.get("resourceType") == "Binary" and (
                res.get("id") == wanted or str(e.get("fullUrl", "")).endswith("/" + url)
            ):
                entry = e
                break
    resource = (entry or {}).get("resource") or {}
    return resource if resource.get("resourceType") == "Binary" else None


def _new_list(res: dict[str, Any], positions: dict[str, int], count: int) -> NewList:
    """A SubmissionSet or Folder List; its entries point at DocumentReferences of the Bundle."""
    kind = "submissionset" if _is_submission_set(res) else "folder"
    refs = [str((e.get("item") or {}).get("reference", "")) for e in res.get("entry") or []]
    docs = tuple(sorted({positions[r] for r in refs if r in positions}))
    if kind == "submissionset" and not docs:
        docs = tuple(range(count))
    identifiers = {
        str(i.get("use", "")): str(i.get("value", "")) for i in res.get("identifier") or []
    }
    source = next(
        (
            str(e.get("valueIdentifier", {}).get("value", ""))
            for e in res.get("extension") or []
            if str(e.get("url", "")).endswith("ihe-sourceId")
        ),
        None,
    )
    code = next((c for _, c in mapping.codes(res.get("code"))), None)
    return NewList(
        kind=kind,
        documents=docs,
        unique_id=identifiers.get("usual") or next(iter(identifiers.values()), None),
        source_id=source,
        title=res.get("title"),
        code=code,
    )


@router.get("/List", name="fhir_list_search")
def list_search(request: Request, access: Gate) -> Response:
    """ITI-66 Find Lists: SubmissionSets (code=submissionset) and Folders (code=folder)."""
    params = request.query_params
    unknown = set(params) - {
        "patient",
        "patient.identifier",
        "code",
        "status",
        "identifier",
        "_count",
    }
    if unknown:
        raise BadRequest(f"unsupported search parameters: {', '.join(sorted(unknown))}")
    patient = _patient_param(request, access)
    code = (params.get("code") or "").split("|")[-1] or None
    if code not in (None, "submissionset", "folder"):
        raise BadRequest("code is submissionset or folder")
    if params.get("status") not in (None, "current"):
        return fhir(mapping.searchset([], 0, {"self": str(request.url)}))
    wanted = (params.get("identifier") or "").split("|")[-1] or None
    base = base_url(request)
    found = [
        lst
        for lst in access.search_lists(patient, code)
        if wanted is None or wanted in (lst.unique_id, lst.id)
    ]
    resources = []
    for lst in found:
        r = mapping.list_resource(lst)
        r["_fullUrl"] = f"{base}/List/{r['id']}"
        resources.append(r)
    return fhir(mapping.searchset(resources, len(resources), {"self": str(request.url)}))


def _is_submission_set(res: dict[str, Any]) -> bool:
    """MHD: the List's code says submissionset or folder; a SubmissionSet also has a sourceId."""
    codes = {c for _, c in mapping.codes(res.get("code"))}
    if codes & {"submissionset", "folder"}:
        return "submissionset" in codes
    return any(str(e.get("url", "")).endswith("sourceId") for e in res.get("extension") or [])


# -- AuditEvent and Consent ----------------------------------------------------------------------


def _patient_param(request: Request, access: RecordAccess) -> PatientRef:
    value = request.query_params.get("patient.identifier") or request.query_params.get("patient")
    if not value:
        raise BadRequest("patient or patient.identifier is required")
    if "|" in value or value.isdigit():
        return parse_ins_token(value, test_mode=access.accepts_test_ins)
    return mapping.patient_ref(
        value if value.startswith("Patient") else f"Patient/{value}",
        test_mode=access.accepts_test_ins,
    )


@router.get("/AuditEvent", name="fhir_auditevent_search")
def auditevent_search(request: Request, access: Gate) -> Response:
    """The record's traces: the holder and the GP see all, a professional their own."""
    patient = _patient_param(request, access)
    try:
        count = int(request.query_params.get("_count", "50"))
        offset = int(request.query_params.get("_offset", "0"))
    except ValueError:
        raise BadRequest("_count and _offset are whole numbers") from None
    page = access.history(patient, limit=count, offset=offset)
    key = patient.id if isinstance(patient, PatientKey) else access.read_record(patient).key
    events = [mapping.audit_event(t, key, offset + n) for n, t in enumerate(page.items)]
    return fhir(mapping.searchset(events, page.total, {"self": str(request.url)}))


@router.get("/Consent", name="fhir_consent_search")
def consent_search(request: Request, access: Gate) -> Response:
    """The holder's authorisations and blocks of professionals, as Consent resources."""
    patient = _patient_param(request, access)
    rows = access.permissions(patient)
    record = access.read_record(patient)
    key = record.key
    # The holder's oppositions to emergency and regulation-centre access (AC-8, AC-9), then
    # the decisions about professionals (authorised, blocked).
    resources = [
        mapping.consent(key, f"opposition-{mode.replace('_', '-')}", permit=False, purpose=mode)
        for opposed, mode in (
            (record.oppose_bris_de_glace, "bris_de_glace"),
            (record.oppose_centre_15, "centre_15"),
        )
        if opposed
    ]
    resources += [
        mapping.consent(key, ps, permit=blocked is None, professional=ps, at=blocked or consented)
        for ps, consented, blocked in rows
    ]
    return fhir(mapping.searchset(resources, len(resources), {"self": str(request.url)}))


@router.post("/Consent", name="fhir_consent_create")
async def consent_create(request: Request, access: Gate) -> Response:
    """A professional declares the consent the patient gave them (provision permit)."""
    res = await read_resource(request, "Consent")
    ref = (res.get("patient") or {}).get("reference")
    if not ref:
        raise InvalidInput("Consent.patient is required")
    patient = mapping.patient_ref(str(ref), test_mode=access.accepts_test_ins)
    provision = res.get("provision") or {}
    if provision.get("type", "permit") != "permit":
        raise Forbidden("a professional declares consents; blocks are the patient's decision")
    await run_in_threadpool(access.declare_consent, patient)
    return fhir(res, 201)


_PARAM_TYPES = {
    "patient": "reference",
    "author": "reference",
    "related": "reference",
    "relatesto": "reference",
    "date": "date",
    "creation": "date",
    "period": "date",
    "period-start": "date",
    "period-end": "date",
    "_count": "number",
    "_sort": "string",
}


def capability_statement(base: str) -> dict[str, Any]:
    docref_params = sorted(p for p in SEARCH_PARAMETERS if p not in ("_offset", "_format"))
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-26",
        "publisher": "dmp",
        "kind": "instance",
        "software": {"name": "dmp", "version": __version__},
        "implementation": {"description": "dmp shared medical record", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "instantiates": [
            "https://interop.esante.gouv.fr/ig/fhir/pdsm/CapabilityStatement/PDSm-GestionnaireDePartageDeDocuments"
        ],
        "implementationGuide": [
            "https://interop.esante.gouv.fr/ig/fhir/pdsm/ImplementationGuide/ans.fhir.fr.pdsm"
        ],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [{"url": "token", "valueUri": f"{base}/auth/token"}],
                        }
                    ],
                    "description": "SMART Backend Services: client_credentials with "
                    "private_key_jwt (RS384, ES384)",
                },
                "interaction": [
                    {
                        "code": "transaction",
                        "documentation": "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-comprehensive-provide-document-bundle",
                    }
                ],
                "resource": [
                    {
                        "type": "DocumentReference",
                        "profile": mapping.PROFILE_DOCREF,
                        "interaction": [
                            {"code": c}
                            for c in (
                                "read",
                                "vread",
                                "history-instance",
                                "search-type",
                                "create",
                                "patch",
                                "delete",
                            )
                        ],
                        "versioning": "versioned",
                        "searchParam": [
                            {"name": n, "type": _PARAM_TYPES.get(n, "token")} for n in docref_params
                        ],
                    },
                    {
                        "type": "List",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [
                            {"name": n, "type": "token"}
                            for n in (
                                "patient",
                                "patient.identifier",
                                "code",
                                "status",
                                "identifier",
                            )
                        ],
                    },
                    {"type": "Binary", "interaction": [{"code": "read"}]},
                    {
                        "type": "Patient",
                        "interaction": [{"code": c} for c in ("read", "search-type", "create")],
                        "searchParam": [{"name": "identifier", "type": "token"}],
                    },
                    {
                        "type": "Consent",
                        "interaction": [{"code": c} for c in ("search-type", "create")],
                        "searchParam": [{"name": "patient", "type": "reference"}],
                    },
                    {
                        "type": "AuditEvent",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [{"name": "patient", "type": "reference"}],
                    },
                ],
            }
        ],
    }
