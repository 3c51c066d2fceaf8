"""The XDS.b door (issue 24): ITI-41, ITI-18, ITI-43, ITI-57 and the DMP's record status and
consent transactions, each request carrying a VIHF assertion signed with the structure's
certificate; the same gate, rules and audit as the FHIR door."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from dmp.app import create_app
from dmp.auth import actors
from dmp.domain.ins import Ins
from dmp.runtime import Runtime
from tests import xds_helpers as x
from tests.factories import (
    CARDIOLOGIST,
    GP,
    GP_PRACTICE,
    HOSPITAL,
    NURSE,
    ins_for,
    open_record,
    pro,
)
from tests.fhir_helpers import bearer

DATA = Path(__file__).resolve().parent / "data" / "xds"
INS = ins_for(41)
# No line break at either end: zeep strips CR and LF from the ends of every MTOM attachment it
# reads (zeep/wsdl/attachments.py), which would change the bytes the test compares.
TEXT = b"Compte rendu de consultation fictif."
MASQUE = "MASQUE_PS"


@pytest.fixture
def hospital(world: Runtime) -> x.Software:
    return x.Software(world, HOSPITAL)


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    open_record(world, INS)
    world.access(pro(world, CARDIOLOGIST)).declare_consent(INS)
    with TestClient(create_app(world)) as c:
        yield c


def _vihf(
    world: Runtime, sw: x.Software, ps: str = CARDIOLOGIST, ins: Ins | None = INS, **kw: Any
) -> etree._Element:
    return sw.assertion(ps, ins, now=world.clock.now(), **kw)


def _repository(world: Runtime) -> str:
    return world.settings.xds_repository_id


def _entries(
    client: TestClient, world: Runtime, sw: x.Software, ins: Ins = INS, ps: str = CARDIOLOGIST
) -> list[etree._Element]:
    r = x.post(client, x.ITI18, x.find_documents(ins), _vihf(world, sw, ps, ins))
    assert r.status_code == 200, r.text
    body = x.answer(r)
    assert body.get("status", "").endswith("Success"), r.text
    return body.findall("rim:RegistryObjectList/rim:ExtrinsicObject", x.NS)


def _fault(r: Any) -> str:
    assert r.status_code == 400, r.text
    env = etree.fromstring(r.content)
    return str(env.findtext(".//s:Reason/s:Text", namespaces=x.NS))


# -- the round trip, request by request --------------------------------------------------


def test_provide_find_retrieve_update(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    r = x.post(
        client,
        x.ITI41,
        x.provide(INS, TEXT, unique_id="1.2.250.1.999.1.41"),
        _vihf(world, hospital),
    )
    assert r.status_code == 200, r.text
    assert x.answer(r).get("status", "").endswith(":Success"), r.text
    (entry,) = _entries(client, world, hospital)
    assert x.entry_unique_id(entry) == "1.2.250.1.999.1.41"
    assert x.codes(entry, "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983") == ["11488-4"]
    assert entry.get("status") == x.APPROVED
    # ITI-43: the content, as an MTOM attachment.
    r = x.post(
        client,
        x.ITI43,
        x.retrieve(_repository(world), "1.2.250.1.999.1.41"),
        _vihf(world, hospital),
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("multipart/related")
    assert TEXT in r.content
    # ITI-57: masked from professionals, then archived, then deleted.
    r = x.post(client, x.ITI57, x.update_flags(INS, entry, TEXT, (MASQUE,)), _vihf(world, hospital))
    assert x.answer(r).get("status", "").endswith(":Success"), r.text
    (entry,) = _entries(client, world, hospital)
    assert MASQUE in x.codes(entry, "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f")
    assert entry.find("rim:VersionInfo", x.NS).get("versionName") == "2"  # type: ignore[union-attr]
    # The cardiologist's colleague sees nothing of a masked document (the same rule as FHIR).
    r = client.get(
        f"/fhir/DocumentReference?patient.identifier=urn:oid:{INS.oid}|{INS.value}",
        headers=bearer(world, pro(world, CARDIOLOGIST)),
    )
    assert r.json()["total"] == 1  # the author still sees it
    archived = "urn:asip:ci-sis:2010:StatusType:Archived"
    r = x.post(client, x.ITI57, x.update_status(INS, entry, archived), _vihf(world, hospital))
    assert x.answer(r).get("status", "").endswith(":Success"), r.text
    assert _entries(client, world, hospital) == []  # Approved only
    r = x.post(
        client,
        x.ITI18,
        x.find_documents(INS, **{"$XDSDocumentEntryStatus": f"('{archived}')"}),
        _vihf(world, hospital),
    )
    (entry,) = x.answer(r).findall("rim:RegistryObjectList/rim:ExtrinsicObject", x.NS)
    r = x.post(
        client,
        x.ITI57,
        x.update_status(INS, entry, "urn:asip:ci-sis:2010:StatusType:Deleted"),
        _vihf(world, hospital),
    )
    assert x.answer(r).get("status", "").endswith(":Success"), r.text
    r = x.post(
        client,
        x.ITI43,
        x.retrieve(_repository(world), "1.2.250.1.999.1.41"),
        _vihf(world, hospital),
    )
    assert x.errors(x.answer(r)) == ["XDSDocumentUniqueIdError"]


def test_mtom_provide_and_replacement(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    """The document as an MTOM/XOP attachment, then replaced (RPLC), seen as relatesTo."""
    body = x.provide(INS, TEXT, unique_id="1.2.250.1.999.1.42", inline=False)
    doc = body.find("xdsb:Document", x.NS)
    assert doc is not None
    include = etree.SubElement(doc, "{http://www.w3.org/2004/08/xop/include}Include")
    include.set("href", "cid:document01%40logiciel")
    env = x.envelope(x.ITI41, body, _vihf(world, hospital))
    boundary = "MIMEBoundary_fictif"
    payload = (
        (
            f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; "
            'type="application/soap+xml"\r\n'
            "Content-Transfer-Encoding: binary\r\nContent-ID: <root@logiciel>\r\n\r\n"
        ).encode()
        + env
        + (
            f"\r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n"
            "Content-ID: <document01@logiciel>\r\n\r\n"
        ).encode()
        + TEXT
        + f"\r\n--{boundary}--\r\n".encode()
    )
    content_type = (
        f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; '
        'start="<root@logiciel>"; start-info="application/soap+xml"'
    )
    r = client.post("/xds", content=payload, headers={"Content-Type": content_type})
    assert x.answer(r).get("status", "").endswith(":Success"), r.text
    (first,) = _entries(client, world, hospital)
    new_text = b"Compte rendu corrige.\n"
    r = x.post(
        client, x.ITI41, x.provide(INS, new_text, replaces=first.get("id")), _vihf(world, hospital)
    )
    assert x.answer(r).get("status", "").endswith(":Success"), r.text
    (current,) = _entries(client, world, hospital)
    assert x.entry_unique_id(current) != "1.2.250.1.999.1.42"
    # The FHIR door sees the replacement as relatesTo replaces, the first as superseded.
    h = bearer(world, pro(world, CARDIOLOGIST))
    base = f"/fhir/DocumentReference?patient.identifier=urn:oid:{INS.oid}|{INS.value}"
    (now,) = client.get(base, headers=h).json()["entry"]
    old = client.get(f"{base}&status=superseded", headers=h).json()["entry"][0]["resource"]
    assert now["resource"]["relatesTo"][0]["code"] == "replaces"
    assert now["resource"]["relatesTo"][0]["target"]["reference"].endswith(old["id"])
    # ...and ITI-18 GetAssociations gives the RPLC.
    query = x.find_documents(
        INS, query_id=x.GET_ASSOCIATIONS, **{"$uuid": f"('{current.get('id')}')"}
    )
    r = x.post(client, x.ITI18, query, _vihf(world, hospital))
    kinds = [a.get("associationType") for a in x.answer(r).iter(f"{{{x.RIM}}}Association")]
    assert "urn:ihe:iti:2007:AssociationType:RPLC" in kinds
    assert "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember" in kinds


# -- refusals --------------------------------------------------------------------------


def test_a_tampered_assertion_is_refused(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    vihf = _vihf(world, hospital)
    # Signed for the cardiologist, then changed to name another professional.
    vihf.find(f"{{{x.SAML}}}Subject/{{{x.SAML}}}NameID").text = NURSE  # type: ignore[union-attr]
    r = x.post(client, x.ITI18, x.find_documents(INS), vihf)
    assert "not accepted" in _fault(r)
    assert b"wsse:FailedAuthentication" in r.content
    # Another structure's key, and no signature at all.
    other = x.Software(world, GP_PRACTICE)
    forged = other.assertion(CARDIOLOGIST, INS, now=world.clock.now(), issuer=hospital.client_id)
    assert "not accepted" in _fault(x.post(client, x.ITI18, x.find_documents(INS), forged))
    bare = hospital.assertion(CARDIOLOGIST, INS, now=world.clock.now(), sign=False)
    assert "not accepted" in _fault(x.post(client, x.ITI18, x.find_documents(INS), bare))
    assert "VIHF assertion is required" in _fault(
        x.post(client, x.ITI18, x.find_documents(INS), None)
    )


def test_expired_replayed_and_misplaced_assertions(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    past = world.clock.now() - timedelta(hours=2)
    expired = hospital.assertion(CARDIOLOGIST, INS, now=past)
    assert "expired" in _fault(x.post(client, x.ITI18, x.find_documents(INS), expired))
    future = hospital.assertion(CARDIOLOGIST, INS, now=world.clock.now() + timedelta(hours=1))
    assert "not valid yet" in _fault(x.post(client, x.ITI18, x.find_documents(INS), future))
    long = _vihf(world, hospital, lifetime=timedelta(days=1))
    assert "at most" in _fault(x.post(client, x.ITI18, x.find_documents(INS), long))
    once = _vihf(world, hospital)
    assert x.post(client, x.ITI18, x.find_documents(INS), once).status_code == 200
    assert "replay" in _fault(x.post(client, x.ITI18, x.find_documents(INS), once))
    # A professional of another structure than the software's.
    assert "not a professional" in _fault(
        x.post(client, x.ITI18, x.find_documents(INS), _vihf(world, hospital, ps=GP))
    )
    wrong = _vihf(world, hospital, structure=GP_PRACTICE)
    assert "not a professional" in _fault(x.post(client, x.ITI18, x.find_documents(INS), wrong))


def test_another_patient_and_no_consent(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    other = ins_for(42)
    open_record(world, other)
    # The assertion is for INS; the query is about another patient.
    r = x.post(client, x.ITI18, x.find_documents(other), _vihf(world, hospital))
    assert x.errors(x.answer(r)) == ["DENY_OTHER_PATIENT"]
    # Its own assertion, but the patient never authorised the cardiologist.
    r = x.post(client, x.ITI18, x.find_documents(other), _vihf(world, hospital, ins=other))
    assert x.errors(x.answer(r)) == ["DENY_NO_CONSENT"]
    r = x.post(client, x.ITI41, x.provide(other, TEXT), _vihf(world, hospital))
    assert x.errors(x.answer(r)) == ["DENY_OTHER_PATIENT"]
    # An emergency needs a justification.
    bdg = _vihf(world, hospital, ins=other, purpose="bris_de_glace")
    assert "justification" in _fault(x.post(client, x.ITI18, x.find_documents(other), bdg))
    bdg = _vihf(
        world,
        hospital,
        ins=other,
        purpose="bris_de_glace",
        justification="Patient inconscient aux urgences",
    )
    r = x.post(client, x.ITI18, x.find_documents(other), bdg)
    assert x.answer(r).get("status", "").endswith(":Success"), r.text
    # The holder sees who read, and why, in the history: the same audit as the FHIR door.
    h = bearer(world, actors.patient_actor(world, other))
    events = client.get(
        f"/fhir/AuditEvent?patient.identifier=urn:oid:{other.oid}|{other.value}", headers=h
    ).json()
    reasons = [e["resource"]["outcome"] for e in events["entry"]]
    assert reasons  # the emergency search and the refusals are traced
    texts = str(events)
    assert "bris_de_glace" in texts or "Patient inconscient" in texts


# -- malformed messages and attacks -----------------------------------------------------


def test_malformed_messages_are_sender_faults(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    soap = {"Content-Type": "application/soap+xml"}
    assert "well-formed" in _fault(client.post("/xds", content=b"<s:Envelope", headers=soap))
    xxe = b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>'
    assert "DOCTYPE" in _fault(client.post("/xds", content=xxe, headers=soap))
    soap11 = (
        b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>'
    )
    assert "SOAP 1.2" in _fault(client.post("/xds", content=soap11, headers=soap))
    assert "SOAP 1.2" in _fault(
        client.post("/xds", content=b"{}", headers={"Content-Type": "application/json"})
    )
    r = x.post(client, "urn:example:Unknown", x.find_documents(INS), _vihf(world, hospital))
    assert "unknown WS-Addressing Action" in _fault(r)
    body = x.provide(INS, TEXT, inline=False)
    include = etree.SubElement(
        body.find("xdsb:Document", x.NS), "{http://www.w3.org/2004/08/xop/include}Include"
    )  # type: ignore[arg-type]
    include.set("href", "cid:nowhere")
    assert "names no attachment" in _fault(x.post(client, x.ITI41, body, _vihf(world, hospital)))
    before = _entries(client, world, hospital)
    # Content that contradicts its metadata: a RegistryError, nothing stored.
    bad = x.provide(INS, TEXT)
    bad.find("xdsb:Document", x.NS).text = base64.b64encode(b"autre contenu").decode()  # type: ignore[union-attr]
    r = x.post(client, x.ITI41, bad, _vihf(world, hospital))
    assert x.errors(x.answer(r)) in (["XDSNonIdenticalHash"], ["XDSNonIdenticalSize"])
    assert _entries(client, world, hospital) == before


def test_the_ihe_sample_submission_both_as_published_and_made_french(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    """The Open eHealth IPF sample (tests/data/xds, Apache-2.0): as published its patient is
    no INS; with the patient and codes made French it is filed and found."""
    sample = (DATA / "SubmitObjectsRequest_ebrs30.xml").read_bytes()
    content = b"Physical exam (fictional)"

    def request(sor: bytes) -> etree._Element:
        req = etree.Element(f"{{{x.XDSB}}}ProvideAndRegisterDocumentSetRequest")
        req.append(etree.fromstring(sor))
        doc = etree.SubElement(req, f"{{{x.XDSB}}}Document", id="Document01")
        doc.text = base64.b64encode(content).decode()
        return req

    r = x.post(client, x.ITI41, request(sample), _vihf(world, hospital))
    assert x.errors(x.answer(r)) == ["XDSUnknownPatientId"]
    french = _made_french(sample, INS)
    r = x.post(client, x.ITI41, request(french), _vihf(world, hospital))
    # The sample's IsSnapshotOf association is not one the DMP keeps: said, nothing stored.
    assert x.errors(x.answer(r)) == ["XDSRegistryMetadataError"]
    assert _entries(client, world, hospital) == []
    without_snapshot = french.replace(b"urn:ihe:iti:2010:AssociationType:IsSnapshotOf", b"")
    tree = etree.fromstring(without_snapshot)
    for a in tree.iter(f"{{{x.RIM}}}Association"):
        if not a.get("associationType"):
            a.getparent().remove(a)  # type: ignore[union-attr]
    r = x.post(client, x.ITI41, request(etree.tostring(tree)), _vihf(world, hospital))
    assert x.answer(r).get("status", "").endswith(":Success"), r.text
    (entry,) = _entries(client, world, hospital)
    assert x.entry_unique_id(entry) == "1.3.6.1.4.1.21367.2005.3.9999.32"
    # ...and through MHD with the same metadata.
    h = bearer(world, pro(world, CARDIOLOGIST))
    (found,) = client.get(
        f"/fhir/DocumentReference?patient.identifier=urn:oid:{INS.oid}|{INS.value}", headers=h
    ).json()["entry"]
    assert _from_fhir(found["resource"]) == _from_xds(entry)
    # The metadata-update sample, as published: its patient is no INS either.
    update = etree.parse(str(DATA / "SubmitObjectsRequest_ebrs30_update.xml")).getroot()
    r = x.post(client, x.ITI57, update, _vihf(world, hospital))
    assert x.errors(x.answer(r)) == ["XDSUnknownPatientId"]


def _made_french(sample: bytes, ins: Ins) -> bytes:
    """The sample with an INS for its patient and the national codes for its own."""
    text = sample.decode()
    for old, new in (
        (
            "SELF-5^^^&amp;1.3.6.1.4.1.21367.2005.3.7&amp;ISO",
            f"{ins.value}^^^&amp;{ins.oid}&amp;ISO^NH",
        ),
        ('nodeRepresentation="History and Physical"', 'nodeRepresentation="11"'),
        ('nodeRepresentation="1.3.6.1.4.1.21367.2006.7.101"', 'nodeRepresentation="N"'),
        ('nodeRepresentation="CDAR2/IHE 1.0"', 'nodeRepresentation="urn:ihe:iti:xds-sd:text:2008"'),
        ('nodeRepresentation="Outpatient"', 'nodeRepresentation="SA01"'),
        ('nodeRepresentation="General Medicine"', 'nodeRepresentation="AMBULATOIRE"'),
        ('nodeRepresentation="34108-1"', 'nodeRepresentation="11488-4"'),
        ('mimeType="text/xml"', 'mimeType="text/plain"'),
        ("<rim:Value>en-us</rim:Value>", "<rim:Value>fr-FR</rim:Value>"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    return text.encode()


# -- record status and consent (TD0.2) ----------------------------------------------------


def test_record_status_and_consent(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    other = ins_for(43)
    nobody = ins_for(44)

    def status(ins: Ins) -> dict[str, str]:
        r = x.post(
            client,
            "urn:dmp:xds:2026:RecordStatus",
            x.dmp_request("RecordStatusRequest", ins),
            _vihf(world, hospital, ins=ins),
        )
        assert r.status_code == 200, r.text
        return {etree.QName(e).localname: e.text or "" for e in x.answer(r)}

    assert status(nobody) == {"exists": "false", "authorisation": "none"}
    open_record(world, other)
    assert status(other) == {"exists": "true", "status": "active", "authorisation": "none"}
    r = x.post(
        client,
        "urn:dmp:xds:2026:DeclareConsent",
        x.dmp_request("DeclareConsentRequest", other),
        _vihf(world, hospital, ins=other),
    )
    assert {etree.QName(e).localname: e.text for e in x.answer(r)} == {"authorisation": "valid"}
    got = status(other)
    assert got["authorisation"] == "valid"
    assert got["medecinTraitant"] == "false"
    world.access(actors.patient_actor(world, other)).block_professional(other, CARDIOLOGIST)
    assert status(other)["authorisation"] == "forbidden"


# -- one store, two faces -------------------------------------------------------------------


def test_a_document_provided_through_xds_is_found_through_mhd(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    r = x.post(
        client,
        x.ITI41,
        x.provide(INS, TEXT, unique_id="1.2.250.1.999.1.44"),
        _vihf(world, hospital),
    )
    assert x.answer(r).get("status", "").endswith(":Success"), r.text
    (entry,) = _entries(client, world, hospital)
    h = bearer(world, pro(world, CARDIOLOGIST))
    (found,) = client.get(
        f"/fhir/DocumentReference?patient.identifier=urn:oid:{INS.oid}|{INS.value}", headers=h
    ).json()["entry"]
    assert _from_fhir(found["resource"]) == _from_xds(entry)


def test_every_example_published_through_mhd_is_found_through_xds(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    """The ANS examples (ITI-65 submission, ITI-105 publications, then the ITI-65 replacement)
    through the FHIR door, each found through ITI-18 with the same metadata, status and
    relations."""
    import json

    from tests.fhir_helpers import example

    h = bearer(world, pro(world, CARDIOLOGIST))
    submitted = client.post(
        "/fhir",
        json=example("pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", INS),
        headers=h,
    )
    assert submitted.status_code == 200, submitted.text
    location = next(
        e["response"]["location"]
        for e in submitted.json()["entry"]
        if "/DocumentReference/" in str(e)
    )
    doc_id = location.split("/DocumentReference/")[1].split("/")[0]
    for rel in (
        "pdsm4dmp/DocumentReference-example-td2-iti105-publication-simplifiee.json",
        "pdsm/example/DocumentReference-PDSmSimplifiedExample.json",
    ):
        r = client.post("/fhir/DocumentReference", json=example(rel, INS), headers=h)
        assert r.status_code == 201, r.text
    replacement = json.dumps(example("pdsm4dmp/Bundle-example-td2-1-remplacement.json", INS))
    r = client.post("/fhir", content=replacement.replace("doc-x-id", doc_id), headers=h)
    assert r.status_code == 200, r.text
    base = f"/fhir/DocumentReference?patient.identifier=urn:oid:{INS.oid}|{INS.value}"
    docs = client.get(f"{base}&status=current,superseded", headers=h).json()["entry"]
    assert len(docs) == 4
    statuses = f"('{x.APPROVED}','urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated')"
    r = x.post(
        client,
        x.ITI18,
        x.find_documents(INS, **{"$XDSDocumentEntryStatus": statuses}),
        _vihf(world, hospital),
    )
    entries = x.answer(r).findall("rim:RegistryObjectList/rim:ExtrinsicObject", x.NS)
    assert sorted(_from_fhir(d["resource"]) for d in docs) == sorted(_from_xds(e) for e in entries)
    # The replacement is an RPLC of the replaced entry.
    new = next(d["resource"] for d in docs if d["resource"].get("relatesTo"))
    by_unique = {x.entry_unique_id(e): e for e in entries}
    new_entry = by_unique[new["masterIdentifier"]["value"].removeprefix("urn:oid:")]
    query = x.find_documents(
        INS, query_id=x.GET_ASSOCIATIONS, **{"$uuid": f"('{new_entry.get('id')}')"}
    )
    found = x.answer(x.post(client, x.ITI18, query, _vihf(world, hospital)))
    (rplc,) = [
        a
        for a in found.iter(f"{{{x.RIM}}}Association")
        if a.get("associationType", "").endswith("RPLC")
    ]
    old_entry = next(e for e in entries if e.get("status", "").endswith("Deprecated"))
    assert (rplc.get("sourceObject"), rplc.get("targetObject")) == (
        new_entry.get("id"),
        old_entry.get("id"),
    )
    # The submission sets, the same through both doors.
    lists = client.get(
        f"/fhir/List?patient.identifier=urn:oid:{INS.oid}|{INS.value}&code=submissionset", headers=h
    ).json()["entry"]
    patient = f"'{INS.value}^^^&{INS.oid}&ISO^NH'"
    sets = x.answer(
        x.post(
            client,
            x.ITI18,
            x.find_documents(
                INS,
                query_id="urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9",
                **{
                    "$XDSSubmissionSetPatientId": patient,
                    "$XDSSubmissionSetStatus": f"('{x.APPROVED}')",
                },
            ),
            _vihf(world, hospital),
        )
    ).findall(".//rim:RegistryPackage", x.NS)
    # The examples' SubmissionSets carry no identifier: XDS, which needs one, derives it from
    # the List's id (2.25, ITU-T X.667).
    fhir_sets = sorted(
        next(
            (
                i["value"].removeprefix("urn:oid:")
                for i in lst["resource"].get("identifier", [])
                if i.get("use") == "usual"
            ),
            f"2.25.{int(lst['resource']['id'].split('.')[1], 16)}",
        )
        for lst in lists
    )
    xds_sets = sorted(
        e.get("value", "")
        for pkg in sets
        for e in pkg.findall("rim:ExternalIdentifier", x.NS)
        if e.get("identificationScheme") == "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
    )
    # The two bundles' submission sets (ITI-105 makes none), the same through both doors.
    assert fhir_sets == xds_sets
    assert len(xds_sets) == 2


def _from_fhir(res: dict[str, Any]) -> tuple[Any, ...]:
    att = res["content"][0]["attachment"]
    labels = sorted(c["code"] for label in res.get("securityLabel", []) for c in label["coding"])
    context = res.get("context", {})
    return (
        {"current": "Approved", "superseded": "Deprecated"}[res["status"]],
        res["masterIdentifier"]["value"].removeprefix("urn:oid:"),
        res["type"]["coding"][0]["code"],
        res["category"][0]["coding"][0]["code"],
        res["content"][0]["format"]["code"],
        tuple(labels),
        (context.get("facilityType") or {}).get("coding", [{}])[0].get("code"),
        (context.get("practiceSetting") or {}).get("coding", [{}])[0].get("code"),
        att["contentType"],
        att["size"],
        base64.b64decode(att["hash"]).hex(),
        att["title"],
        _instant(att.get("creation")),
        _instant(context.get("period", {}).get("start")),
        _instant(context.get("period", {}).get("end")),
    )


def _instant(value: str | None) -> str | None:
    if not value:
        return None
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y%m%d%H%M%S")


def _from_xds(entry: etree._Element) -> tuple[Any, ...]:
    slots = {
        s.get("name"): [v.text for v in s.iter(f"{{{x.RIM}}}Value")]
        for s in entry.findall("rim:Slot", x.NS)
    }
    conf = x.codes(entry, "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f")
    return (
        entry.get("status", "").rsplit(":", 1)[-1],
        x.entry_unique_id(entry),
        x.codes(entry, "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983")[0],
        x.codes(entry, "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a")[0],
        x.codes(entry, "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d")[0],
        tuple(sorted(conf)),
        (x.codes(entry, "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1") or [None])[0],
        (x.codes(entry, "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead") or [None])[0],
        entry.get("mimeType"),
        int(slots["size"][0] or 0),
        slots["hash"][0],
        entry.find("rim:Name/rim:LocalizedString", x.NS).get("value"),  # type: ignore[union-attr]
        (slots.get("creationTime") or [None])[0],
        (slots.get("serviceStartTime") or [None])[0],
        (slots.get("serviceStopTime") or [None])[0],
    )


# -- a real SOAP client ----------------------------------------------------------------------


def test_zeep_round_trip_with_signed_assertions(world: Runtime, server_url: str) -> None:
    """zeep reads the WSDL and runs ITI-41 -> ITI-18 -> ITI-43 (MTOM answer) -> ITI-57
    against a real server, each call with a fresh signed VIHF assertion."""
    from zeep import Client
    from zeep.plugins import Plugin
    from zeep.wsa import WsAddressingPlugin

    open_record(world, INS)
    world.access(pro(world, CARDIOLOGIST)).declare_consent(INS)
    sw = x.Software(world, HOSPITAL)
    base = server_url.removesuffix("fhir/")
    repository = world.settings.xds_repository_id

    class Vihf(Plugin):  # type: ignore[misc]
        """Each request with a new assertion, signed now (the server's clock is real)."""

        def egress(
            self, envelope: Any, http_headers: Any, operation: Any, binding_options: Any
        ) -> Any:
            header = envelope.find(f"{{{x.SOAP12}}}Header")
            assertion = sw.assertion(CARDIOLOGIST, INS, now=datetime.now(UTC))
            header.append(x.security(assertion))
            return envelope, http_headers

    soap = Client(f"{base}xds?wsdl", plugins=[WsAddressingPlugin(), Vihf()])
    service = soap.service
    unique = f"1.2.250.1.999.1.{uuid.uuid4().int % 10**9}"
    request = x.provide(INS, TEXT, unique_id=unique)
    answer = service["ProvideAndRegisterDocumentSet-b"](_value_1=list(request))
    assert answer["_attr_1"]["status"].endswith(":Success")
    query = x.find_documents(INS)
    found = service.RegistryStoredQuery(_value_1=list(query))
    assert found["_attr_1"]["status"].endswith(":Success")
    objects = next(e for e in found["_value_1"] if _named(e, "RegistryObjectList"))
    (entry,) = objects.findall("rim:ExtrinsicObject", x.NS)
    assert x.entry_unique_id(entry) == unique
    got = service.RetrieveDocumentSet(_value_1=list(x.retrieve(repository, unique)))
    # zeep reads the parts the WSDL declares (the RegistryResponse) as values, the rest as XML.
    doc = next(e for e in got["_value_1"] if _named(e, "DocumentResponse"))
    assert base64.b64decode(doc.findtext("xdsb:Document", namespaces=x.NS)) == TEXT
    sor = x.update_flags(INS, entry, TEXT, (MASQUE,))
    updated = service.UpdateDocumentSet(_value_1=list(sor))
    assert updated["_attr_1"]["status"].endswith(":Success")
    again = service.RegistryStoredQuery(_value_1=list(x.find_documents(INS)))
    objects = next(e for e in again["_value_1"] if _named(e, "RegistryObjectList"))
    (entry,) = objects.findall("rim:ExtrinsicObject", x.NS)
    assert MASQUE in x.codes(entry, "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f")
    assert hashlib.sha1(TEXT, usedforsecurity=False).hexdigest() in etree.tostring(entry).decode()


def _named(value: Any, name: str) -> bool:
    return isinstance(value, etree._Element) and etree.QName(value).localname == name


def test_wsdl_names_every_transaction(client: TestClient) -> None:
    r = client.get("/xds?wsdl")
    assert r.status_code == 200
    for action in (x.ITI41, x.ITI18, x.ITI43, x.ITI57, "urn:dmp:xds:2026:RecordStatus"):
        assert f'soapAction="{action}"'.encode() in r.content
    assert b'location="http://testserver/xds"' in r.content


def test_the_ipf_assertion_and_query_samples_are_refused_with_their_reasons(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    """The published SAML sample (expired in 2011, signed with SHA-1 by an unknown issuer) and
    the published ITI-18 sample (its patient id carries an SQL-injection attempt)."""
    security = etree.parse(str(DATA / "saml2-assertion-for-xua.xml")).getroot()
    env = etree.fromstring(x.envelope(x.ITI18, x.find_documents(INS), None))
    env.find("s:Header", x.NS).append(security)  # type: ignore[union-attr]
    r = client.post(
        "/xds", content=etree.tostring(env), headers={"Content-Type": "application/soap+xml"}
    )
    assert "not accepted" in _fault(r)
    # Sent by our software with a valid assertion, the sample query is answered with why.
    query = etree.parse(str(DATA / "iti18request.xml")).getroot()
    r = x.post(client, x.ITI18, query, _vihf(world, hospital))
    body = x.answer(r)
    assert body.get("status", "").endswith(":Failure")
    assert x.errors(body) == ["XDSUnknownPatientId"]


def test_stored_queries_of_packages_and_by_id(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    r = x.post(
        client,
        x.ITI41,
        x.provide(INS, TEXT, unique_id="1.2.250.1.999.1.45"),
        _vihf(world, hospital),
    )
    assert x.answer(r).get("status", "").endswith(":Success"), r.text
    (entry,) = _entries(client, world, hospital)

    def run(query_id: str, **params: str) -> etree._Element:
        r = x.post(
            client,
            x.ITI18,
            x.find_documents(INS, query_id=query_id, **params),
            _vihf(world, hospital),
        )
        body = x.answer(r)
        assert body.get("status", "").endswith(":Success"), r.text
        return body

    patient = f"'{INS.value}^^^&{INS.oid}&ISO^NH'"
    sets = run(
        "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9",
        **{"$XDSSubmissionSetPatientId": patient, "$XDSSubmissionSetStatus": f"('{x.APPROVED}')"},
    ).findall(".//rim:RegistryPackage", x.NS)
    assert len(sets) == 1
    contents = run(
        x.GET_SS_AND_CONTENTS, **{"$XDSSubmissionSetEntryUUID": f"'{sets[0].get('id')}'"}
    )
    assert [e.get("id") for e in contents.iter(f"{{{x.RIM}}}ExtrinsicObject")] == [entry.get("id")]
    members = list(contents.iter(f"{{{x.RIM}}}Association"))
    assert [(a.get("sourceObject"), a.get("targetObject")) for a in members] == [
        (sets[0].get("id"), entry.get("id"))
    ]
    by_id = run(
        "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4",
        **{"$XDSDocumentEntryEntryUUID": f"('{entry.get('id')}')"},
    )
    assert [e.get("id") for e in by_id.iter(f"{{{x.RIM}}}ExtrinsicObject")] == [entry.get("id")]
    by_lid = run(
        "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4",
        **{"$XDSDocumentEntryUniqueId": "('1.2.250.1.999.1.45')"},
    )
    assert [e.get("lid") for e in by_lid.iter(f"{{{x.RIM}}}ExtrinsicObject")] == [entry.get("lid")]
    everything = run(
        "urn:uuid:10b545ea-725c-446d-9b95-8aeb444eddf3",
        **{"$patientId": patient, "$XDSDocumentEntryStatus": f"('{x.APPROVED}')"},
    )
    assert len(list(everything.iter(f"{{{x.RIM}}}ExtrinsicObject"))) == 1
    assert len(list(everything.iter(f"{{{x.RIM}}}RegistryPackage"))) == 1
    # An unknown stored query, a missing parameter.
    r = x.post(
        client,
        x.ITI18,
        x.find_documents(INS, query_id="urn:uuid:00000000-0000-0000-0000-000000000000"),
        _vihf(world, hospital),
    )
    assert x.errors(x.answer(r)) == ["XDSUnknownStoredQuery"]
    r = x.post(
        client,
        x.ITI18,
        x.find_documents(INS, query_id="urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"),
        _vihf(world, hospital),
    )
    assert x.errors(x.answer(r)) == ["XDSStoredQueryParamNumber"]


def test_an_addendum_either_way(client: TestClient, world: Runtime, hospital: x.Software) -> None:
    """XDS APND and MHD relatesTo appends are one relation: the first document stays current."""
    r = x.post(client, x.ITI41, x.provide(INS, TEXT), _vihf(world, hospital))
    (first,) = _entries(client, world, hospital)
    r = x.post(
        client,
        x.ITI41,
        x.provide(INS, b"Addendum fictif.", appends=first.get("id")),
        _vihf(world, hospital),
    )
    assert x.answer(r).get("status", "").endswith(":Success"), r.text
    entries = _entries(client, world, hospital)
    assert len(entries) == 2  # both current
    h = bearer(world, pro(world, CARDIOLOGIST))
    base = f"/fhir/DocumentReference?patient.identifier=urn:oid:{INS.oid}|{INS.value}"
    docs = {e["resource"]["id"]: e["resource"] for e in client.get(base, headers=h).json()["entry"]}
    (addendum,) = [d for d in docs.values() if d.get("relatesTo")]
    assert addendum["relatesTo"][0]["code"] == "appends"
    target = addendum["relatesTo"][0]["target"]["reference"].removeprefix("DocumentReference/")
    assert target in docs
    # Through MHD, an addendum to the addendum; XDS shows it as APND.
    res = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient?identifier=urn:oid:{INS.oid}|{INS.value}"},
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
        "relatesTo": [
            {"code": "appends", "target": {"reference": f"DocumentReference/{addendum['id']}"}}
        ],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "title": "Second addendum",
                    "data": base64.b64encode(b"Second.").decode(),
                },
                "format": {"code": "urn:ihe:iti:xds-sd:text:2008"},
            }
        ],
    }
    assert client.post("/fhir/DocumentReference", json=res, headers=h).status_code == 201
    query = x.find_documents(
        INS, query_id=x.GET_ASSOCIATIONS, **{"$uuid": f"('{first.get('id')}')"}
    )
    kinds = [
        a.get("associationType")
        for a in x.answer(x.post(client, x.ITI18, query, _vihf(world, hospital))).iter(
            f"{{{x.RIM}}}Association"
        )
    ]
    assert "urn:ihe:iti:2007:AssociationType:APND" in kinds
    assert len(_entries(client, world, hospital)) == 3
    # A relation the registry does not keep is refused, not dropped.
    res["relatesTo"][0]["code"] = "transforms"
    r = client.post("/fhir/DocumentReference", json=res, headers=h)
    assert r.status_code == 422
    assert "relatesTo[0].code" in r.json()["issue"][0]["diagnostics"]
    res["relatesTo"][0]["code"] = "appends"
    res["relatesTo"][0]["target"]["reference"] = "DocumentReference/nothing.here"
    assert client.post("/fhir/DocumentReference", json=res, headers=h).status_code == 404
    assert len(_entries(client, world, hospital)) == 3


def test_a_message_nested_too_deeply_is_refused(client: TestClient) -> None:
    deep = b"<a>" * 200 + b"</a>" * 200  # under libxml2's own cap (256), over ours (128)
    env = (
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/><s:Body>'
        + deep
        + b"</s:Body></s:Envelope>"
    )
    r = client.post("/xds", content=env, headers={"Content-Type": "application/soap+xml"})
    assert "nested too deeply" in _fault(r)


def test_a_mangled_submission_is_answered_never_a_server_error(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    """Every element or attribute of a valid ITI-41 request taken away, one at a
    time: a RegistryError or a sender fault, never a 500, and nothing half-stored."""
    template = x.provide(INS, TEXT, unique_id="1.2.250.1.999.1.46")
    count = len(list(template.iter()))
    outcomes = set()
    for n in range(1, count):
        names = sorted(list(template.iter())[n].attrib)
        for attribute in [None, *names]:
            body = etree.fromstring(etree.tostring(template))
            target = list(body.iter())[n]
            if attribute is None:
                target.getparent().remove(target)  # type: ignore[union-attr]
            else:
                del target.attrib[attribute]
            r = x.post(client, x.ITI41, body, _vihf(world, hospital))
            assert r.status_code in (200, 400), (n, attribute, r.text)
            if r.status_code == 200:
                outcomes.update(x.errors(x.answer(r)) or ["stored"])
    # What is required is said to be missing, with its code; the first complete request is
    # stored and the later ones find its unique id taken.
    for code in (
        "XDSRegistryMetadataError",
        "XDSMissingDocument",
        "XDSUnknownPatientId",
        "XDSDuplicateUniqueIdInRegistry",
        "stored",
    ):
        assert code in outcomes, (code, outcomes)
    # Of the mangled requests, only complete ones were stored (at most one, by its unique id).
    assert len(_entries(client, world, hospital)) <= 1


def test_a_folder_through_iti41_and_its_stored_queries(
    client: TestClient, world: Runtime, hospital: x.Software
) -> None:
    body = x.provide(INS, TEXT, unique_id="1.2.250.1.999.1.47")
    objects = body.find("lcm:SubmitObjectsRequest/rim:RegistryObjectList", x.NS)
    assert objects is not None
    folder = etree.SubElement(objects, f"{{{x.RIM}}}RegistryPackage", id="Folder01")
    etree.SubElement(
        etree.SubElement(folder, f"{{{x.RIM}}}Name"),
        f"{{{x.RIM}}}LocalizedString",
        value="Suivi cardiologique",
    )
    for scheme, value in (
        ("urn:uuid:75df8f67-9973-4fbe-a900-df66cefecc5a", "1.2.250.1.999.4.1"),
        ("urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a", f"{INS.value}^^^&{INS.oid}&ISO^NH"),
    ):
        etree.SubElement(
            folder,
            f"{{{x.RIM}}}ExternalIdentifier",
            id=f"ei-{scheme[-4:]}",
            registryObject="Folder01",
            identificationScheme=scheme,
            value=value,
        )
    etree.SubElement(
        objects,
        f"{{{x.RIM}}}Classification",
        id="cl-folder",
        classifiedObject="Folder01",
        classificationNode="urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2",
    )
    for n, (source, target) in enumerate(
        (("SubmissionSet01", "Folder01"), ("Folder01", "Document01"))
    ):
        etree.SubElement(
            objects,
            f"{{{x.RIM}}}Association",
            id=f"as-f{n}",
            associationType="urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember",
            sourceObject=source,
            targetObject=target,
        )
    r = x.post(client, x.ITI41, body, _vihf(world, hospital))
    assert x.answer(r).get("status", "").endswith(":Success"), r.text
    patient = f"'{INS.value}^^^&{INS.oid}&ISO^NH'"

    def run(query_id: str, **params: str) -> etree._Element:
        answer = x.answer(
            x.post(
                client,
                x.ITI18,
                x.find_documents(INS, query_id=query_id, **params),
                _vihf(world, hospital),
            )
        )
        assert answer.get("status", "").endswith(":Success"), etree.tostring(answer)
        return answer

    found = run(
        "urn:uuid:958f3006-baad-4929-a4de-ff1114824431",
        **{"$XDSFolderPatientId": patient, "$XDSFolderStatus": f"('{x.APPROVED}')"},
    )
    (pkg,) = found.iter(f"{{{x.RIM}}}RegistryPackage")
    assert pkg.find("rim:Name/rim:LocalizedString", x.NS).get("value") == "Suivi cardiologique"  # type: ignore[union-attr]
    (entry,) = _entries(client, world, hospital)
    by_doc = run(
        "urn:uuid:5737b14c-8a1a-4539-b659-e03a34a5e1e4", **{"$uuid": f"('{entry.get('id')}')"}
    )
    assert [p.get("id") for p in by_doc.iter(f"{{{x.RIM}}}RegistryPackage")] == [pkg.get("id")]
    contents = run(
        "urn:uuid:b909a503-523d-4517-8acf-8e5834dfc4c7",
        **{"$XDSFolderEntryUUID": f"'{pkg.get('id')}'"},
    )
    assert [e.get("id") for e in contents.iter(f"{{{x.RIM}}}ExtrinsicObject")] == [entry.get("id")]
    # The FHIR door sees the same Folder.
    h = bearer(world, pro(world, CARDIOLOGIST))
    lists = client.get(
        f"/fhir/List?patient.identifier=urn:oid:{INS.oid}|{INS.value}&code=folder", headers=h
    ).json()
    assert [e["resource"]["title"] for e in lists["entry"]] == ["Suivi cardiologique"]
