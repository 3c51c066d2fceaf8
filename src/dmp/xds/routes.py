"""The DMP's SOAP interface: IHE XDS.b (ITI-41, ITI-18, ITI-43, ITI-57) and the DMP's record
status and consent transactions, at ``POST /xds`` (SOAP 1.2, WS-Addressing Action names the
transaction; inline or MTOM/XOP), described by ``GET /xds?wsdl``.

Every request's VIHF assertion becomes the grant the FHIR door would build
(:func:`dmp.front.deps.soap_gate`); every transaction is a call to the same gate, so the rules,
scopes and audit are the FHIR door's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from lxml import etree

from dmp.access.policy import Reason
from dmp.access.record_access import RecordAccess
from dmp.access.views import DocumentView, ListView, NewDocument, NewList, SearchCriteria
from dmp.domain.codes import as_oid, unique_id_forms
from dmp.domain.ins import Ins
from dmp.errors import (
    Conflict,
    DmpError,
    Forbidden,
    InvalidInput,
    InvalidItem,
    NotFound,
    PreconditionFailed,
)
from dmp.front import soap
from dmp.front.deps import SoapCall, soap_gate
from dmp.xds import ebrim
from dmp.xds.ebrim import NS, QUERY, RIM, RS, XDSB, MetadataError

router = APIRouter(prefix="/xds", tags=["xds"])

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
DMP = "urn:dmp:xds:2026"
RECORD_STATUS = f"{DMP}:RecordStatus"
DECLARE_CONSENT = f"{DMP}:DeclareConsent"
# One answer holds at most this many entries; beyond, a PartialSuccess says so.
MAX_RESULTS = 500

Q = {
    "FindDocuments": "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d",
    "FindSubmissionSets": "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9",
    "FindFolders": "urn:uuid:958f3006-baad-4929-a4de-ff1114824431",
    "GetAll": "urn:uuid:10b545ea-725c-446d-9b95-8aeb444eddf3",
    "GetDocuments": "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4",
    "GetFolders": "urn:uuid:5737b14c-8a1a-4539-b659-e03a34a5e1e4",
    "GetAssociations": "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155",
    "GetDocumentsAndAssociations": "urn:uuid:bab9529a-4a10-40b3-a01f-f68a615d247a",
    "GetSubmissionSets": "urn:uuid:51224314-5390-4169-9b91-b1980040715a",
    "GetSubmissionSetAndContents": "urn:uuid:e8e3cb2c-e39c-46b9-99e4-c12f57260b83",
    "GetFolderAndContents": "urn:uuid:b909a503-523d-4517-8acf-8e5834dfc4c7",
    "GetRelatedDocuments": "urn:uuid:d90e5407-b356-4d91-a89f-873917b4b0e6",
}
QUERY_NAMES = {v: k for k, v in Q.items()}


@router.get("", name="xds_wsdl")
def wsdl(request: Request) -> Response:
    """The service description (``?wsdl``), its address this server's."""
    text = resources.files("dmp.xds").joinpath("data/dmp-xds.wsdl").read_text(encoding="utf-8")
    address = str(request.base_url).rstrip("/") + "/xds"
    return Response(text.replace("{{ADDRESS}}", address), media_type="text/xml")


@router.post("", name="xds_service")
async def service(call: Annotated[SoapCall, Depends(soap_gate)], request: Request) -> Response:
    handler = HANDLERS.get(call.message.action)
    if handler is None:
        raise soap.SoapFault(
            f"unknown WS-Addressing Action {call.message.action[:100]!r}: this service answers "
            + ", ".join(HANDLERS)
        )
    repository: str = request.app.state.xds_repository
    answer = await run_in_threadpool(handler, Context(call, repository))
    relates = call.message.message_id
    action = call.message.action + "Response"
    if answer.parts:
        content, content_type = soap.mtom(action, relates, answer.body, answer.parts)
        return Response(content, media_type=None, headers={"Content-Type": content_type})
    return Response(
        soap.envelope(action, relates, answer.body),
        headers={"Content-Type": f'{soap.SOAP_XML}; charset=UTF-8; action="{action}"'},
    )


@dataclass(frozen=True)
class Context:
    call: SoapCall
    repository: str

    @property
    def access(self) -> RecordAccess:
        return self.call.access

    @property
    def request(self) -> etree._Element:
        return self.call.message.body

    def patient(self, named: Ins | None = None) -> Ins:
        """The patient a request is about: the one it names, else the VIHF's."""
        patient = named or self.call.patient
        if patient is None:
            raise MetadataError(
                "this request names no patient: the VIHF assertion's resource-id gives it",
                "XDSUnknownPatientId",
            )
        return patient


@dataclass
class Answer:
    body: etree._Element
    parts: list[tuple[etree._Element, str, bytes]] = field(default_factory=list)


def _errors(exc: DmpError, where: str = "") -> list[tuple[str, str, str]]:
    """A gate's refusal or a metadata error as XDS RegistryErrors (errorCode, codeContext,
    location). Access refusals carry the gate's reason code (docs/access-rules.md)."""
    if isinstance(exc, MetadataError):
        code = exc.code
    elif isinstance(exc, NotFound) and exc.reason in (
        Reason.DENY_UNKNOWN_PATIENT.value,
        Reason.DENY_NOT_HOLDER.value,
    ):
        code = "XDSUnknownPatientId"
    elif isinstance(exc, NotFound):
        code = "XDSDocumentUniqueIdError"
    elif isinstance(exc, PreconditionFailed):
        code = "XDSMetadataVersionError"
    elif isinstance(exc, Conflict) and "unique id" in exc.message:
        code = "XDSDuplicateUniqueIdInRegistry"
    elif exc.reason and exc.reason.startswith("DENY_"):
        code = exc.reason
    elif isinstance(exc, Forbidden):
        code = "XDSRegistryError"
    elif isinstance(exc, InvalidInput) and "hash" in exc.message:
        code = "XDSNonIdenticalHash"
    elif isinstance(exc, InvalidInput) and "size" in exc.message:
        code = "XDSNonIdenticalSize"
    elif isinstance(exc, InvalidInput):
        code = "XDSRegistryMetadataError"
    else:
        code = "XDSRegistryError"
    return [(code, exc.message, where)]


# -- ITI-41 Provide and Register Document Set-b ----------------------------------------------


def provide(ctx: Context) -> Answer:
    try:
        sor = ctx.request.find("lcm:SubmitObjectsRequest", NS)
        if sor is None:
            raise MetadataError("ProvideAndRegisterDocumentSetRequest needs a SubmitObjectsRequest")
        sub = ebrim.submission(sor, test_mode=ctx.access.accepts_test_ins)
        if sub.status_updates:
            raise MetadataError("status updates are ITI-57 (UpdateDocumentSet)")
        contents = {}
        for doc in ctx.request.findall("xdsb:Document", NS):
            contents[doc.get("id", "")] = soap.binary(doc, ctx.call.message)
        items: list[tuple[NewDocument, bytes, str | None]] = []
        for ident, meta, replaces in sub.documents:
            if ident not in contents:
                raise MetadataError(
                    f"{ident}: no Document carries its content", "XDSMissingDocument"
                )
            items.append((meta, contents.pop(ident), replaces))
        if contents:
            raise MetadataError(
                f"Document {sorted(contents)[0][:60]!r} has no DocumentEntry",
                "XDSMissingDocumentMetadata",
            )
        lists: list[NewList] = [lst for _, lst in sub.lists]
        if not any(lst.kind == "submissionset" for lst in lists):
            raise MetadataError("the submission needs its SubmissionSet")
        ctx.access.deposit_batch(ctx.patient(sub.patient), items, lists)
    except InvalidItem as exc:
        where = sub.documents[exc.index][0] if exc.index < len(sub.documents) else ""
        return Answer(ebrim.registry_response(ebrim.FAILURE, _errors(exc, where)))
    except DmpError as exc:
        return Answer(ebrim.registry_response(ebrim.FAILURE, _errors(exc)))
    return Answer(ebrim.registry_response(ebrim.SUCCESS))


# -- ITI-43 Retrieve Document Set --------------------------------------------------------


def retrieve(ctx: Context) -> Answer:
    out = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetResponse", nsmap={"xdsb": XDSB, "rs": RS})
    status = etree.SubElement(out, f"{{{RS}}}RegistryResponse", status=ebrim.SUCCESS)
    errors: list[tuple[str, str, str]] = []
    parts: list[tuple[etree._Element, str, bytes]] = []
    requests = ctx.request.findall("xdsb:DocumentRequest", NS)
    if not requests:
        errors.append(("XDSRepositoryError", "no DocumentRequest", ""))
    for req in requests[:MAX_RESULTS]:
        repo = (req.findtext("xdsb:RepositoryUniqueId", namespaces=NS) or "").strip()
        unique = (req.findtext("xdsb:DocumentUniqueId", namespaces=NS) or "").strip()
        if repo != ctx.repository:
            errors.append(
                ("XDSUnknownRepositoryId", f"this repository is {ctx.repository}", unique)
            )
            continue
        try:
            doc = _by_unique_id(ctx, unique)
            view, content = ctx.access.read_content(ctx.patient(), doc.logical_id)
        except DmpError as exc:
            errors += _errors(exc, unique)
            continue
        response = etree.SubElement(out, f"{{{XDSB}}}DocumentResponse")
        etree.SubElement(response, f"{{{XDSB}}}RepositoryUniqueId").text = ctx.repository
        etree.SubElement(response, f"{{{XDSB}}}DocumentUniqueId").text = as_oid(view.unique_id)
        etree.SubElement(response, f"{{{XDSB}}}mimeType").text = view.mime_type
        document = etree.SubElement(response, f"{{{XDSB}}}Document")
        parts.append((document, view.mime_type, content))
    if errors:
        status.set("status", ebrim.PARTIAL if parts else ebrim.FAILURE)
        ebrim.append_errors(status, errors)
    return Answer(out, parts)


def _by_unique_id(ctx: Context, unique: str) -> DocumentView:
    page = ctx.access.search_documents(
        ctx.patient(),
        statuses=("current", "superseded", "archived"),
        criteria=SearchCriteria(unique_ids=unique_id_forms(unique)),
        limit=1,
    )
    if not page.items:
        raise NotFound(f"no document {unique[:80]!r} in this record", reason="DENY_NOT_FOUND")
    return page.items[0]


# -- ITI-57 Update Document Set ----------------------------------------------------------


def update(ctx: Context) -> Answer:
    try:
        sor = ctx.request
        if sor.tag != f"{{{ebrim.LCM}}}SubmitObjectsRequest":
            raise MetadataError("UpdateDocumentSet carries a SubmitObjectsRequest")
        sub = ebrim.submission(sor, test_mode=ctx.access.accepts_test_ins)
        patient = ctx.patient(sub.patient)
        for ident, meta, _ in sub.documents:
            _update_entry(ctx, patient, sub.entries[ident], meta, sub.previous_versions.get(ident))
        for target, _original, new in sub.status_updates:
            _update_status(ctx, patient, target, new)
        if not sub.documents and not sub.status_updates:
            raise MetadataError("nothing to update", "XDSMetadataUpdateError")
    except DmpError as exc:
        return Answer(ebrim.registry_response(ebrim.FAILURE, _errors(exc)))
    return Answer(ebrim.registry_response(ebrim.SUCCESS))


def _update_entry(
    ctx: Context, patient: Ins, eo: etree._Element, meta: NewDocument, previous: int | None
) -> None:
    """A new version of a DocumentEntry: the DMP changes its confidentiality codes (mask,
    hidden from the patient or the legal representatives, TD3.3a/b)."""
    found = ebrim.logical_of(eo.get("lid", ""))
    if found is None:
        raise MetadataError("the new DocumentEntry version needs the lid of the entry it updates")
    if previous is None:
        raise MetadataError("the HasMember association needs the PreviousVersion slot")
    current = ctx.access.read_document(patient, found[0])
    if meta.unique_id != current.unique_id or meta.type_code != current.type_code:
        raise MetadataError(
            "only the confidentiality codes and the status of a DocumentEntry change here",
            "XDSMetadataUpdateError",
        )
    changes = {
        name: value
        for name, value, now in (
            ("masked_ps", meta.masked_ps, current.masked_ps),
            ("invisible_patient", meta.invisible_patient, current.invisible_patient),
            (
                "invisible_representatives",
                meta.invisible_representatives,
                current.invisible_representatives,
            ),
        )
        if value != now
    }
    if not changes:
        raise MetadataError("the new version changes nothing", "XDSMetadataUpdateError")
    ctx.access.update_document(
        patient,
        found[0],
        masked_ps=changes.get("masked_ps"),
        invisible_patient=changes.get("invisible_patient"),
        invisible_representatives=changes.get("invisible_representatives"),
        expected_version=previous,
    )


def _update_status(ctx: Context, patient: Ins, target: str, new: str) -> None:
    found = ebrim.logical_of(target)
    if found is None:
        raise MetadataError(f"{target[:60]!r} is not a DocumentEntry's entryUUID")
    if new == ebrim.DELETED:
        ctx.access.delete_document(patient, found[0])
    elif new == ebrim.ARCHIVED:
        ctx.access.update_document(patient, found[0], archived=True)
    elif new == ebrim.APPROVED:
        ctx.access.update_document(patient, found[0], archived=False)
    else:
        raise MetadataError(
            f"NewStatus {new[:80]!r}: Approved, or the DMP's Archived and Deleted",
            "XDSMetadataUpdateError",
        )


# -- ITI-18 Registry Stored Query ----------------------------------------------------------


def query(ctx: Context) -> Answer:
    out = etree.Element(
        f"{{{QUERY}}}AdhocQueryResponse", status=ebrim.SUCCESS, nsmap={"query": QUERY, "rs": RS}
    )
    objects = etree.SubElement(out, f"{{{RIM}}}RegistryObjectList", nsmap={"rim": RIM})
    try:
        adhoc = ctx.request.find("rim:AdhocQuery", NS)
        if adhoc is None:
            raise MetadataError("AdhocQueryRequest needs an AdhocQuery")
        name = QUERY_NAMES.get(adhoc.get("id", ""))
        if name is None:
            raise MetadataError(
                f"unknown stored query {adhoc.get('id', '')[:60]!r}", "XDSUnknownStoredQuery"
            )
        option = ctx.request.find("query:ResponseOption", NS)
        leaf = option is None or option.get("returnType", "LeafClass") == "LeafClass"
        params = _params(adhoc)
        found = STORED_QUERIES[name](ctx, params)
        elements = found.elements(ctx)
    except DmpError as exc:
        out.set("status", ebrim.FAILURE)
        out.remove(objects)
        ebrim.append_errors(out, _errors(exc))
        return Answer(out)
    for el in elements[: MAX_RESULTS * 4]:
        if leaf:
            objects.append(el)
        else:
            etree.SubElement(objects, f"{{{RIM}}}ObjectRef", id=el.get("id", ""))
    if found.truncated:
        out.set("status", ebrim.PARTIAL)
        ebrim.append_errors(
            out, [("XDSTooManyResults", f"the first {MAX_RESULTS} entries are given", "")]
        )
    return Answer(out)


def _params(adhoc: etree._Element) -> dict[str, list[str]]:
    """Slot values with their quoting and parentheses removed: ``('a','b')`` -> a, b."""
    out: dict[str, list[str]] = {}
    for name, values in ebrim.slots(adhoc).items():
        items: list[str] = []
        for raw in values:
            text = raw.strip()
            if text.startswith("(") and text.endswith(")"):
                text = text[1:-1]
            items += [_unquote(v) for v in _split(text)]
        out[name] = [v for v in items if v]
    return out


def _split(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        value = value[1:-1].replace("''", "'")
    return value


@dataclass
class Found:
    documents: list[DocumentView] = field(default_factory=list)
    lists: list[ListView] = field(default_factory=list)
    associations: bool = False  # the associations among what was found
    only_associations: bool = False
    truncated: bool = False
    patient: Ins | None = None
    # Documents the associations may name besides those given (the target of an RPLC).
    known: list[DocumentView] = field(default_factory=list)

    def elements(self, ctx: Context) -> list[etree._Element]:
        patient = ctx.patient(self.patient)
        out: list[etree._Element] = []
        if not self.only_associations:
            out += [ebrim.extrinsic_object(d, patient, ctx.repository) for d in self.documents]
            out += [ebrim.registry_package(lst, patient) for lst in self.lists]
        if self.associations or self.only_associations:
            out += _associations(self.documents, self.lists, self.known)
        return out


def _associations(
    docs: list[DocumentView], lists: list[ListView], known: list[DocumentView]
) -> list[etree._Element]:
    by_logical = {d.logical_id: d for d in docs}
    every = {d.logical_id: d for d in [*known, *docs]}
    out = []
    for lst in lists:
        for logical in lst.document_ids:
            doc = by_logical.get(logical)
            if doc is not None:
                out.append(
                    ebrim.association(
                        ebrim.HAS_MEMBER,
                        ebrim.list_uuid(lst),
                        ebrim.entry_uuid(doc),
                        **(
                            {"SubmissionSetStatus": "Original"}
                            if lst.kind == "submissionset"
                            else {}
                        ),
                    )
                )
    for doc in docs:
        for kind, other in ((ebrim.RPLC, doc.replaces_id), (ebrim.APND, doc.appends_id)):
            if other:
                target = every.get(other)
                named = ebrim.entry_uuid(target) if target else ebrim.lid_of(other)
                out.append(ebrim.association(kind, ebrim.entry_uuid(doc), named))
    return out


def _one(params: dict[str, list[str]], name: str, required: bool = True) -> str | None:
    values = params.get(name, [])
    if len(values) > 1:
        raise MetadataError(f"{name} takes one value", "XDSStoredQueryParamNumber")
    if not values and required:
        raise MetadataError(f"{name} is required", "XDSStoredQueryMissingParam")
    return values[0] if values else None


def _patient_param(ctx: Context, params: dict[str, list[str]], name: str) -> Ins:
    value = _one(params, name)
    assert value is not None
    return ebrim.parse_cx(value, test_mode=ctx.access.accepts_test_ins)


def _codes(params: dict[str, list[str]], name: str) -> tuple[str, ...] | None:
    values = params.get(name)
    return tuple(v.split("^", 1)[0] for v in values) if values else None


def _time_param(params: dict[str, list[str]], name: str) -> datetime | None:
    return ebrim.xds_time(_one(params, name, required=False), name)


def _statuses(params: dict[str, list[str]], name: str) -> tuple[str, ...]:
    values = params.get(name)
    if not values:
        raise MetadataError(f"{name} is required", "XDSStoredQueryMissingParam")
    statuses = []
    for v in values:
        if v == ebrim.APPROVED:
            statuses.append("current")
        elif v == ebrim.DEPRECATED:
            statuses.append("superseded")
        elif v == ebrim.ARCHIVED:
            statuses.append("archived")
        else:
            raise MetadataError(f"{name}: unknown status {v[:80]!r}", "XDSRegistryError")
    return tuple(statuses)


def _all_documents(
    ctx: Context,
    patient: Ins,
    statuses: tuple[str, ...],
    criteria: SearchCriteria,
    *,
    type_codes: tuple[str, ...] | None = None,
    service_from: datetime | None = None,
    service_to: datetime | None = None,
) -> tuple[list[DocumentView], bool]:
    """Every document matching, page by page (at most MAX_RESULTS)."""
    out: list[DocumentView] = []
    offset = 0
    while True:
        page = ctx.access.search_documents(
            patient,
            statuses=statuses,
            criteria=criteria,
            type_codes=type_codes,
            service_from=service_from,
            service_to=service_to,
            limit=100,
            offset=offset,
        )
        out += page.items
        offset += len(page.items)
        if not page.items or offset >= page.total or len(out) >= MAX_RESULTS:
            return out[:MAX_RESULTS], page.total > MAX_RESULTS


def _all_lists(ctx: Context, patient: Ins, kind: str | None) -> list[ListView]:
    out: list[ListView] = []
    offset = 0
    while True:
        page = ctx.access.search_lists(patient, kind, limit=100, offset=offset)
        out += page.items
        offset += len(page.items)
        if not page.items or offset >= page.total or len(out) >= MAX_RESULTS:
            return out[:MAX_RESULTS]


def find_documents(ctx: Context, params: dict[str, list[str]]) -> Found:
    patient = _patient_param(ctx, params, "$XDSDocumentEntryPatientId")
    statuses = _statuses(params, "$XDSDocumentEntryStatus")
    p = "$XDSDocumentEntry"
    criteria = SearchCriteria(
        class_codes=_codes(params, f"{p}ClassCode"),
        format_codes=_codes(params, f"{p}FormatCode"),
        facility_types=_codes(params, f"{p}HealthcareFacilityTypeCode"),
        practice_settings=_codes(params, f"{p}PracticeSettingCode"),
        confidentiality=_codes(params, f"{p}ConfidentialityCode"),
        created_from=_time_param(params, f"{p}CreationTimeFrom"),
        created_to=_time_param(params, f"{p}CreationTimeTo"),
        service_end_from=_time_param(params, f"{p}ServiceStopTimeFrom"),
        service_end_to=_time_param(params, f"{p}ServiceStopTimeTo"),
    )
    docs, truncated = _all_documents(
        ctx,
        patient,
        statuses,
        criteria,
        type_codes=_codes(params, f"{p}TypeCode"),
        service_from=_time_param(params, f"{p}ServiceStartTimeFrom"),
        service_to=_time_param(params, f"{p}ServiceStartTimeTo"),
    )
    return Found(docs, truncated=truncated, patient=patient)


def find_lists(kind: str, patient_param: str, status_param: str) -> Callable[..., Found]:
    def run(ctx: Context, params: dict[str, list[str]]) -> Found:
        patient = _patient_param(ctx, params, patient_param)
        _statuses(params, status_param)  # lists are Approved
        lists = _all_lists(ctx, patient, kind)
        if kind == "submissionset":
            since = _time_param(params, "$XDSSubmissionSetSubmissionTimeFrom")
            until = _time_param(params, "$XDSSubmissionSetSubmissionTimeTo")
            sources = params.get("$XDSSubmissionSetSourceId")
            lists = [
                lst
                for lst in lists
                if (since is None or lst.submitted_at >= since)
                and (until is None or lst.submitted_at < until)
                and (not sources or lst.source_id in sources)
            ]
        return Found(lists=lists, patient=patient)

    return run


def get_all(ctx: Context, params: dict[str, list[str]]) -> Found:
    patient = _patient_param(ctx, params, "$patientId")
    statuses = _statuses(params, "$XDSDocumentEntryStatus")
    docs, truncated = _all_documents(ctx, patient, statuses, SearchCriteria())
    return Found(docs, _all_lists(ctx, patient, None), True, truncated=truncated, patient=patient)


def _documents_named(
    ctx: Context, params: dict[str, list[str]], uuid_param: str
) -> list[DocumentView]:
    uuids = params.get(uuid_param, [])
    uniques = params.get("$XDSDocumentEntryUniqueId", [])
    if bool(uuids) == bool(uniques):
        raise MetadataError(
            f"give {uuid_param} or $XDSDocumentEntryUniqueId (one of them)",
            "XDSStoredQueryParamNumber",
        )
    wanted = [ebrim.logical_of(u) for u in uuids]
    criteria = SearchCriteria(
        document_ids=tuple(w[0] for w in wanted if w) or None if uuids else None,
        unique_ids=tuple(f for u in uniques for f in unique_id_forms(u)) or None,
    )
    if uuids and not criteria.document_ids:
        return []
    docs, _ = _all_documents(ctx, ctx.patient(), ("current", "superseded", "archived"), criteria)
    return docs


def get_documents(ctx: Context, params: dict[str, list[str]]) -> Found:
    return Found(_documents_named(ctx, params, "$XDSDocumentEntryEntryUUID"))


def get_documents_and_associations(ctx: Context, params: dict[str, list[str]]) -> Found:
    docs = _documents_named(ctx, params, "$XDSDocumentEntryEntryUUID")
    return Found(docs, _containing(ctx, docs), associations=True)


def _containing(ctx: Context, docs: list[DocumentView]) -> list[ListView]:
    logical = {d.logical_id for d in docs}
    return [lst for lst in _all_lists(ctx, ctx.patient(), None) if logical & set(lst.document_ids)]


def get_associations(ctx: Context, params: dict[str, list[str]]) -> Found:
    uuids = params.get("$uuid", [])
    if not uuids:
        raise MetadataError("$uuid is required", "XDSStoredQueryMissingParam")
    wanted = {w[0] for w in map(ebrim.logical_of, uuids) if w}
    docs, _ = _all_documents(
        ctx, ctx.patient(), ("current", "superseded", "archived"), SearchCriteria()
    )
    lists = _all_lists(ctx, ctx.patient(), None)
    named_lists = [lst for lst in lists if ebrim.list_uuid(lst) in uuids]
    named_docs = [d for d in docs if d.logical_id in wanted]
    named_ids = {x.logical_id for x in named_docs}
    related = [d for d in docs if d.replaces_id in named_ids or d.appends_id in named_ids]
    inside = {x for lst in named_lists for x in lst.document_ids}
    chosen_docs = {d.logical_id: d for d in [*named_docs, *related]}
    chosen_docs.update({d.logical_id: d for d in docs if d.logical_id in inside})
    chosen_lists = named_lists + [
        lst for lst in lists if set(lst.document_ids) & wanted and lst not in named_lists
    ]
    return Found(list(chosen_docs.values()), chosen_lists, only_associations=True, known=docs)


def get_packages(kind: str, with_contents: bool) -> Callable[..., Found]:
    """GetSubmissionSets / GetFolders (by the packages' or documents' ids) and
    GetSubmissionSetAndContents / GetFolderAndContents."""
    prefix = "$XDSSubmissionSet" if kind == "submissionset" else "$XDSFolder"

    def run(ctx: Context, params: dict[str, list[str]]) -> Found:
        lists = _all_lists(ctx, ctx.patient(), kind)
        if with_contents:
            ident = _one(params, f"{prefix}EntryUUID", required=False)
            unique = _one(params, f"{prefix}UniqueId", required=False)
            if (ident is None) == (unique is None):
                raise MetadataError(
                    f"give {prefix}EntryUUID or {prefix}UniqueId", "XDSStoredQueryParamNumber"
                )
            chosen = [
                lst
                for lst in lists
                if ebrim.list_uuid(lst) == ident
                or (unique and lst.unique_id in unique_id_forms(unique))
            ]
            inside = tuple(sorted({d for lst in chosen for d in lst.document_ids}))
            docs, _ = (
                _all_documents(
                    ctx,
                    ctx.patient(),
                    ("current", "superseded", "archived"),
                    SearchCriteria(document_ids=inside),
                )
                if inside
                else ([], False)
            )
            return Found(docs, chosen, associations=True)
        uuids = params.get("$uuid") or params.get(f"{prefix}EntryUUID") or []
        if not uuids:
            raise MetadataError("$uuid is required", "XDSStoredQueryMissingParam")
        wanted = {w[0] for w in map(ebrim.logical_of, uuids) if w}
        chosen = [
            lst for lst in lists if ebrim.list_uuid(lst) in uuids or set(lst.document_ids) & wanted
        ]
        return Found(lists=chosen)

    return run


def get_related(ctx: Context, params: dict[str, list[str]]) -> Found:
    docs = _documents_named(ctx, params, "$XDSDocumentEntryEntryUUID")
    every, _ = _all_documents(
        ctx, ctx.patient(), ("current", "superseded", "archived"), SearchCriteria()
    )
    logical = {d.logical_id for d in docs}
    targets = {t for x in docs for t in (x.replaces_id, x.appends_id) if t}
    related = [
        d
        for d in every
        if d.replaces_id in logical or d.appends_id in logical or d.logical_id in targets
    ]
    if not related:
        return Found()
    return Found([*docs, *related], associations=True, known=every)


STORED_QUERIES: dict[str, Callable[[Context, dict[str, list[str]]], Found]] = {
    "FindDocuments": find_documents,
    "FindSubmissionSets": find_lists(
        "submissionset", "$XDSSubmissionSetPatientId", "$XDSSubmissionSetStatus"
    ),
    "FindFolders": find_lists("folder", "$XDSFolderPatientId", "$XDSFolderStatus"),
    "GetAll": get_all,
    "GetDocuments": get_documents,
    "GetDocumentsAndAssociations": get_documents_and_associations,
    "GetAssociations": get_associations,
    "GetSubmissionSets": get_packages("submissionset", with_contents=False),
    "GetSubmissionSetAndContents": get_packages("submissionset", with_contents=True),
    "GetFolders": get_packages("folder", with_contents=False),
    "GetFolderAndContents": get_packages("folder", with_contents=True),
    "GetRelatedDocuments": get_related,
}


# -- The DMP's record status (TD0.2) and consent --------------------------------------------


def _dmp(tag: str) -> str:
    return f"{{{DMP}}}{tag}"


def _dmp_patient(ctx: Context) -> Ins:
    value = ctx.request.findtext(_dmp("PatientId"))
    return ctx.patient(
        ebrim.parse_cx(value, test_mode=ctx.access.accepts_test_ins) if value else None
    )


def record_status(ctx: Context) -> Answer:
    """TD0.2: whether the record exists, its status, the professional's authorisation
    (``valid``, ``forbidden`` when the holder blocked them, ``none``; dmp's authorisations do
    not lapse, so ``expired`` is never said) and whether they are the holder's registered GP.
    The read is the gate's record read, audited as one."""
    out = etree.Element(_dmp("RecordStatusResponse"), nsmap={"dmp": DMP})
    try:
        patient = _dmp_patient(ctx)
        view = ctx.access.read_record(patient)
    except NotFound:
        _fields(out, exists="false", authorisation="none")
        return Answer(out)
    except Forbidden as exc:
        if exc.reason == Reason.DENY_RECORD_CLOSED.value:
            _fields(out, exists="true", status="closed", authorisation="none")
        elif exc.reason in (Reason.DENY_BLOCKED.value, Reason.DENY_FORBIDDEN_ACTOR.value):
            _fields(out, exists="true", status="active", authorisation="forbidden")
        elif exc.reason == Reason.DENY_NO_CONSENT.value:
            _fields(out, exists="true", status="active", authorisation="none")
        else:
            raise
        return Answer(out)
    except MetadataError as exc:
        return Answer(_dmp_failure(out, exc))
    _fields(
        out,
        exists="true",
        status=view.status,
        authorisation="valid",
        medecinTraitant="true" if view.medecin_traitant == ctx.access.actor.id else "false",
        **({"closedAt": view.closed_at.isoformat()} if view.closed_at else {}),
        **({"closureReason": view.closure_reason} if view.closure_reason else {}),
    )
    return Answer(out)


def declare_consent(ctx: Context) -> Answer:
    """The professional records that the patient authorised them (TD0.x)."""
    out = etree.Element(_dmp("DeclareConsentResponse"), nsmap={"dmp": DMP})
    try:
        ctx.access.declare_consent(_dmp_patient(ctx))
    except DmpError as exc:
        return Answer(_dmp_failure(out, exc))
    _fields(out, authorisation="valid")
    return Answer(out)


def _dmp_failure(out: etree._Element, exc: DmpError) -> etree._Element:
    out.append(ebrim.registry_response(ebrim.FAILURE, _errors(exc)))
    return out


def _fields(out: etree._Element, **values: str) -> None:
    for name, value in values.items():
        etree.SubElement(out, _dmp(name)).text = value


HANDLERS: dict[str, Callable[[Context], Answer]] = {
    ITI41: provide,
    ITI18: query,
    ITI43: retrieve,
    ITI57: update,
    RECORD_STATUS: record_status,
    DECLARE_CONSENT: declare_consent,
}
