"""Safe reading of a CDA R2 header (the French CI-SIS documents).

lxml with no network, no entity expansion, no DTD loading, a size cap and a depth cap: an XXE
or "billion laughs" document is refused, never expanded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from lxml import etree

from dmp.domain.ins import INS_OIDS
from dmp.errors import InvalidInput

NS = {"hl7": "urn:hl7-org:v3"}
MAX_CDA_BYTES = 20 * 1024 * 1024
MAX_DEPTH = 256


@dataclass(frozen=True)
class CdaHeader:
    patient_ids: tuple[tuple[str, str], ...]  # (root OID, extension) of recordTarget/patientRole/id
    type_code: str | None
    title: str | None
    effective_time: datetime | None
    confidentiality: str | None
    service_start: datetime | None
    service_stop: datetime | None

    def ins(self) -> list[tuple[str, str]]:
        return [(root, ext) for root, ext in self.patient_ids if root in INS_OIDS]


def looks_like_cda(content: bytes) -> bool:
    head = content[:4096]
    return b"ClinicalDocument" in head and b"urn:hl7-org:v3" in head


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
    )


def _time(value: str | None) -> datetime | None:
    """HL7 TS: YYYYMMDD[HHMM[SS]][+ZZZZ]."""
    if not value:
        return None
    digits = value.split("+")[0].split("-")[0].split(".")[0]
    fmt = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}.get(len(digits))
    if fmt is None:
        return None
    try:
        parsed = datetime.strptime(digits, fmt)
    except ValueError:
        return None
    rest = value[len(digits) :]
    tz_part = (
        rest[rest.find("+") :] if "+" in rest else rest[rest.find("-") :] if "-" in rest else ""
    )
    if tz_part and len(tz_part) == 5:
        sign = 1 if tz_part[0] == "+" else -1
        offset = timedelta(hours=int(tz_part[1:3]), minutes=int(tz_part[3:5])) * sign
        return parsed.replace(tzinfo=timezone(offset)).astimezone(UTC)
    return parsed.replace(tzinfo=UTC)


def parse_root(content: bytes) -> etree._Element:
    """The document's root element, parsed safely (no entities, no network, size and depth
    capped); InvalidInput otherwise."""
    root = parse_xml(content, "the CDA document")
    if root.tag != CDA_ROOT:
        raise InvalidInput("the XML document is not a CDA ClinicalDocument")
    return root


CDA_ROOT = "{urn:hl7-org:v3}ClinicalDocument"


def parse_xml(content: bytes, what: str, max_depth: int = MAX_DEPTH) -> etree._Element:
    """Any XML content, parsed as safely as a CDA document (``what`` names it in errors): no
    DOCTYPE nor entity declarations, no network, size and depth capped."""
    if len(content) > MAX_CDA_BYTES:
        raise InvalidInput(f"{what} is too large")
    if b"<!ENTITY" in content[:65536] or b"<!DOCTYPE" in content[:65536]:
        raise InvalidInput(f"{what}: a DOCTYPE or entity declarations are refused")
    try:
        root = etree.fromstring(content, _parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidInput(
            f"{what} is not well-formed XML: {exc.msg}",
            french="le fichier annoncé comme XML n'est pas un document XML bien formé",
        ) from None
    depth = 0
    for event, _el in etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        if depth > max_depth:
            raise InvalidInput(f"{what} is nested too deeply")
    return root


def is_xml_type(mime_type: str) -> bool:
    base = mime_type.split(";", 1)[0].strip().lower()
    return base in ("text/xml", "application/xml") or base.endswith("+xml")


def check_declared_xml(content: bytes, mime_type: str) -> None:
    """Content declared as XML is well-formed XML, and a CDA document has a body: a
    structuredBody with a section, or a nonXMLBody with its text (an empty CDA is no
    document)."""
    if not is_xml_type(mime_type):
        return
    known = _READ.get(content)
    if known is None:
        root = parse_xml(content, f"the document declared as {mime_type.split(';')[0]}")
        if root.tag != CDA_ROOT:
            return
        known = _READ.put(content, _read(root))
    if not known[1]:
        raise InvalidInput(
            "the CDA document has no body: a structuredBody with at least one section, or a "
            "nonXMLBody with its text",
            french="le document CDA n'a pas de corps (ni section, ni contenu non structuré)",
        )


def parse_header(content: bytes) -> CdaHeader:
    known = _READ.get(content)
    if known is None:
        known = _READ.put(content, _read(parse_root(content)))
    return known[0]


def _read(root: etree._Element) -> tuple[CdaHeader, bool]:
    """A parsed CDA document's header, and whether it has a body."""
    ids = tuple(
        (str(el.get("root", "")), str(el.get("extension", "")))
        for el in root.findall("hl7:recordTarget/hl7:patientRole/hl7:id", NS)
    )
    code = root.find("hl7:code", NS)
    title = root.findtext("hl7:title", namespaces=NS)
    eff = root.find("hl7:effectiveTime", NS)
    conf = root.find("hl7:confidentialityCode", NS)
    low = root.find("hl7:documentationOf/hl7:serviceEvent/hl7:effectiveTime/hl7:low", NS)
    high = root.find("hl7:documentationOf/hl7:serviceEvent/hl7:effectiveTime/hl7:high", NS)
    header = CdaHeader(
        patient_ids=ids,
        type_code=code.get("code") if code is not None else None,
        title=title.strip() if title else None,
        effective_time=_time(eff.get("value")) if eff is not None else None,
        confidentiality=conf.get("code") if conf is not None else None,
        service_start=_time(low.get("value")) if low is not None else None,
        service_stop=_time(high.get("value")) if high is not None else None,
    )
    sections = root.findall("hl7:component/hl7:structuredBody/hl7:component/hl7:section", NS)
    text = root.findtext("hl7:component/hl7:nonXMLBody/hl7:text", namespaces=NS)
    return header, bool(sections) or bool(text and text.strip())


class _Recent:
    """The last few CDA documents read, by content: a publication reads one document's header
    three times (the adapter fills the metadata from it, the gate checks the declared XML, then
    the patient and type), and parsing it cost more than all the rest. Only what was read
    without error is kept (an error is raised anew, worded for its caller), only documents up
    to ``max_bytes``, at most ``size`` of them: the memory it holds stays under a few MB."""

    def __init__(self, size: int = 8, max_bytes: int = 256 * 1024) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._items: OrderedDict[bytes, tuple[CdaHeader, bool]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, content: bytes) -> tuple[CdaHeader, bool] | None:
        if len(content) > self._max_bytes:
            return None
        with self._lock:
            found = self._items.get(content)
            if found is not None:
                self._items.move_to_end(content)
            return found

    def put(self, content: bytes, read: tuple[CdaHeader, bool]) -> tuple[CdaHeader, bool]:
        if len(content) <= self._max_bytes:
            with self._lock:
                self._items[content] = read
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        return read


_READ = _Recent()


def check_content(content: bytes, patient_ins: tuple[str, str], type_code: str) -> None:
    """A CDA document must be about the record's patient and of the declared type, whichever
    API brought it (a document filed in the wrong record is a patient-safety incident)."""
    if not looks_like_cda(content):
        return
    header = parse_header(content)
    if header.ins() and patient_ins not in header.ins():
        raise InvalidInput(
            "the CDA document is about another patient than the metadata's",
            french="le document CDA concerne un autre patient que celui du dossier : "
            "vérifiez le fichier avant de le déposer",
        )
    if header.type_code and header.type_code != type_code:
        raise InvalidInput(
            f"the CDA type code {header.type_code} differs from the metadata's {type_code}",
            french="le type indiqué dans le document CDA diffère du type de document choisi",
        )
