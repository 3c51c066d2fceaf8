"""MHD details an integrator meets on day one: FHIR Documents refused with the code MHD names,
a location for every entry of a transaction-response, the stored MIME type unchanged on
ITI-68, ETag and Last-Modified on reads, and ``Prefer: return=`` on creates."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.domain.ins import OID_TEST
from dmp.runtime import Runtime
from tests.factories import CARDIOLOGIST, T0, ins_for, new_document, open_record, pro
from tests.fhir_helpers import bearer, example, iti105
from tests.portal_helpers import sample_pdf

INS = ins_for(233)


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    open_record(world, INS)
    world.access(pro(world, CARDIOLOGIST)).declare_consent(INS)
    with TestClient(create_app(world)) as c:
        yield c


def _count(client: TestClient, h: dict[str, str]) -> int:
    q = {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}", "_summary": "count"}
    r = client.get("/fhir/DocumentReference", params=q, headers=h)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def _not_supported(r: Any) -> None:
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert issue["code"] == "not-supported"
    assert issue["details"]["coding"][0]["code"] == "FHIRDocumentNotSupported"


def _fhir_document() -> dict[str, Any]:
    return example("pdsm4dmp/Bundle-example-annexe-fhir-document.json", INS)  # type: ignore[no-any-return]


def _iti65(content: bytes, mime: str) -> dict[str, Any]:
    bundle = example("pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", INS)
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Binary":
            res["contentType"] = mime
            res["data"] = base64.b64encode(content).decode()
        if res["resourceType"] == "DocumentReference":
            att = res["content"][0]["attachment"]
            att["contentType"] = mime
            att.pop("hash", None)
            att.pop("size", None)
    return bundle  # type: ignore[no-any-return]


def test_fhir_documents_are_refused_with_the_mhd_code(client: TestClient, world: Runtime) -> None:
    h = bearer(world, pro(world, CARDIOLOGIST))
    # The DMP guide's FHIR Document example, posted as is.
    _not_supported(client.post("/fhir", json=_fhir_document(), headers=h))
    # The same document as the content of an ITI-65 submission.
    content = json.dumps(_fhir_document()).encode()
    _not_supported(client.post("/fhir", json=_iti65(content, "application/fhir+json"), headers=h))
    # And through ITI-105.
    docref = iti105(INS, content, "application/fhir+json")
    _not_supported(client.post("/fhir/DocumentReference", json=docref, headers=h))
    assert _count(client, h) == 0  # nothing stored


def test_an_entry_of_another_kind_is_refused_before_anything_is_stored(
    client: TestClient, world: Runtime
) -> None:
    h = bearer(world, pro(world, CARDIOLOGIST))
    bundle = example("pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", INS)
    bundle["entry"].append(
        {
            "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
            "request": {"method": "POST", "url": "Observation"},
        }
    )
    r = client.post("/fhir", json=bundle, headers=h)
    assert r.status_code == 422
    assert "Bundle.entry[3]" in r.text
    assert _count(client, h) == 0


@pytest.mark.parametrize("mime", ["text/plain", "text/xml", "application/pdf"])
def test_iti68_returns_the_stored_mime_type_unchanged(
    client: TestClient, world: Runtime, mime: str
) -> None:
    gp = world.access(pro(world, CARDIOLOGIST))
    meta = dataclasses.replace(new_document(T0), mime_type=mime)
    doc = gp.deposit_document(INS, meta, sample_pdf("fictif") if "pdf" in mime else b"<x/>")
    assert doc.mime_type == mime
    r = client.get(
        f"/fhir/Binary/{doc.patient_id}.{doc.logical_id}",
        headers=bearer(world, pro(world, CARDIOLOGIST)),
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == doc.mime_type  # no charset added


def test_reads_carry_etag_and_last_modified(client: TestClient, world: Runtime) -> None:
    h = bearer(world, pro(world, CARDIOLOGIST))
    body = client.post("/fhir", json=_iti65(b"Compte rendu fictif", "text/plain"), headers=h)
    assert body.status_code == 200, body.text
    for entry in body.json()["entry"]:
        path = "/fhir/" + entry["response"]["location"].split("/fhir/")[1].split("/_history")[0]
        for accept in ("*/*", "application/fhir+json"):
            r = client.get(path, headers={**h, "Accept": accept})
            assert r.status_code == 200, path
            assert r.headers["etag"].startswith('W/"'), path
            modified = parsedate_to_datetime(r.headers["last-modified"])
            assert abs((modified - world.clock.now()).total_seconds()) < 1, path


def _created(r: Any, prefer: str) -> None:
    assert r.status_code == 201, r.text
    assert "/fhir/" in r.headers["location"]
    if prefer == "return=minimal":
        assert r.content == b""
    elif prefer == "return=OperationOutcome":
        assert r.json()["resourceType"] == "OperationOutcome"
        assert r.json()["issue"][0]["severity"] == "information"
    else:
        assert r.json()["resourceType"] in ("DocumentReference", "Patient", "Consent")


@pytest.mark.parametrize(
    "prefer", ["return=minimal", "return=representation", "return=OperationOutcome", ""]
)
def test_prefer_return_on_creates(client: TestClient, world: Runtime, prefer: str) -> None:
    h = {**bearer(world, pro(world, CARDIOLOGIST)), "Prefer": prefer}
    docref = iti105(INS, b"Compte rendu fictif")
    _created(client.post("/fhir/DocumentReference", json=docref, headers=h), prefer)
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "patient": {"reference": f"Patient?identifier=urn:oid:{OID_TEST}|{INS.value}"},
        "provision": {"type": "permit"},
    }
    _created(client.post("/fhir/Consent", json=consent, headers=h), prefer)


def _minimal_bundle(with_type: bool) -> dict[str, Any]:
    """An ITI-65 Provide Document Bundle with MHD's minimal metadata (IHE MHD 4.2, Minimal
    Metadata: the SubmissionSet and DocumentReference elements a Document Source must send),
    built here from the specification: no title, no dates, no size or hash."""
    subject = {"reference": f"Patient?identifier=urn:oid:{OID_TEST}|{INS.value}"}
    docref: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:2.25.4242"},
        "status": "current",
        "subject": subject,
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "url": "urn:uuid:3fdc72f4-a11d-4a9d-9a2b-0000000000b3",
                }
            }
        ],
    }
    if with_type:
        docref["type"] = {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:3fdc72f4-a11d-4a9d-9a2b-0000000000b1",
                "resource": {
                    "resourceType": "List",
                    "extension": [
                        {
                            "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
                            "valueIdentifier": {"value": "urn:oid:1.2.250.1.999.9"},
                        }
                    ],
                    "identifier": [
                        {
                            "use": "usual",
                            "system": "urn:ietf:rfc:3986",
                            "value": "urn:oid:2.25.4243",
                        }
                    ],
                    "status": "current",
                    "mode": "working",
                    "code": {
                        "coding": [
                            {
                                "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                                "code": "submissionset",
                            }
                        ]
                    },
                    "subject": subject,
                    "date": "2026-11-27T10:00:00+01:00",
                    "entry": [
                        {"item": {"reference": "urn:uuid:3fdc72f4-a11d-4a9d-9a2b-0000000000b2"}}
                    ],
                },
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": "urn:uuid:3fdc72f4-a11d-4a9d-9a2b-0000000000b2",
                "resource": docref,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": "urn:uuid:3fdc72f4-a11d-4a9d-9a2b-0000000000b3",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "text/plain",
                    "data": base64.b64encode(b"Compte rendu minimal (fictif)").decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }


def test_a_minimal_metadata_bundle(client: TestClient, world: Runtime) -> None:
    h = bearer(world, pro(world, CARDIOLOGIST))
    refused = client.post("/fhir", json=_minimal_bundle(with_type=False), headers=h)
    assert refused.status_code == 422
    assert "DocumentReference.type" in refused.text  # the DMP needs the type for its rules
    r = client.post("/fhir", json=_minimal_bundle(with_type=True), headers=h)
    assert r.status_code == 200, r.text
    location = r.json()["entry"][1]["response"]["location"]
    doc = client.get("/fhir/" + location.split("/fhir/")[1].split("/_history")[0], headers=h)
    assert doc.status_code == 200
    assert doc.json()["content"][0]["attachment"]["title"]  # from the type's name
    binary = r.json()["entry"][2]["response"]["location"]
    raw = client.get("/fhir/" + binary.split("/fhir/")[1], headers=h)
    assert raw.content == b"Compte rendu minimal (fictif)"


@pytest.mark.parametrize(
    "name",
    [
        "pdsm4dmp/Bundle-example-annexe-searchset-documentreferences.json",
        "pdsm/example/Bundle-a9c10f8a-882d-4000-a280-7150e0aeb478.json",
    ],
)
def test_response_examples_are_not_submissions(
    client: TestClient, world: Runtime, name: str
) -> None:
    r = client.post(
        "/fhir", json=example(name, INS), headers=bearer(world, pro(world, CARDIOLOGIST))
    )
    assert r.status_code == 400, r.text
    assert "transaction" in r.json()["issue"][0]["diagnostics"]
