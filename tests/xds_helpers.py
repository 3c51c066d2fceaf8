"""Building what DMP-compatible software sends to the XDS.b door: a structure's certificate, its
signed VIHF assertion (signxml), SOAP 1.2 envelopes and ebRIM submissions."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from dmp.auth.vihf import certificate_jwk
from dmp.domain.ins import Ins
from dmp.jobs.clients import register_client
from dmp.runtime import Runtime

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
DMP = "urn:dmp:xds:2026"
NS = {"rim": RIM, "lcm": LCM, "query": QUERY, "rs": RS, "xdsb": XDSB, "s": SOAP12, "dmp": DMP}

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
GET_SS_AND_CONTENTS = "urn:uuid:e8e3cb2c-e39c-46b9-99e4-c12f57260b83"
GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"


def self_signed(key: Any, common_name: str, start: datetime, days: int) -> x509.Certificate:
    """A self-signed certificate, as ``openssl req -x509`` writes one."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


class Software:
    """A structure's software: its key, its certificate, its registration."""

    def __init__(self, rt: Runtime, structure: str, *, valid_from: datetime | None = None) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        start = valid_from or datetime(2020, 1, 1, tzinfo=UTC)
        self.cert = self_signed(self.key, f"Logiciel fictif {structure}", start, 365 * 20)
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.client_id = register_client(
            rt,
            name="Logiciel fictif",
            structure_id=structure,
            jwks={"keys": [certificate_jwk(self.pem)]},
        )

    def assertion(
        self,
        ps: str,
        ins: Ins | None,
        *,
        now: datetime,
        purpose: str = "normal",
        lifetime: timedelta = timedelta(minutes=5),
        structure: str | None = None,
        justification: str | None = None,
        issuer: str | None = None,
        sign: bool = True,
    ) -> etree._Element:
        """A VIHF 3.0 assertion, signed with the structure's key (exclusive c14n)."""
        a = etree.Element(f"{{{SAML}}}Assertion", nsmap={"saml2": SAML})
        a.set("ID", f"_{uuid.uuid4().hex}")
        a.set("Version", "2.0")
        a.set("IssueInstant", _instant(now))
        etree.SubElement(a, f"{{{SAML}}}Issuer").text = issuer or self.client_id
        subject = etree.SubElement(a, f"{{{SAML}}}Subject")
        etree.SubElement(subject, f"{{{SAML}}}NameID").text = ps
        cond = etree.SubElement(a, f"{{{SAML}}}Conditions")
        cond.set("NotBefore", _instant(now - timedelta(seconds=5)))
        cond.set("NotOnOrAfter", _instant(now - timedelta(seconds=5) + lifetime))
        stmt = etree.SubElement(a, f"{{{SAML}}}AttributeStatement")
        attrs: dict[str, str | None] = {
            "VIHF_Version": "3.0",
            "Identifiant_Structure": structure,
            "Secteur_Activite": "SA01^1.2.250.1.71.4.2.4",
            "Authentification_Mode": "INDIRECTE",
            "Ressource_URN": "urn:dmp",
            "LPS_Nom": "Logiciel fictif",
            "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse": purpose,
            "urn:oasis:names:tc:xacml:2.0:resource:resource-id": (
                f"{ins.value}^^^&{ins.oid}&ISO^NH" if ins else None
            ),
            "Justification": justification,
        }
        for name, value in attrs.items():
            if value is None:
                continue
            attr = etree.SubElement(stmt, f"{{{SAML}}}Attribute", Name=name)
            etree.SubElement(attr, f"{{{SAML}}}AttributeValue").text = value
        if not sign:
            return a
        signer = XMLSigner(
            signature_algorithm=SignatureMethod.RSA_SHA256,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        signed: etree._Element = signer.sign(a, key=self.key, cert=[self.cert])
        return signed


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def security(assertion: etree._Element) -> etree._Element:
    sec = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    sec.append(assertion)
    return sec


def envelope(action: str, body: etree._Element, assertion: etree._Element | None) -> bytes:
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"s": SOAP12, "a": WSA})
    header = etree.SubElement(env, f"{{{SOAP12}}}Header")
    etree.SubElement(header, f"{{{WSA}}}Action").text = action
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    if assertion is not None:
        header.append(security(assertion))
    etree.SubElement(env, f"{{{SOAP12}}}Body").append(body)
    return bytes(etree.tostring(env))


def post(client: Any, action: str, body: etree._Element, assertion: etree._Element | None) -> Any:
    return client.post(
        "/xds",
        content=envelope(action, body, assertion),
        headers={"Content-Type": "application/soap+xml; charset=UTF-8"},
    )


def answer(response: Any) -> etree._Element:
    """The SOAP Body's element of a response (inline)."""
    env = etree.fromstring(response.content)
    return env.find("s:Body", NS)[0]  # type: ignore[index]


def _el(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{RIM}}}{tag}", **attrs)


def _slot(parent: etree._Element, name: str, *values: str) -> None:
    vl = _el(_el(parent, "Slot", name=name), "ValueList")
    for v in values:
        _el(vl, "Value").text = v


def _classification(
    parent: etree._Element, owner: str, scheme: str, code: str, coding: str
) -> None:
    c = _el(
        parent,
        "Classification",
        id=f"cl-{uuid.uuid4().hex[:8]}",
        classificationScheme=scheme,
        classifiedObject=owner,
        nodeRepresentation=code,
    )
    _slot(c, "codingScheme", coding)


def _identifier(parent: etree._Element, owner: str, scheme: str, value: str) -> None:
    _el(
        parent,
        "ExternalIdentifier",
        id=f"ei-{uuid.uuid4().hex[:8]}",
        registryObject=owner,
        identificationScheme=scheme,
        value=value,
    )


def document_entry(
    parent: etree._Element,
    ident: str,
    ins: Ins,
    content: bytes,
    *,
    unique_id: str,
    type_code: str = "11488-4",
    title: str = "Compte rendu de consultation",
    flags: tuple[str, ...] = (),
    lid: str | None = None,
) -> etree._Element:
    eo = _el(parent, "ExtrinsicObject", id=ident, mimeType="text/plain")
    eo.set("objectType", "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1")
    if lid:
        eo.set("lid", lid)
    _slot(eo, "creationTime", "20260301100000")
    _slot(eo, "serviceStartTime", "20260301093000")
    _slot(eo, "serviceStopTime", "20260301094500")
    _slot(eo, "languageCode", "fr-FR")
    _slot(eo, "hash", hashlib.sha1(content, usedforsecurity=False).hexdigest())
    _slot(eo, "size", str(len(content)))
    name = _el(eo, "Name")
    _el(name, "LocalizedString", value=title)
    _classification(
        eo, ident, "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a", "11", "1.2.250.1.213.1.1.4.1"
    )
    for code, coding in (
        ("N", "2.16.840.1.113883.5.25"),
        *((f, "1.2.250.1.213.1.1.4.13") for f in flags),
    ):
        _classification(eo, ident, "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f", code, coding)
    _classification(
        eo,
        ident,
        "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d",
        "urn:ihe:iti:xds-sd:text:2008",
        "1.3.6.1.4.1.19376.1.2.3",
    )
    _classification(
        eo, ident, "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1", "SA01", "1.2.250.1.71.4.2.4"
    )
    _classification(
        eo,
        ident,
        "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead",
        "ETABLISSEMENT",
        "1.2.250.1.213.1.1.4.9",
    )
    _classification(
        eo,
        ident,
        "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983",
        type_code,
        "2.16.840.1.113883.6.1",
    )
    _identifier(
        eo,
        ident,
        "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427",
        f"{ins.value}^^^&{ins.oid}&ISO^NH",
    )
    _identifier(eo, ident, "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab", unique_id)
    return eo


def submission_set(parent: etree._Element, ins: Ins, members: list[str], **slots: str) -> str:
    ident = "SubmissionSet01"
    pkg = _el(parent, "RegistryPackage", id=ident)
    _slot(pkg, "submissionTime", "20260301100500")
    name = _el(pkg, "Name")
    _el(name, "LocalizedString", value="Lot de consultation")
    _identifier(
        pkg,
        ident,
        "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8",
        f"1.2.250.1.999.2.{uuid.uuid4().int % 10**9}",
    )
    _identifier(pkg, ident, "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832", "1.2.250.1.999.3")
    _identifier(
        pkg,
        ident,
        "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446",
        f"{ins.value}^^^&{ins.oid}&ISO^NH",
    )
    _el(
        parent,
        "Classification",
        id="cl-ss",
        classifiedObject=ident,
        classificationNode="urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd",
    )
    for n, member in enumerate(members):
        assoc = _el(
            parent,
            "Association",
            id=f"as-{n}",
            associationType="urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember",
            sourceObject=ident,
            targetObject=member,
        )
        for name_, value in slots.items():
            _slot(assoc, name_, value)
        if not slots:
            _slot(assoc, "SubmissionSetStatus", "Original")
    return ident


def provide(
    ins: Ins,
    content: bytes,
    *,
    unique_id: str | None = None,
    replaces: str | None = None,
    appends: str | None = None,
    flags: tuple[str, ...] = (),
    inline: bool = True,
) -> etree._Element:
    """An ITI-41 request with one text document."""
    req = etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": XDSB})
    sor = etree.SubElement(req, f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    objects = etree.SubElement(sor, f"{{{RIM}}}RegistryObjectList")
    document_entry(
        objects,
        "Document01",
        ins,
        content,
        unique_id=unique_id or f"1.2.250.1.999.1.{uuid.uuid4().int % 10**12}",
        flags=flags,
    )
    submission_set(objects, ins, ["Document01"])
    for kind, target in (("RPLC", replaces), ("APND", appends)):
        if target:
            _el(
                objects,
                "Association",
                id=f"as-{kind.lower()}",
                associationType=f"urn:ihe:iti:2007:AssociationType:{kind}",
                sourceObject="Document01",
                targetObject=target,
            )
    doc = etree.SubElement(req, f"{{{XDSB}}}Document", id="Document01")
    doc.text = base64.b64encode(content).decode() if inline else None
    return req


def find_documents(ins: Ins, *, query_id: str = FIND_DOCUMENTS, **params: str) -> etree._Element:
    req = etree.Element(f"{{{QUERY}}}AdhocQueryRequest", nsmap={"query": QUERY, "rim": RIM})
    etree.SubElement(
        req, f"{{{QUERY}}}ResponseOption", returnType="LeafClass", returnComposedObjects="true"
    )
    q = etree.SubElement(req, f"{{{RIM}}}AdhocQuery", id=query_id)
    values = (
        {
            "$XDSDocumentEntryPatientId": f"'{ins.value}^^^&{ins.oid}&ISO^NH'",
            "$XDSDocumentEntryStatus": f"('{APPROVED}')",
            **params,
        }
        if query_id == FIND_DOCUMENTS
        else params
    )
    for name, value in values.items():
        _slot(q, name, value)
    return req


def retrieve(repository: str, unique_id: str) -> etree._Element:
    req = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetRequest", nsmap={"xdsb": XDSB})
    dr = etree.SubElement(req, f"{{{XDSB}}}DocumentRequest")
    etree.SubElement(dr, f"{{{XDSB}}}RepositoryUniqueId").text = repository
    etree.SubElement(dr, f"{{{XDSB}}}DocumentUniqueId").text = unique_id
    return req


def update_flags(
    ins: Ins, entry: etree._Element, content: bytes, flags: tuple[str, ...]
) -> etree._Element:
    """An ITI-57 request: a new version of a DocumentEntry with other confidentiality codes."""
    sor = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    objects = etree.SubElement(sor, f"{{{RIM}}}RegistryObjectList")
    unique = entry_unique_id(entry)
    version = entry.find("rim:VersionInfo", NS).get("versionName")  # type: ignore[union-attr]
    document_entry(
        objects,
        "urn:uuid:" + str(uuid.uuid4()),
        ins,
        content,
        unique_id=unique,
        flags=flags,
        lid=entry.get("lid"),
    )
    new_id = objects[0].get("id", "")
    submission_set(objects, ins, [new_id], PreviousVersion=str(version))
    return sor


def update_status(ins: Ins, entry: etree._Element, new: str) -> etree._Element:
    sor = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    objects = etree.SubElement(sor, f"{{{RIM}}}RegistryObjectList")
    submission_set(objects, ins, [])
    assoc = _el(
        objects,
        "Association",
        id="as-status",
        associationType="urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus",
        sourceObject="SubmissionSet01",
        targetObject=entry.get("id", ""),
    )
    _slot(assoc, "OriginalStatus", entry.get("status", ""))
    _slot(assoc, "NewStatus", new)
    return sor


def entry_unique_id(entry: etree._Element) -> str:
    for e in entry.findall("rim:ExternalIdentifier", NS):
        if e.get("identificationScheme") == "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab":
            return e.get("value", "")
    raise AssertionError("no uniqueId")


def codes(entry: etree._Element, scheme: str) -> list[str]:
    return [
        c.get("nodeRepresentation", "")
        for c in entry.findall("rim:Classification", NS)
        if c.get("classificationScheme") == scheme
    ]


def errors(element: etree._Element) -> list[str]:
    return [e.get("errorCode", "") for e in element.iter(f"{{{RS}}}RegistryError")]


def dmp_request(tag: str, ins: Ins | None = None) -> etree._Element:
    req = etree.Element(f"{{{DMP}}}{tag}", nsmap={"dmp": DMP})
    if ins is not None:
        etree.SubElement(req, f"{{{DMP}}}PatientId").text = f"{ins.value}^^^&{ins.oid}&ISO^NH"
    return req
