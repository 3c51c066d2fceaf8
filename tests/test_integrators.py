"""What integrators hit on the FHIR door (issue 24, item 6), tried as they would: with fhirpy
and fhirclient against a real server, and request by request."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.consent import Consent
from fhirpy import SyncFHIRClient

from dmp.app import create_app
from dmp.auth import actors
from dmp.domain.ins import OID_NIA, OID_NIR, OID_TEST, Ins, make_ins_value
from dmp.identity.tokens import issue_token
from dmp.runtime import Runtime
from tests.cda_fixtures import CDA_PATIENT, cda_document
from tests.factories import CARDIOLOGIST, T0, ins_for, new_document, open_record, pro
from tests.fhir_helpers import bearer

INS = Ins(*CDA_PATIENT)
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    open_record(world, INS)
    world.access(pro(world, CARDIOLOGIST)).declare_consent(INS)
    with TestClient(create_app(world)) as c:
        yield c


def _publish(client: TestClient, world: Runtime, content: bytes, mime: str) -> Any:
    res = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient?identifier=urn:oid:{INS.oid}|{INS.value}"},
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
        "content": [
            {
                "attachment": {
                    "contentType": mime,
                    "title": "Compte rendu",
                    "data": base64.b64encode(content).decode(),
                },
                "format": {"code": "urn:ihe:iti:xds-sd:text:2008"},
            }
        ],
    }
    return client.post(
        "/fhir/DocumentReference", json=res, headers=bearer(world, pro(world, CARDIOLOGIST))
    )


def _total(client: TestClient, world: Runtime) -> int:
    r = client.get(
        f"/fhir/DocumentReference?patient.identifier=urn:oid:{INS.oid}|{INS.value}&_count=0",
        headers=bearer(world, pro(world, CARDIOLOGIST)),
    )
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


# -- _count=0, _total, _id ------------------------------------------------------------------


def test_count_zero_answers_the_total_alone(client: TestClient, world: Runtime) -> None:
    gp = world.access(pro(world, CARDIOLOGIST))
    for n in range(3):
        gp.deposit_document(INS, new_document(T0, title=f"Compte rendu {n}"), b"texte")
    h = bearer(world, pro(world, CARDIOLOGIST))
    base = f"/fhir/DocumentReference?patient.identifier=urn:oid:{INS.oid}|{INS.value}"
    body = client.get(f"{base}&_count=0&_totalMethod=count", headers=h).json()
    assert body["total"] == 3
    assert "entry" not in body
    assert [link["relation"] for link in body["link"]] == ["self"]  # no "next" page of nothing
    assert client.get(f"{base}&_count=0&_total=accurate", headers=h).json()["total"] == 3
    r = client.get(f"{base}&_total=sometimes", headers=h)
    assert r.status_code == 400
    assert "_total='sometimes'" in r.json()["issue"][0]["diagnostics"]
    assert client.get(f"{base}&_count=-1", headers=h).status_code == 400
    # The same for Lists and the access history.
    lists = client.get(
        f"/fhir/List?patient.identifier=urn:oid:{INS.oid}|{INS.value}&_count=0", headers=h
    ).json()
    assert "entry" not in lists
    holder = bearer(world, actors.patient_actor(world, INS))
    events = client.get(
        f"/fhir/AuditEvent?patient.identifier=urn:oid:{INS.oid}|{INS.value}&_count=0",
        headers=holder,
    ).json()
    assert events["total"] > 0
    assert "entry" not in events


def test_id_finds_a_document_and_names_its_patient(client: TestClient, world: Runtime) -> None:
    gp = world.access(pro(world, CARDIOLOGIST))
    one = gp.deposit_document(INS, new_document(T0, title="Un"), b"un")
    gp.deposit_document(INS, new_document(T0, title="Deux"), b"deux")
    other = ins_for(5)
    open_record(world, other)
    gp.declare_consent(other)
    elsewhere = gp.deposit_document(other, new_document(T0, title="Ailleurs"), b"ailleurs")
    h = bearer(world, pro(world, CARDIOLOGIST))
    fhir_id = f"{one.patient_id}.{one.logical_id}"
    body = client.get(f"/fhir/DocumentReference?_id={fhir_id}", headers=h).json()
    assert [e["resource"]["id"] for e in body["entry"]] == [fhir_id]
    with_patient = client.get(
        f"/fhir/DocumentReference?_id={fhir_id}&patient=Patient/{one.patient_id}", headers=h
    ).json()
    assert with_patient["total"] == 1
    # An id of another patient's document, asked with this patient, matches nothing.
    mixed = client.get(
        f"/fhir/DocumentReference?_id={elsewhere.patient_id}.{elsewhere.logical_id}"
        f"&patient=Patient/{one.patient_id}",
        headers=h,
    ).json()
    assert mixed["total"] == 0
    r = client.get(
        f"/fhir/DocumentReference?_id={fhir_id},{elsewhere.patient_id}.{elsewhere.logical_id}",
        headers=h,
    )
    assert r.status_code == 400
    key = one.patient_id
    patients = client.get(f"/fhir/Patient?_id={key}", headers=h).json()
    assert [e["resource"]["id"] for e in patients["entry"]] == [key]
    assert client.get("/fhir/Patient?_id=nobody", headers=h).json()["total"] == 0


def test_fhirpy_counts_and_searches_by_id(world: Runtime, server_url: str) -> None:
    open_record(world, INS)
    gp = world.access(pro(world, CARDIOLOGIST))
    gp.declare_consent(INS)
    docs = [gp.deposit_document(INS, new_document(T0, title=f"CR {n}"), b"cr") for n in range(4)]
    token = issue_token(
        pro(world, CARDIOLOGIST), world.token_secret, now=datetime.now(UTC), ttl_seconds=600
    )
    fhir = SyncFHIRClient(server_url.rstrip("/"), authorization=f"Bearer {token}")
    search = fhir.resources("DocumentReference").search(
        **{"patient.identifier": f"urn:oid:{INS.oid}|{INS.value}"}
    )
    assert search.count() == 4
    wanted = f"{docs[2].patient_id}.{docs[2].logical_id}"
    found = fhir.resources("DocumentReference").search(_id=wanted).fetch()
    assert [d.id for d in found] == [wanted]
    patient = fhir.resources("Patient").search(_id=docs[0].patient_id).first()
    assert patient is not None
    assert patient.id == docs[0].patient_id


# -- content declared as XML ----------------------------------------------------------------


def test_content_declared_as_xml_must_be_xml(client: TestClient, world: Runtime) -> None:
    before = _total(client, world)
    r = _publish(client, world, b"Compte rendu en texte libre", "text/xml")
    assert r.status_code == 422, r.text
    assert "not well-formed XML" in r.json()["issue"][0]["diagnostics"]
    r = _publish(client, world, b"<a><b></a>", "application/xml")
    assert r.status_code == 422
    r = _publish(client, world, b'<!DOCTYPE x [<!ENTITY e "x">]><x>&e;</x>', "text/xml")
    assert r.status_code == 422
    assert _total(client, world) == before  # nothing stored, nothing lost
    # Plain text stays plain text, and well-formed XML is taken.
    assert _publish(client, world, b"Compte rendu <libre>", "text/plain").status_code == 201
    assert _publish(client, world, b"<compte-rendu/>", "text/xml").status_code == 201


def test_an_empty_cda_is_refused(client: TestClient, world: Runtime) -> None:
    full = cda_document("discharge-letter")
    empty = re.sub(
        rb"<component>\s*<structuredBody>.*</structuredBody>\s*</component>", b"", full, flags=re.S
    )
    assert b"structuredBody" not in empty
    before = _total(client, world)
    r = _publish(client, world, empty, "text/xml")
    assert r.status_code == 422, r.text
    assert "no body" in r.json()["issue"][0]["diagnostics"]
    hollow = full.replace(
        re.search(rb"<structuredBody>.*</structuredBody>", full, flags=re.S).group(0),  # type: ignore[union-attr]
        b"<structuredBody/>",
    )
    assert _publish(client, world, hollow, "text/xml").status_code == 422
    assert _total(client, world) == before
    # A CDA whose body is a PDF or text (nonXMLBody) is a document.
    unstructured = cda_document("unstructured")
    r = client.post(
        "/fhir/DocumentReference",
        json={
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": f"Patient?identifier=urn:oid:{INS.oid}|{INS.value}"},
            "content": [
                {
                    "attachment": {
                        "contentType": "text/xml",
                        "data": base64.b64encode(unstructured).decode(),
                    }
                }
            ],
        },
        headers=bearer(world, pro(world, CARDIOLOGIST)),
    )
    assert r.status_code == 201, r.text


# -- the INS in a search ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/DocumentReference?patient.identifier=urn:oid:{oid}|{bad}",
        "/fhir/Patient?identifier=urn:oid:{oid}|{bad}",
        "/fhir/List?patient.identifier=urn:oid:{oid}|{bad}",
        "/fhir/AuditEvent?patient.identifier=urn:oid:{oid}|{bad}",
        "/fhir/DocumentReference?patient.identifier=urn:oid:1.2.3|{good}",
    ],
)
def test_an_ins_that_is_not_one_is_a_bad_request(
    client: TestClient, world: Runtime, path: str
) -> None:
    bad = INS.value[:13] + f"{(int(INS.value[13:]) + 1) % 100:02d}"  # a wrong control key
    r = client.get(
        path.format(oid=INS.oid, bad=bad, good=INS.value),
        headers=bearer(world, pro(world, CARDIOLOGIST)),
    )
    assert r.status_code == 400, r.text
    assert "is not an INS" in r.json()["issue"][0]["diagnostics"]


def test_a_bare_ins_says_which_oid_was_assumed(client: TestClient, world: Runtime) -> None:
    h = bearer(world, pro(world, CARDIOLOGIST))
    # The record exists under the test OID; asked without a system, it is looked up as NIR.
    r = client.get(f"/fhir/DocumentReference?patient.identifier={INS.value}", headers=h)
    assert r.status_code == 404
    said = r.json()["issue"][0]["diagnostics"]
    assert "no system" in said
    assert OID_NIR in said
    assert OID_NIA in said
    assert OID_TEST in said
    found = client.get(f"/fhir/Patient?identifier={INS.value}", headers=h).json()
    assert found["total"] == 0
    (entry,) = found["entry"]
    assert entry["search"]["mode"] == "outcome"
    assert OID_NIR in entry["resource"]["issue"][0]["diagnostics"]
    # With its system, the same search finds the record.
    ok = client.get(f"/fhir/Patient?identifier=urn:oid:{INS.oid}|{INS.value}", headers=h)
    assert ok.json()["total"] == 1
    assert (
        "entry"
        not in client.get(
            f"/fhir/Patient?identifier=urn:oid:{INS.oid}|{INS.value}&_count=0", headers=h
        ).json()
    )
    # The JSON API without ?oid=.
    r = client.get(f"/api/records/{INS.value}", headers=h)
    assert r.status_code == 404
    assert "no ?oid= was given" in r.json()["message"]
    assert OID_NIR in r.json()["message"]
    assert client.get(f"/api/records/{INS.value}?oid={INS.oid}", headers=h).status_code == 200


def test_the_assumed_oid_sentence_reveals_no_record(client: TestClient, world: Runtime) -> None:
    """A holder asking for another record, and anyone asking for a record that does not
    exist, get the same words."""
    holder = bearer(world, actors.patient_actor(world, INS))
    someone = Ins(OID_NIR, ins_for(9).value)  # has a record under NIR...
    open_record(world, someone)
    nobody = make_ins_value("2800575123456")  # ...this one has none
    said = []
    for value in (someone.value, nobody):
        r = client.get(f"/fhir/DocumentReference?patient.identifier={value}", headers=holder)
        assert r.status_code == 404
        said.append(r.json()["issue"][0]["diagnostics"])
    assert said[0] == said[1]
    assert OID_NIR in said[0]


# -- the docs' Consent -----------------------------------------------------------------------


def test_the_documented_consent_is_valid_fhir_r4_and_accepted(
    client: TestClient, world: Runtime
) -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```json\n(.*?)```", text, flags=re.S) if '"Consent"' in b]
    assert blocks
    for block in blocks:
        consent = json.loads(block)
        Consent.model_validate(consent)  # scope and category (1..1, 1..*) are there
        other = ins_for(11)
        open_record(world, other)
        consent["patient"]["reference"] = f"Patient?identifier=urn:oid:{other.oid}|{other.value}"
        r = client.post(
            "/fhir/Consent", json=consent, headers=bearer(world, pro(world, CARDIOLOGIST))
        )
        assert r.status_code == 201, r.text
