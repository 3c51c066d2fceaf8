"""ITI-65 Provide Document Bundle: SubmissionSet, DocumentReferences, Binaries, Folder; all or
nothing."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fhir.resources.R4B.bundle import Bundle

from dmp.access.record_access import RecordAccess
from dmp.access.views import NewDocument, NewList
from dmp.domain.ins import PatientRef
from dmp.errors import (
    BadRequest,
    InvalidInput,
    InvalidItem,
)
from dmp.fhir.common import (
    MAX_BUNDLE_ENTRIES,
    base_url,
    doc_ref,
    fhir,
    is_submission_set,
    prepare_document,
    read_resource,
    validate_resource,
)
from dmp.front import fhir_mapping as mapping
from dmp.front.deps import Gate


async def transaction(
    request: Request,
    access: Gate,
) -> Response:
    bundle = await read_resource(request, "Bundle")
    # Everything after reading the body is CPU and the database: one trip to a worker thread,
    # so that the validation and the CDA reading never hold up the event loop (issue 26).
    body = await run_in_threadpool(_submit, bundle, access, base_url(request))
    return fhir(body, 200)


def _submit(bundle: dict[str, Any], access: RecordAccess, base: str) -> dict[str, Any]:
    """An ITI-65 transaction checked, stored in one transaction, and its response Bundle."""
    if bundle.get("type") == "document":
        refuse_fhir_documents(bundle)
    if bundle.get("type") != "transaction":
        raise BadRequest("ITI-65 takes a transaction Bundle")
    refuse_fhir_documents(bundle)
    entries = bundle.get("entry") or []
    if len(entries) > MAX_BUNDLE_ENTRIES:
        raise InvalidInput(f"a Bundle holds at most {MAX_BUNDLE_ENTRIES} entries")
    validate_resource(Bundle, bundle, "Bundle")
    by_url = {e.get("fullUrl"): e for e in entries if e.get("fullUrl")}
    lists = [e for e in entries if (e.get("resource") or {}).get("resourceType") == "List"]
    docs = [
        e for e in entries if (e.get("resource") or {}).get("resourceType") == "DocumentReference"
    ]
    patches = [e for e in entries if (e.get("request") or {}).get("method") == "PATCH"]
    if not docs:
        raise InvalidInput("the Bundle holds no DocumentReference")
    submission = [e for e in lists if is_submission_set(e["resource"])]
    if len(submission) != 1:
        raise InvalidInput("the Bundle needs exactly one SubmissionSet List")
    patient: PatientRef | None = None
    items: list[tuple[NewDocument, bytes, str | None]] = []
    positions: dict[str, int] = {}  # fullUrl of each DocumentReference -> its place in items
    entry_of: list[int] = []  # place in items -> index of its Bundle entry
    binary_of: dict[int, int] = {}  # index of a Binary entry -> place of its document in items
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
            binary_of[next(i for i, e in enumerate(entries) if e.get("resource") is binary)] = len(
                items
            )
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
            ref, meta, content, replaces = prepare_document(res, content, access, None)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc.message}", reason=exc.reason) from None
        if patient is not None and ref != patient:
            raise InvalidInput(f"{where}: every document of a Bundle is about the same patient")
        patient = ref
        if replaces is not None:
            replaces = doc_ref(replaces)[1] if "." in replaces else replaces
        positions[str(entry.get("fullUrl", ""))] = len(items)
        entry_of.append(n)
        items.append((meta, content, replaces))
    for p in patches:
        target = str((p.get("request") or {}).get("url", "")).removeprefix("DocumentReference/")
        if not any(r and (target.endswith(r)) for _, _, r in items):
            raise InvalidInput(f"the PATCH of {target[:80]} does not match a relatesTo replaces")
    for n, entry in enumerate(entries):
        kind = (entry.get("resource") or {}).get("resourceType")
        if kind == "Binary" and n not in binary_of:
            raise InvalidInput(f"Bundle.entry[{n}]: no DocumentReference points to this Binary")
        if kind not in ("DocumentReference", "List", "Binary") and (
            (entry.get("request") or {}).get("method") != "PATCH"
        ):
            raise InvalidInput(f"Bundle.entry[{n}]: a {kind} is not part of an ITI-65 submission")
    assert patient is not None
    new_lists = [_new_list(e["resource"], positions, len(items)) for e in lists]
    list_of = {id(e): lst for e, lst in zip(lists, new_lists, strict=True)}
    try:
        stored = access.deposit_batch(patient, items, new_lists)
    except InvalidItem as exc:  # size, hash, metadata: name the entry
        raise InvalidInput(f"Bundle.entry[{entry_of[exc.index]}]: {exc.message}") from None
    key = stored[0].patient_id
    response_entries = []
    it = iter(stored)
    for n, entry in enumerate(entries):
        kind = (entry.get("resource") or {}).get("resourceType")
        if kind == "DocumentReference":
            doc = next(it)
            status, where = "201 Created", f"DocumentReference/{mapping.doc_fhir_id(doc)}"
            where += "/_history/1"
        elif (entry.get("request") or {}).get("method") == "PATCH":
            target = str((entry.get("request") or {}).get("url", "")).split("?")[0]
            status, where = "200 OK", target
        elif kind == "List":
            status, where = "201 Created", f"List/{key}.{list_of[id(entry)].id}"
        elif kind == "Binary" and n in binary_of:
            # ITI-68 reads a document's content at Binary/<the document's id>.
            status, where = "201 Created", f"Binary/{mapping.doc_fhir_id(stored[binary_of[n]])}"
        else:  # refused above, before anything was stored
            raise AssertionError(kind)
        response_entries.append({"response": {"status": status, "location": f"{base}/{where}"}})
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": response_entries}


FHIR_JSON_TYPES = ("application/fhir+json", "application/fhir+xml", "application/json+fhir")


def refuse_fhir_documents(bundle: dict[str, Any]) -> None:
    """MHD's FHIR Document Publish option is not claimed: a FHIR Document (a Bundle of type
    document, sent as is, inside the transaction, or as a document's content) is refused
    with the code MHD names."""
    why = None
    if bundle.get("type") == "document":
        why = "a FHIR Document Bundle"
    for n, entry in enumerate(bundle.get("entry") or []):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict):
            continue
        if res.get("resourceType") == "Bundle" and res.get("type") == "document":
            why = f"Bundle.entry[{n}] is a FHIR Document"
        elif res.get("resourceType") == "Binary" and str(res.get("contentType", "")).startswith(
            FHIR_JSON_TYPES
        ):
            why = f"Bundle.entry[{n}] holds a FHIR Document"
        elif res.get("resourceType") == "DocumentReference":
            contents = res.get("content")
            for content in contents if isinstance(contents, list) else []:
                # A content of the wrong shape is left to the resource's validation (a 422).
                attachment = content.get("attachment") if isinstance(content, dict) else None
                if not isinstance(attachment, dict):
                    continue
                mime = str(attachment.get("contentType", ""))
                if mime.startswith(FHIR_JSON_TYPES):
                    why = f"Bundle.entry[{n}] describes a FHIR Document"
    if why:
        raise InvalidInput(
            f"{why}: this server does not support MHD's FHIR Document Publish option "
            "(publish the document as CDA or PDF)",
            reason="FHIRDocumentNotSupported",
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
    kind = "submissionset" if is_submission_set(res) else "folder"
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
    # MHD: a SubmissionSet's contentTypeCode and a Folder's codeList are the designationType
    # extension (List.code only says submissionset or folder).
    code = next(
        (
            c
            for e in res.get("extension") or []
            if str(e.get("url", "")).endswith("ihe-designationType")
            for _, c in mapping.codes(e.get("valueCodeableConcept"))
        ),
        None,
    )
    return NewList(
        kind=kind,
        documents=docs,
        unique_id=identifiers.get("usual") or next(iter(identifiers.values()), None),
        source_id=source,
        title=res.get("title"),
        code=code,
    )
