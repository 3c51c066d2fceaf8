"""ebRIM 3.0 metadata (IHE ITI TF-3 §4.2) <-> the gate's values, with the French value sets.

Ids. A DocumentEntry's ``entryUUID`` is its logical id and metadata version
(``urn:uuid:<24 hex logical id><8 hex version>``), its ``lid`` the logical id with version 0:
both are read back without an index. A SubmissionSet's or Folder's ``entryUUID`` is its id.
The patient is the INS as an HL7 CX (``<INS>^^^&<OID>&ISO^NH``, domain reference §3.1).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from dmp.access.views import DocumentView, ListView, NewDocument, NewList
from dmp.domain import valuesets
from dmp.domain.codes import VisibilityFlag, as_oid, confidentiality_of
from dmp.domain.ins import Ins, format_cx
from dmp.domain.ins import parse_cx as cx
from dmp.errors import InvalidInput

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
RMD = "urn:ihe:iti:rmd:2017"
NS = {"rim": RIM, "lcm": LCM, "rs": RS, "query": QUERY, "xdsb": XDSB}

STABLE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
FOLDER = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"
CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DOC_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DOC_PATIENT = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DOC_UNIQUE = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_UNIQUE = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_SOURCE = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_PATIENT = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
FOLDER_CODES = "urn:uuid:1ba97051-7806-41a8-a48b-8fce7af683c5"
FOLDER_PATIENT = "urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a"
FOLDER_UNIQUE = "urn:uuid:75df8f67-9973-4fbe-a900-df66cefecc5a"

HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
APND = "urn:ihe:iti:2007:AssociationType:APND"
XFRM = "urn:ihe:iti:2007:AssociationType:XFRM"
UPDATE_STATUS = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
# The DMP's own statuses for ITI-57 (TD3.3c delete, TD3.3d archive).
DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
ARCHIVED = "urn:asip:ci-sis:2010:StatusType:Archived"
STATUSES = {"current": APPROVED, "superseded": DEPRECATED, "archived": ARCHIVED}
STATUS_OF = {v: k for k, v in STATUSES.items()}
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
PARTIAL = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"

CONFIDENTIALITY_OID = "2.16.840.1.113883.5.25"
VISIBILITY_OID = "1.2.250.1.213.1.1.4.13"  # TRE_A07
CLASS_OID = "1.2.250.1.213.1.1.4.1"  # TRE_A03 (JDV_J57)
FORMAT_OID = "1.3.6.1.4.1.19376.1.2.3"  # IHE format codes (JDV_J60)
RPPS_OID = "1.2.250.1.71.4.2.1"  # idNatPS
STRUCTURE_OID = "1.2.250.1.71.4.2.2"  # idNatStruct


class MetadataError(InvalidInput):
    """Metadata the registry cannot take; ``code`` is the XDS error code (ITI TF-3 Table
    4.2.4.1-2)."""

    def __init__(self, message: str, code: str = "XDSRegistryMetadataError") -> None:
        super().__init__(message, reason=code)
        self.code = code


# -- ids -------------------------------------------------------------------------------------


def entry_uuid(doc: DocumentView) -> str:
    return f"urn:uuid:{uuid.UUID(hex=f'{doc.logical_id}{doc.version:08x}')}"


def lid(doc: DocumentView) -> str:
    return lid_of(doc.logical_id)


def lid_of(logical_id: str) -> str:
    return f"urn:uuid:{uuid.UUID(hex=f'{logical_id}00000000')}"


def logical_of(entry: str) -> tuple[str, int] | None:
    """The logical id and version an entryUUID (or lid, version 0) names; None if none."""
    try:
        value = uuid.UUID(entry.strip().removeprefix("urn:uuid:")).hex
    except ValueError:
        return None
    return value[:24], int(value[24:], 16)


def list_uuid(lst: ListView) -> str:
    return f"urn:uuid:{uuid.UUID(hex=lst.id)}"


def list_unique_id(lst: ListView) -> str:
    """A package's uniqueId: the one it was given, else (a submission made through MHD's
    simplified publish has none) an OID derived from its id under 2.25 (ITU-T X.667)."""
    return as_oid(lst.unique_id) if lst.unique_id else f"2.25.{int(lst.id, 16)}"


def parse_cx(value: str, *, test_mode: bool) -> Ins:
    """A submission's or a query's patient id (``XDSUnknownPatientId`` when it is no INS)."""
    try:
        return cx(value, test_mode=test_mode)
    except InvalidInput as exc:
        raise MetadataError(
            f"the patient id is not an INS: {exc.message}", "XDSUnknownPatientId"
        ) from None


# -- reading ---------------------------------------------------------------------------------


def _plain(value: str | None) -> str:
    """Scheme ids without stray whitespace (some published samples carry it)."""
    return "".join((value or "").split())


def slots(el: etree._Element) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot in el.findall("rim:Slot", NS):
        out[slot.get("name", "")] = [
            (v.text or "").strip() for v in slot.findall("rim:ValueList/rim:Value", NS)
        ]
    return out


def _first(values: dict[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    return found[0] if found else None


def _name(el: etree._Element) -> str | None:
    ls = el.find("rim:Name/rim:LocalizedString", NS)
    return ls.get("value") if ls is not None else None


def _classifications(el: etree._Element, scheme: str) -> list[tuple[str, str | None]]:
    """(code, coding scheme) of each classification of a scheme."""
    out: list[tuple[str, str | None]] = []
    for c in el.findall("rim:Classification", NS):
        if _plain(c.get("classificationScheme")) == scheme:
            out.append((c.get("nodeRepresentation", ""), _first(slots(c), "codingScheme")))
    return out


def _external(el: etree._Element, scheme: str) -> str | None:
    for e in el.findall("rim:ExternalIdentifier", NS):
        if _plain(e.get("identificationScheme")) == scheme:
            return (e.get("value") or "").strip()
    return None


def xds_time(value: str | None, what: str) -> datetime | None:
    """XDS DTM (UTC): YYYY[MM[DD[hh[mm[ss]]]]]."""
    if not value:
        return None
    digits = value.strip()
    fmt = {4: "%Y", 6: "%Y%m", 8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    if not digits.isdigit() or len(digits) not in fmt:
        raise MetadataError(f"{what}: {value[:20]!r} is not an XDS time (YYYYMMDDhhmmss, UTC)")
    try:
        return datetime.strptime(digits, fmt[len(digits)]).replace(tzinfo=UTC)
    except ValueError:
        raise MetadataError(f"{what}: {value[:20]!r} is not a date") from None


def dtm(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def _system(scheme: str | None, vs: valuesets.ValueSet) -> str | None:
    """The code system to keep for a code of another system than the set's own (None: the
    set's own, or no scheme)."""
    if not scheme:
        return None
    own = {c.system_oid for c in vs.concepts.values()} | {vs.oid}
    if scheme in own:
        return None
    return f"urn:oid:{scheme}" if scheme.replace(".", "").isdigit() else scheme


@dataclass(frozen=True)
class Submission:
    """An ITI-41 (or ITI-57) SubmitObjectsRequest, read."""

    patient: Ins
    documents: list[tuple[str, NewDocument, str | None]]  # (ebRIM id, metadata, replaces)
    lists: list[tuple[str, NewList]]
    members: dict[str, list[str]]  # package id -> member ids (documents, folders)
    status_updates: list[tuple[str, str, str]]  # (target entry, original, new status)
    previous_versions: dict[str, int]  # document id -> the version it updates (ITI-57)
    entries: dict[str, etree._Element]  # ebRIM id -> ExtrinsicObject


def submission(request: etree._Element, *, test_mode: bool) -> Submission:
    """The metadata of a SubmitObjectsRequest."""
    objects = request.find("rim:RegistryObjectList", NS)
    if objects is None:
        raise MetadataError("the SubmitObjectsRequest has no RegistryObjectList")
    patients: set[Ins] = set()
    docs: list[tuple[str, NewDocument, str | None]] = []
    entries: dict[str, etree._Element] = {}
    for eo in objects.findall("rim:ExtrinsicObject", NS):
        ident = eo.get("id", "")
        if not ident:
            raise MetadataError("a DocumentEntry (ExtrinsicObject) needs an id")
        pid = _external(eo, DOC_PATIENT)
        if pid is None:
            raise MetadataError(f"{ident}: XDSDocumentEntry.patientId is required")
        patients.add(parse_cx(pid, test_mode=test_mode))
        entries[ident] = eo
        docs.append((ident, document_entry(eo), None))
    nodes = {
        _plain(c.get("classifiedObject")): _plain(c.get("classificationNode"))
        for c in objects.findall("rim:Classification", NS)
    }
    lists: list[tuple[str, NewList]] = []
    packages: dict[str, etree._Element] = {}
    for pkg in objects.findall("rim:RegistryPackage", NS):
        ident = pkg.get("id", "")
        node = nodes.get(ident) or next(
            (
                _plain(c.get("classificationNode"))
                for c in pkg.findall("rim:Classification", NS)
                if c.get("classificationNode")
            ),
            None,
        )
        if node not in (SUBMISSION_SET, FOLDER):
            raise MetadataError(f"{ident}: a RegistryPackage is a SubmissionSet or a Folder")
        packages[ident] = pkg
        scheme = SS_PATIENT if node == SUBMISSION_SET else FOLDER_PATIENT
        pid = _external(pkg, scheme)
        if pid is None:
            raise MetadataError(f"{ident}: the package's patientId is required")
        patients.add(parse_cx(pid, test_mode=test_mode))
        lists.append((ident, _package(pkg, node)))
    if len(patients) > 1:
        raise MetadataError(
            "the submission names more than one patient", "XDSPatientIdDoesNotMatch"
        )
    if not patients:
        raise MetadataError("the submission holds no DocumentEntry nor package")
    members: dict[str, list[str]] = {}
    replaced: dict[str, str] = {}
    appended: dict[str, str] = {}
    updates: list[tuple[str, str, str]] = []
    previous: dict[str, int] = {}
    for assoc in objects.findall("rim:Association", NS):
        kind = _plain(assoc.get("associationType"))
        source, target = assoc.get("sourceObject", ""), assoc.get("targetObject", "")
        if kind == HAS_MEMBER:
            members.setdefault(source, []).append(target)
            version = slots(assoc).get("PreviousVersion")
            if version:
                try:
                    previous[target] = int(version[0])
                except ValueError:
                    raise MetadataError("PreviousVersion is a whole number") from None
        elif kind == RPLC:
            replaced[source] = target
        elif kind == APND:
            appended[source] = target
        elif kind == UPDATE_STATUS:
            s = slots(assoc)
            updates.append(
                (target, (s.get("OriginalStatus") or [""])[0], (s.get("NewStatus") or [""])[0])
            )
        elif kind == XFRM:
            raise MetadataError(
                "XFRM associations are not kept by this registry: send the transformation as "
                "a document of its own"
            )
        else:
            raise MetadataError(f"association type {kind[:80]!r} is not served")
    docs = [
        (
            i,
            dataclasses.replace(meta, appends=_replaced_logical(appended.get(i), "APND")),
            _replaced_logical(replaced.get(i), "RPLC"),
        )
        for i, meta, _ in docs
    ]
    ids = {i for i, _, _ in docs}
    doc_lists = []
    for ident, lst in lists:
        positions = tuple(n for n, (i, _, _) in enumerate(docs) if i in members.get(ident, []))
        doc_lists.append((ident, _with_documents(lst, positions)))
    for source, targets in members.items():
        outside = [t for t in targets if t not in ids and t not in packages]
        if source in packages and outside and not previous:
            raise MetadataError(
                f"HasMember from {source[:40]!r} names {outside[0][:60]!r}, not in the submission"
            )
    return Submission(patients.pop(), docs, doc_lists, members, updates, previous, entries)


def _replaced_logical(target: str | None, kind: str) -> str | None:
    """The logical id of the stored document an RPLC or APND association names."""
    if target is None:
        return None
    found = logical_of(target)
    if found is None:
        raise MetadataError(f"{kind} names {target[:60]!r}, not a stored DocumentEntry")
    return found[0]


def _with_documents(lst: NewList, positions: tuple[int, ...]) -> NewList:
    return NewList(
        kind=lst.kind,
        documents=positions,
        unique_id=lst.unique_id,
        source_id=lst.source_id,
        title=lst.title,
        code=lst.code,
    )


def _package(pkg: etree._Element, node: str) -> NewList:
    if node == SUBMISSION_SET:
        unique = _external(pkg, SS_UNIQUE)
        source = _external(pkg, SS_SOURCE)
        if not unique or not source:
            raise MetadataError("a SubmissionSet needs its uniqueId and sourceId")
        codes = _classifications(pkg, SS_CONTENT_TYPE)
        return NewList(
            kind="submissionset",
            documents=(),
            unique_id=unique[:128],
            source_id=source[:128],
            title=(_name(pkg) or None),
            code=codes[0][0][:64] if codes else None,
        )
    unique = _external(pkg, FOLDER_UNIQUE)
    if not unique:
        raise MetadataError("a Folder needs its uniqueId")
    codes = _classifications(pkg, FOLDER_CODES)
    return NewList(
        kind="folder",
        documents=(),
        unique_id=unique[:128],
        title=_name(pkg),
        code=codes[0][0][:64] if codes else None,
    )


def document_entry(eo: etree._Element) -> NewDocument:
    """A DocumentEntry as the gate's NewDocument (the author is the authenticated actor:
    the author classification sent is not trusted)."""
    s = slots(eo)
    ident = eo.get("id", "?")
    types = _classifications(eo, TYPE)
    if not types:
        raise MetadataError(f"{ident}: typeCode is required")
    formats = _classifications(eo, FORMAT)
    if not formats:
        raise MetadataError(f"{ident}: formatCode is required")
    classes = _classifications(eo, CLASS)
    confidentiality, flags, unknown = confidentiality_of(
        code for code, _scheme in _classifications(eo, CONFIDENTIALITY)
    )
    if unknown:
        raise MetadataError(f"{ident}: confidentialityCode {unknown[0][:40]!r} is not in JDV_J58")
    facility = _classifications(eo, FACILITY)
    practice = _classifications(eo, PRACTICE)
    size = _first(s, "size")
    sha1 = _first(s, "hash")
    try:
        expected_size = int(size) if size else None
    except ValueError:
        raise MetadataError(f"{ident}: size is a whole number") from None
    unique = _external(eo, DOC_UNIQUE)
    if not unique:
        raise MetadataError(f"{ident}: XDSDocumentEntry.uniqueId is required")
    created = xds_time(_first(s, "creationTime"), f"{ident}: creationTime")
    return NewDocument(
        type_code=types[0][0],
        format_code=formats[0][0],
        mime_type=eo.get("mimeType", ""),
        title=(_name(eo) or "").strip(),
        creation_time=created,
        service_start=xds_time(_first(s, "serviceStartTime"), f"{ident}: serviceStartTime"),
        service_stop=xds_time(_first(s, "serviceStopTime"), f"{ident}: serviceStopTime"),
        unique_id=unique,
        confidentiality=confidentiality,
        masked_ps=flags[VisibilityFlag.MASQUE_PS],
        invisible_patient=flags[VisibilityFlag.INVISIBLE_PATIENT],
        invisible_representatives=flags[VisibilityFlag.INVISIBLE_REPRESENTANTS_LEGAUX],
        facility_type=facility[0][0] if facility else None,
        practice_setting=practice[0][0] if practice else None,
        facility_system=_system(facility[0][1], valuesets.facility_types()) if facility else None,
        practice_system=_system(practice[0][1], valuesets.practice_settings())
        if practice
        else None,
        language=(s.get("languageCode") or ["fr-FR"])[0] or "fr-FR",
        expected_size=expected_size,
        expected_sha1=sha1.lower() if sha1 else None,
        class_code=classes[0][0] if classes else None,
    )


# -- writing ---------------------------------------------------------------------------------


def _el(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{RIM}}}{tag}", **attrs)


def _slot(parent: etree._Element, name: str, *values: str) -> None:
    slot = _el(parent, "Slot", name=name)
    vl = _el(slot, "ValueList")
    for v in values:
        _el(vl, "Value").text = v


def _localized(parent: etree._Element, tag: str, value: str) -> None:
    _el(_el(parent, tag), "LocalizedString", value=value)


def _classify(
    parent: etree._Element, owner: str, scheme: str, code: str, coding: str, display: str | None
) -> None:
    c = _el(
        parent,
        "Classification",
        id=f"urn:uuid:{uuid.uuid4()}",
        classificationScheme=scheme,
        classifiedObject=owner,
        nodeRepresentation=code,
    )
    _slot(c, "codingScheme", coding)
    if display:
        _localized(c, "Name", display)


def _identify(parent: etree._Element, owner: str, scheme: str, value: str, name: str) -> None:
    e = _el(
        parent,
        "ExternalIdentifier",
        id=f"urn:uuid:{uuid.uuid4()}",
        registryObject=owner,
        identificationScheme=scheme,
        value=value,
    )
    _localized(e, "Name", name)


def _scheme_of(vs: valuesets.ValueSet, code: str, system: str | None) -> tuple[str, str | None]:
    if system:
        return system.removeprefix("urn:oid:"), None
    concept = vs.concepts.get(code)
    return (concept.system_oid, concept.display) if concept else (vs.oid, None)


def extrinsic_object(doc: DocumentView, ins: Ins, repository: str) -> etree._Element:
    """A stored document as a DocumentEntry (ITI-18 LeafClass)."""
    owner = entry_uuid(doc)
    eo = etree.Element(
        f"{{{RIM}}}ExtrinsicObject",
        id=owner,
        lid=lid(doc),
        mimeType=doc.mime_type,
        objectType=STABLE,
        status=STATUSES.get(doc.status, APPROVED),
        nsmap={"rim": RIM},
    )
    _el(eo, "VersionInfo", versionName=str(doc.version))
    _slot(eo, "creationTime", dtm(doc.creation_time))
    _slot(eo, "serviceStartTime", dtm(doc.service_start))
    if doc.service_stop is not None:
        _slot(eo, "serviceStopTime", dtm(doc.service_stop))
    _slot(eo, "languageCode", doc.language)
    _slot(eo, "hash", doc.sha1)
    _slot(eo, "size", str(doc.size))
    _slot(eo, "repositoryUniqueId", repository)
    _slot(eo, "sourcePatientId", format_cx(ins))
    _localized(eo, "Name", doc.title)
    author = _el(
        eo,
        "Classification",
        id=f"urn:uuid:{uuid.uuid4()}",
        classificationScheme=DOC_AUTHOR,
        classifiedObject=owner,
        nodeRepresentation="",
    )
    if doc.author_kind == "professional":
        _slot(author, "authorPerson", f"{doc.author_id}^^^^^^^^&{RPPS_OID}&ISO")
    else:
        _slot(author, "authorPerson", f"{doc.author_id}^^^^^^^^")
    if doc.author_structure:
        _slot(
            author,
            "authorInstitution",
            f"^^^^^&{STRUCTURE_OID}&ISO^IDNST^^^{doc.author_structure}",
        )
    types = valuesets.document_types()
    t_scheme, t_display = _scheme_of(types, doc.type_code, None)
    _classify(eo, owner, CLASS, doc.class_code, CLASS_OID, None)
    _classify(
        eo,
        owner,
        CONFIDENTIALITY,
        doc.confidentiality,
        CONFIDENTIALITY_OID,
        valuesets.confidentiality_codes().display(doc.confidentiality),
    )
    for flag, on in (
        (VisibilityFlag.MASQUE_PS, doc.masked_ps),
        (VisibilityFlag.INVISIBLE_PATIENT, doc.invisible_patient),
        (VisibilityFlag.INVISIBLE_REPRESENTANTS_LEGAUX, doc.invisible_representatives),
    ):
        if on:
            _classify(eo, owner, CONFIDENTIALITY, flag.value, VISIBILITY_OID, None)
    _classify(eo, owner, FORMAT, doc.format_code, FORMAT_OID, None)
    if doc.facility_type:
        scheme, display = _scheme_of(
            valuesets.facility_types(), doc.facility_type, doc.facility_system
        )
        _classify(eo, owner, FACILITY, doc.facility_type, scheme, display)
    if doc.practice_setting:
        scheme, display = _scheme_of(
            valuesets.practice_settings(), doc.practice_setting, doc.practice_system
        )
        _classify(eo, owner, PRACTICE, doc.practice_setting, scheme, display)
    _classify(eo, owner, TYPE, doc.type_code, t_scheme, t_display)
    _identify(eo, owner, DOC_PATIENT, format_cx(ins), "XDSDocumentEntry.patientId")
    _identify(eo, owner, DOC_UNIQUE, as_oid(doc.unique_id), "XDSDocumentEntry.uniqueId")
    return eo


def registry_package(lst: ListView, ins: Ins) -> etree._Element:
    """A SubmissionSet or Folder (ITI-18 LeafClass)."""
    owner = list_uuid(lst)
    pkg = etree.Element(
        f"{{{RIM}}}RegistryPackage",
        id=owner,
        lid=owner,
        objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage",
        status=APPROVED,
        nsmap={"rim": RIM},
    )
    if lst.kind == "submissionset":
        _slot(pkg, "submissionTime", dtm(lst.submitted_at))
    else:
        _slot(pkg, "lastUpdateTime", dtm(lst.submitted_at))
    if lst.title:
        _localized(pkg, "Name", lst.title)
    node = SUBMISSION_SET if lst.kind == "submissionset" else FOLDER
    _el(
        pkg,
        "Classification",
        id=f"urn:uuid:{uuid.uuid4()}",
        classifiedObject=owner,
        classificationNode=node,
    )
    if lst.kind == "submissionset":
        author = _el(
            pkg,
            "Classification",
            id=f"urn:uuid:{uuid.uuid4()}",
            classificationScheme=SS_AUTHOR,
            classifiedObject=owner,
            nodeRepresentation="",
        )
        _slot(author, "authorPerson", f"{lst.author_id}^^^^^^^^")
        if lst.code:
            _classify(pkg, owner, SS_CONTENT_TYPE, lst.code, CLASS_OID, None)
        _identify(pkg, owner, SS_UNIQUE, list_unique_id(lst), "XDSSubmissionSet.uniqueId")
        _identify(
            pkg, owner, SS_SOURCE, as_oid(lst.source_id or "2.25"), "XDSSubmissionSet.sourceId"
        )
        _identify(pkg, owner, SS_PATIENT, format_cx(ins), "XDSSubmissionSet.patientId")
    else:
        if lst.code:
            _classify(pkg, owner, FOLDER_CODES, lst.code, CLASS_OID, None)
        _identify(pkg, owner, FOLDER_UNIQUE, list_unique_id(lst), "XDSFolder.uniqueId")
        _identify(pkg, owner, FOLDER_PATIENT, format_cx(ins), "XDSFolder.patientId")
    return pkg


def association(kind: str, source: str, target: str, **slot_values: str) -> etree._Element:
    a = etree.Element(
        f"{{{RIM}}}Association",
        id=f"urn:uuid:{uuid.uuid4()}",
        associationType=kind,
        sourceObject=source,
        targetObject=target,
        status=APPROVED,
        nsmap={"rim": RIM},
    )
    for name, value in slot_values.items():
        _slot(a, name, value)
    return a


def registry_response(
    status: str, errors: list[tuple[str, str, str]] | None = None, tag: str = "RegistryResponse"
) -> etree._Element:
    """An ebRS RegistryResponse (``tag``: the element's name in ``rs``); ``errors`` are
    (errorCode, codeContext, location)."""
    resp = etree.Element(f"{{{RS}}}{tag}", status=status, nsmap={"rs": RS})
    append_errors(resp, errors or [])
    return resp


def append_errors(parent: etree._Element, errors: list[tuple[str, str, str]]) -> None:
    if not errors:
        return
    lst = etree.SubElement(parent, f"{{{RS}}}RegistryErrorList")
    for code, context, location in errors:
        etree.SubElement(
            lst,
            f"{{{RS}}}RegistryError",
            errorCode=code,
            codeContext=context,
            location=location,
            severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error",
        )
