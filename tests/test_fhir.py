"""The FHIR API (IHE MHD / PDSm): the published examples, responses valid as FHIR R4, negatives."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient

from dmp.app import create_app
from dmp.auth import actors
from dmp.domain.ins import Ins
from dmp.runtime import Runtime
from tests.cda_fixtures import CDA_PATIENT, cda_document
from tests.factories import CARDIOLOGIST, EXAMPLES, GP, NURSE, open_record, pro
from tests.fhir_helpers import bearer, example

CDA_INS = Ins(*CDA_PATIENT)  # the patient of the fictional CDA documents


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    open_record(world, CDA_INS)
    # The publishing cardiologist reads back what they publish: authorship alone gives no
    # reading (AC-10), so the patient's consent is declared, as at a consultation.
    world.access(pro(world, CARDIOLOGIST)).declare_consent(CDA_INS)
    with TestClient(create_app(world)) as c:
        yield c


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    return r.json()


def _outcome(r: Any, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    OperationOutcome.model_validate(body)
    return str(body["issue"][0]["diagnostics"])


def test_capability_statement(client: TestClient) -> None:
    body = _ok(client.get("/fhir/metadata"))
    CapabilityStatement.model_validate(body)
    kinds = {r["type"]: {i["code"] for i in r["interaction"]} for r in body["rest"][0]["resource"]}
    assert kinds["DocumentReference"] >= {"read", "search-type", "patch"}
    assert kinds["Binary"] == {"read"}
    assert body["rest"][0]["interaction"][0]["code"] == "transaction"


def test_iti105_examples_are_accepted(client: TestClient, world: Runtime) -> None:
    h = bearer(world, pro(world, CARDIOLOGIST))
    for rel in (
        "pdsm4dmp/DocumentReference-example-td2-iti105-publication-simplifiee.json",
        "pdsm/example/DocumentReference-PDSmSimplifiedExample.json",
    ):
        body = _ok(
            client.post("/fhir/DocumentReference", json=example(rel, CDA_INS), headers=h), 201
        )
        DocumentReference.model_validate(body)
        assert body["content"][0]["attachment"]["url"].endswith(f"/Binary/{body['id']}")


def test_the_examples_placeholder_cda_is_refused(client: TestClient, world: Runtime) -> None:
    """As published, the ANS examples carry an empty ClinicalDocument: no document to file."""
    h = bearer(world, pro(world, CARDIOLOGIST))
    rel = "pdsm4dmp/DocumentReference-example-td2-iti105-publication-simplifiee.json"
    r = client.post(
        "/fhir/DocumentReference", json=example(rel, CDA_INS, as_published=True), headers=h
    )
    assert "no body" in _outcome(r, 422)
    bundle = example("pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", CDA_INS)
    published = example(
        "pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", CDA_INS, as_published=True
    )
    assert bundle != published
    assert "no body" in _outcome(client.post("/fhir", json=published, headers=h), 422)


def test_iti65_submission_and_replacement_examples(client: TestClient, world: Runtime) -> None:
    h = bearer(world, pro(world, CARDIOLOGIST))
    bundle = example("pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", CDA_INS)
    body = _ok(client.post("/fhir", json=bundle, headers=h))
    Bundle.model_validate(body)
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"] * 3
    # Every entry says where its resource now is (List, DocumentReference, Binary), and each
    # location reads back.
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    locations = [e["response"]["location"] for e in body["entry"]]
    assert [loc.split("/fhir/")[1].split("/")[0] for loc in locations] == kinds
    location = locations[kinds.index("DocumentReference")]
    doc_id = location.split("/DocumentReference/")[1].split("/")[0]
    for loc in locations:
        path = "/fhir/" + loc.split("/fhir/")[1].split("/_history")[0]
        read = client.get(path, headers=h)
        assert read.status_code == 200, (path, read.text)
    assert locations[kinds.index("Binary")].endswith(f"/Binary/{doc_id}")
    # The replacement example: its target is the document we just published.
    replacement = example("pdsm4dmp/Bundle-example-td2-1-remplacement.json", CDA_INS)
    text = json.dumps(replacement).replace("doc-x-id", doc_id)
    body = _ok(client.post("/fhir", content=text, headers=h))
    Bundle.model_validate(body)
    old = _ok(client.get(f"/fhir/DocumentReference/{doc_id}", headers=h))
    assert old["status"] == "superseded"
    assert old["meta"]["versionId"] == "2"
    new_loc = next(
        e["response"]["location"] for e in body["entry"] if "/DocumentReference/" in str(e)
    )
    new = _ok(client.get("/fhir" + new_loc.split("/fhir")[1].rsplit("/_history", 1)[0], headers=h))
    assert new["relatesTo"][0]["target"]["reference"] == f"DocumentReference/{doc_id}"


def test_comprehensive_docref_example_with_its_binary(client: TestClient, world: Runtime) -> None:
    docref = example("pdsm/example/DocumentReference-exemple-pdsm-documentreference.json", CDA_INS)
    binary = json.loads((EXAMPLES / "pdsm/example/Binary-6789.json").read_text(encoding="utf-8"))
    content = base64.b64decode(binary["data"])
    att = docref["content"][0]["attachment"]
    att["size"], att["hash"] = (
        len(content),
        base64.b64encode(hashlib.sha1(content, usedforsecurity=False).digest()).decode(),
    )
    submission = example("pdsm/example/List-ExampleSubmissionSet.json", CDA_INS)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:00000000-0000-0000-0000-0000000000a1",
                "resource": submission,
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": "urn:uuid:00000000-0000-0000-0000-0000000000a2",
                "resource": docref,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": "http://example.org/fhir/Binary/6789",
                "resource": binary,
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }
    folder = example("pdsm/example/List-ExampleFolder.json", CDA_INS)
    folder["entry"] = [{"item": {"reference": "urn:uuid:00000000-0000-0000-0000-0000000000a2"}}]
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:00000000-0000-0000-0000-0000000000a3",
            "resource": folder,
            "request": {"method": "POST", "url": "List"},
        }
    )
    h = bearer(world, pro(world, CARDIOLOGIST))
    _ok(client.post("/fhir", json=bundle, headers=h))
    # ITI-66: both Lists are found, each pointing at the document.
    q = {"patient.identifier": f"urn:oid:{CDA_INS.oid}|{CDA_INS.value}"}
    for code in ("submissionset", "folder"):
        found = _ok(client.get("/fhir/List", params={**q, "code": code}, headers=h))
        Bundle.model_validate(found)
        assert found["total"] == 1
        assert len(found["entry"][0]["resource"]["entry"]) == 1
    # A caller who may see none of its documents does not see the List either.
    world.access(pro(world, NURSE)).declare_consent(CDA_INS)
    nurse = bearer(world, pro(world, NURSE))
    assert _ok(client.get("/fhir/List", params=q, headers=nurse))["total"] == 2
    doc_id = found["entry"][0]["resource"]["entry"][0]["item"]["reference"].split("/")[1]
    world.access(actors.patient_actor(world, CDA_INS)).update_document(
        CDA_INS, doc_id.split(".")[1], masked_ps=True
    )
    assert _ok(client.get("/fhir/List", params=q, headers=nurse))["total"] == 0


def test_patient_example_opens_a_record(client: TestClient, world: Runtime) -> None:
    from tests.factories import ins_for

    ins = ins_for(600)  # a man born in January 1980, as the example says (an INS agrees)
    patient = example("pdsm/example/Patient-fr-patient-123.json", ins)
    patient["identifier"] = [{"system": f"urn:oid:{ins.oid}", "value": ins.value}]
    patient["address"] = [{"postalCode": "37400", "city": "Amboise"}]
    h = bearer(world, pro(world, GP))
    r = client.post("/fhir/Patient", json=patient, headers=h)
    assert "consent" in _outcome(r, 422)
    patient["extension"] = [
        {
            "url": "https://dmp.example.org/fhir/StructureDefinition/dmp-consentement-ouverture",
            "valueBoolean": True,
        }
    ]
    body = _ok(client.post("/fhir/Patient", json=patient, headers=h), 201)
    Patient.model_validate(body)
    found = _ok(
        client.get(
            "/fhir/Patient",
            params={"identifier": f"urn:oid:{ins.oid}|{ins.value}"},
            headers=bearer(world, actors.patient_actor(world, ins)),
        )
    )
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["id"] == body["id"]


def _publish_cda(
    client: TestClient, world: Runtime, rel: str, tail: bytes = b"", **overrides: Any
) -> dict[str, Any]:
    content = cda_document(rel) + tail
    res: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient?identifier=urn:oid:{CDA_INS.oid}|{CDA_INS.value}"},
        "content": [
            {"attachment": {"contentType": "text/xml", "data": base64.b64encode(content).decode()}}
        ],
        **overrides,
    }
    r = client.post(
        "/fhir/DocumentReference", json=res, headers=bearer(world, pro(world, CARDIOLOGIST))
    )
    return {"status": r.status_code, "body": r.json()}


def test_iti105_without_metadata_takes_it_from_the_cda(client: TestClient, world: Runtime) -> None:
    out = _publish_cda(client, world, "lab-report")
    assert out["status"] == 201, out
    doc = out["body"]
    assert doc["type"]["coding"][0]["code"] == "11502-2"
    assert doc["content"][0]["attachment"]["title"].startswith("Compte rendu d")
    for rel in (
        "medical-summary",
        "vaccinations",
        "discharge-letter",
        "imaging",
        "reimbursement",
        "prescription",
        "unstructured",
    ):
        assert _publish_cda(client, world, rel)["status"] == 201, rel


def test_cda_about_another_patient_is_refused_whatever_the_subject_form(
    client: TestClient, world: Runtime
) -> None:
    """Defect: the CDA's patient was checked only for ``Patient?identifier=``; a subject given
    as ``Patient/<key>`` filed another patient's document in this record."""
    from tests.factories import ins_for

    other = ins_for(43)
    open_record(world, other)
    key = world.access(actors.patient_actor(world, other)).read_record(other).key
    out = _publish_cda(client, world, "lab-report", subject={"reference": f"Patient/{key}"})
    assert out["status"] == 422, out
    assert "another patient" in out["body"]["issue"][0]["diagnostics"]
    # Through the JSON API as well: the gate checks the content, not the route.
    body = {
        "type_code": "11502-2",
        "format_code": "urn:ihe:iti:xds-sd:text:2008",
        "mime_type": "text/xml",
        "title": "Biologie",
        "creation_time": "2026-01-05T10:00:00+01:00",
        "service_start": "2026-01-05T10:00:00+01:00",
        "content_base64": base64.b64encode(cda_document("lab-report")).decode(),
    }
    r = client.post(
        f"/api/records/{other.value}/documents",
        params={"oid": other.oid},
        json=body,
        headers=bearer(world, pro(world, CARDIOLOGIST)),
    )
    assert r.status_code == 422, r.text
    assert "another patient" in r.json()["message"]
    assert world.access(actors.patient_actor(world, other)).search_documents(other).total == 0


def test_cda_for_another_patient_or_type_is_refused(client: TestClient, world: Runtime) -> None:
    from tests.factories import ins_for

    other = ins_for(42)
    open_record(world, other)
    out = _publish_cda(
        client,
        world,
        "lab-report",
        subject={"reference": f"Patient?identifier=urn:oid:{other.oid}|{other.value}"},
    )
    assert out["status"] == 422
    assert "another patient" in out["body"]["issue"][0]["diagnostics"]
    out = _publish_cda(
        client,
        world,
        "lab-report",
        type={"coding": [{"system": "http://loinc.org", "code": "18748-4"}]},
    )
    assert out["status"] == 422
    assert "type code" in out["body"]["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "payload",
    [
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>',
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol2;</title></ClinicalDocument>',
        b'<ClinicalDocument xmlns="urn:hl7-org:v3">'
        + b"<a>" * 300
        + b"</a>" * 300
        + b"</ClinicalDocument>",
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><unclosed></ClinicalDocument>',
    ],
    ids=["xxe", "entity-expansion", "too-deep", "malformed"],
)
def test_hostile_cda_is_refused(client: TestClient, world: Runtime, payload: bytes) -> None:
    res = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient?identifier=urn:oid:{CDA_INS.oid}|{CDA_INS.value}"},
        "type": {"coding": [{"code": "11502-2"}]},
        "date": "2026-01-05T10:00:00+01:00",
        "content": [
            {
                "attachment": {
                    "contentType": "text/xml",
                    "title": "x",
                    "data": base64.b64encode(payload).decode(),
                }
            }
        ],
    }
    r = client.post(
        "/fhir/DocumentReference", json=res, headers=bearer(world, pro(world, CARDIOLOGIST))
    )
    assert _outcome(r, 422)
    assert "passwd" not in r.text


def _iti65(world: Runtime) -> dict[str, Any]:
    return example("pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", CDA_INS)  # type: ignore[no-any-return]


def _docref_entry(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "DocumentReference"
    )


def test_iti65_negatives(client: TestClient, world: Runtime) -> None:
    world.access(pro(world, CARDIOLOGIST)).declare_consent(CDA_INS)
    h = bearer(world, pro(world, CARDIOLOGIST))
    wrong_hash = _iti65(world)
    _docref_entry(wrong_hash)["content"][0]["attachment"]["hash"] = base64.b64encode(
        b"x" * 20
    ).decode()
    assert "Bundle.entry[1]" in _outcome(client.post("/fhir", json=wrong_hash, headers=h), 422)
    wrong_size = _iti65(world)
    _docref_entry(wrong_size)["content"][0]["attachment"]["size"] = 81
    assert "size" in _outcome(client.post("/fhir", json=wrong_size, headers=h), 422)
    broken = _iti65(world)
    _docref_entry(broken)["content"][0]["attachment"]["url"] = (
        "urn:uuid:ffffffff-0000-0000-0000-000000000009"
    )
    assert "does not resolve" in _outcome(client.post("/fhir", json=broken, headers=h), 422)
    unknown = json.loads(json.dumps(_iti65(world)).replace(CDA_INS.value, "180053700300148"))
    r = client.post("/fhir", json=unknown, headers=h)
    assert r.status_code in (404, 422)
    OperationOutcome.model_validate(r.json())
    not_bundle = {"resourceType": "Bundle", "type": "batch", "entry": []}
    _outcome(client.post("/fhir", json=not_bundle, headers=h), 400)
    _outcome(client.post("/fhir", content=b"{not json", headers=h), 400)
    # Nothing was stored by any of the refused bundles.
    search = _ok(
        client.get(
            "/fhir/DocumentReference",
            headers=h,
            params={"patient.identifier": f"urn:oid:{CDA_INS.oid}|{CDA_INS.value}"},
        )
    )
    assert search["total"] == 0


def test_oversized_body(client: TestClient, world: Runtime) -> None:
    r = client.post(
        "/fhir/DocumentReference",
        content=b"x" * (33 * 1024 * 1024),
        headers=bearer(world, pro(world, CARDIOLOGIST)),
    )
    assert _outcome(r, 413)


def test_search_retrieve_patch_delete(client: TestClient, world: Runtime) -> None:
    h = bearer(world, pro(world, CARDIOLOGIST))
    _ok(client.post("/fhir", json=_iti65(world), headers=h))
    _publish_cda(client, world, "imaging")
    q = {"patient.identifier": f"urn:oid:{CDA_INS.oid}|{CDA_INS.value}", "status": "current"}
    body = _ok(client.get("/fhir/DocumentReference", params=q, headers=h))
    Bundle.model_validate(body)
    assert body["total"] == 2  # no hidden window: the CDA of 2021 too (AC-15)
    self_link = parse_qs(urlsplit(body["link"][0]["url"]).query)
    assert self_link == {
        "patient.identifier": [q["patient.identifier"]],
        "status": ["current"],
        "_sort": ["-period"],  # the defaults applied are stated
        "_count": ["20"],
        "_offset": ["0"],
    }
    recent = client.get(
        "/fhir/DocumentReference", params={**q, "period": "ge2024-03-02"}, headers=h
    )
    assert _ok(recent)["total"] == 1  # the consumer's two-year search asks for it
    body = _ok(
        client.get("/fhir/DocumentReference", params={**q, "period": "ge2000-01-01"}, headers=h)
    )
    assert body["total"] == 2
    assert (
        _ok(
            client.get(
                "/fhir/DocumentReference",
                headers=h,
                params={**q, "period": "ge2000-01-01", "type": "http://loinc.org|18748-4"},
            )
        )["total"]
        == 1
    )
    assert (
        _ok(
            client.get(
                "/fhir/DocumentReference",
                headers=h,
                params={**q, "period": "ge2000-01-01", "_count": "1"},
            )
        )["link"][1]["relation"]
        == "next"
    )
    assert (
        _ok(client.get("/fhir/DocumentReference", headers=h, params={**q, "event": "X"}))["total"]
        == 0
    )
    doc = body["entry"][0]["resource"]
    # Retrieve: raw bytes, or a FHIR Binary by content negotiation.
    raw = client.get(f"/fhir/Binary/{doc['id']}", headers=h)
    assert raw.status_code == 200
    assert hashlib.sha1(raw.content, usedforsecurity=False).digest() == base64.b64decode(
        doc["content"][0]["attachment"]["hash"]
    )
    as_fhir = _ok(
        client.get(f"/fhir/Binary/{doc['id']}", headers={**h, "Accept": "application/fhir+json"})
    )
    assert base64.b64decode(as_fhir["data"]) == raw.content
    # PATCH: mask (JSON Patch), archive (FHIRPath Patch); anything else is 405.
    patch = [
        {
            "op": "add",
            "path": "/securityLabel/-",
            "value": {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/"
                        "TRE-A07-StatutVisibiliteDocument",
                        "code": "MASQUE_PS",
                    }
                ]
            },
        }
    ]
    masked = _ok(
        client.patch(
            f"/fhir/DocumentReference/{doc['id']}",
            json=patch,
            headers={**h, "Content-Type": "application/json-patch+json"},
        )
    )
    assert masked["meta"]["versionId"] == "2"
    archive = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "DocumentReference.extension"},
                    {"name": "value", "valueBoolean": True},
                ],
            }
        ],
    }
    archived = _ok(client.patch(f"/fhir/DocumentReference/{doc['id']}", json=archive, headers=h))
    assert archived["extension"][0]["valueBoolean"] is True
    stale = client.patch(
        f"/fhir/DocumentReference/{doc['id']}",
        json=patch,
        headers={**h, "Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'},
    )
    assert "version 3" in _outcome(stale, 412)
    bad = [{"op": "replace", "path": "/content/0/attachment/title", "value": "autre"}]
    _outcome(client.patch(f"/fhir/DocumentReference/{doc['id']}", json=bad, headers=h), 405)
    history = _ok(client.get(f"/fhir/DocumentReference/{doc['id']}/_history", headers=h))
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["3", "2", "1"]
    # Delete by someone else: 403 (they can see it); by the author: gone.
    world.access(pro(world, GP)).declare_consent(CDA_INS)
    gp = bearer(world, pro(world, GP))
    _outcome(
        client.delete(f"/fhir/DocumentReference/{doc['id']}", headers=gp), 404
    )  # masked for GP
    assert client.delete(f"/fhir/DocumentReference/{doc['id']}", headers=h).status_code == 204
    _outcome(client.get(f"/fhir/DocumentReference/{doc['id']}", headers=h), 404)


def test_scopes_and_tokens(client: TestClient, world: Runtime) -> None:
    world.access(pro(world, CARDIOLOGIST)).declare_consent(CDA_INS)
    q = {"patient.identifier": f"urn:oid:{CDA_INS.oid}|{CDA_INS.value}"}
    read_only = bearer(world, pro(world, CARDIOLOGIST), frozenset({"user/DocumentReference.rs"}))
    assert client.get("/fhir/DocumentReference", params=q, headers=read_only).status_code == 200
    r = client.post("/fhir", json=_iti65(world), headers=read_only)
    assert "scopes" in _outcome(r, 403)
    _outcome(client.get("/fhir/DocumentReference", params=q), 401)
    _outcome(
        client.get("/fhir/DocumentReference", params=q, headers={"Authorization": "Bearer x.y.z"}),
        401,
    )


def test_access_rules_hold_through_fhir(client: TestClient, world: Runtime) -> None:
    """Search and retrieve through FHIR obey the rules: consent, masking, blocking, hiding."""
    h = bearer(world, pro(world, CARDIOLOGIST))
    _ok(client.post("/fhir", json=_iti65(world), headers=h))
    q = {"patient.identifier": f"urn:oid:{CDA_INS.oid}|{CDA_INS.value}"}
    doc = _ok(client.get("/fhir/DocumentReference", params=q, headers=h))["entry"][0]["resource"]
    nurse = bearer(world, pro(world, NURSE))
    assert "consent" in _outcome(
        client.get("/fhir/DocumentReference", params=q, headers=nurse), 403
    )
    _outcome(client.get(f"/fhir/Binary/{doc['id']}", headers=nurse), 403)
    world.access(pro(world, GP)).declare_consent(CDA_INS)
    gp = bearer(world, pro(world, GP))
    assert _ok(client.get("/fhir/DocumentReference", params=q, headers=gp))["total"] == 1
    world.access(actors.patient_actor(world, CDA_INS)).update_document(
        CDA_INS, doc["id"].split(".")[1], masked_ps=True
    )
    hidden = client.get(f"/fhir/DocumentReference/{doc['id']}", headers=gp)
    missing = client.get(f"/fhir/DocumentReference/{doc['id'][:-4]}0000", headers=gp)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    assert _ok(client.get("/fhir/DocumentReference", params=q, headers=gp))["total"] == 0
    world.access(actors.patient_actor(world, CDA_INS)).block_professional(CDA_INS, GP)
    _outcome(client.get("/fhir/DocumentReference", params=q, headers=gp), 403)
    # Emergency mode carried by the token (as the VIHF assertion carries it).
    emergency = bearer(
        world,
        pro(world, NURSE),
        frozenset({"user/*.rs"}),
        purpose="bris_de_glace",
        justification="patient inconscient",
        patient=CDA_INS,
    )
    assert _ok(client.get("/fhir/DocumentReference", params=q, headers=emergency))["total"] == 0
    # The patient's history as AuditEvents, for the holder.
    events = _ok(
        client.get(
            "/fhir/AuditEvent",
            params=q,
            headers=bearer(world, actors.patient_actor(world, CDA_INS)),
        )
    )
    Bundle.model_validate(events)
    assert any(e["resource"]["outcome"] == "4" for e in events["entry"])
    world.access(actors.patient_actor(world, CDA_INS)).update_settings(
        CDA_INS, oppose_centre_15=True
    )
    consents = _ok(
        client.get(
            "/fhir/Consent", params=q, headers=bearer(world, actors.patient_actor(world, CDA_INS))
        )
    )
    # The GP's block and the centre-15 opposition deny; the cardiologist's consent permits.
    types = sorted(e["resource"]["provision"]["type"] for e in consents["entry"])
    assert types == ["deny", "deny", "permit"]
    purposes = [
        p["code"] for e in consents["entry"] for p in e["resource"]["provision"].get("purpose", [])
    ]
    assert purposes == ["centre_15"]
    for entry in consents["entry"]:
        Consent.model_validate(entry["resource"])


def test_doc_x_example_then_its_replacement(client: TestClient, world: Runtime) -> None:
    """DocumentReference-doc-x-id (content at a urn:oid: URL) published in a Bundle, then
    replaced by the replacement example."""
    doc_x = example("pdsm4dmp/DocumentReference-doc-x-id.json", CDA_INS)
    iti65 = _iti65(world)
    binary = next(
        e["resource"] for e in iti65["entry"] if e["resource"]["resourceType"] == "Binary"
    )
    submission = next(
        e["resource"] for e in iti65["entry"] if e["resource"]["resourceType"] == "List"
    )
    url = doc_x["content"][0]["attachment"]["url"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:00000000-0000-0000-0000-0000000000b1",
                "resource": submission,
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": "urn:uuid:00000000-0000-0000-0000-0000000000b2",
                "resource": doc_x,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {"fullUrl": url, "resource": binary, "request": {"method": "POST", "url": "Binary"}},
        ],
    }
    h = bearer(world, pro(world, CARDIOLOGIST))
    body = _ok(client.post("/fhir", json=bundle, headers=h))
    location = next(
        e["response"]["location"] for e in body["entry"] if "/DocumentReference/" in str(e)
    )
    doc_id = location.split("/DocumentReference/")[1].split("/")[0]
    replacement = example("pdsm4dmp/Bundle-example-td2-1-remplacement.json", CDA_INS)
    _ok(
        client.post("/fhir", content=json.dumps(replacement).replace("doc-x-id", doc_id), headers=h)
    )
    assert _ok(client.get(f"/fhir/DocumentReference/{doc_id}", headers=h))["status"] == "superseded"
    # The replacement's SNOMED CT facility type and practice setting come back with their
    # system (codes of another system than the national sets' are kept as sent).
    q = {"patient.identifier": f"urn:oid:{CDA_INS.oid}|{CDA_INS.value}"}
    current = _ok(client.get("/fhir/DocumentReference", params=q, headers=h))["entry"]
    context = current[0]["resource"]["context"]
    assert context["facilityType"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "22232009"}
    ]
    assert context["practiceSetting"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "394802001"}
    ]


INSEE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"


@pytest.mark.parametrize(
    ("address", "commune"),
    [
        # FR Core: the INSEE code on the address, as a Coding (or a string).
        ({"extension": [{"url": INSEE, "valueCoding": {"code": "37003"}}]}, "37003"),
        ({"extension": [{"url": INSEE, "valueString": "2A004"}]}, "2A004"),
        # A postal code serving one commune, or several with the city naming one of them.
        ({"postalCode": "75001"}, "75056"),
        ({"postalCode": "37400", "city": "LUSSAULT SUR LOIRE"}, "37138"),
        ({"postalCode": "37400", "city": "Amboise"}, "37003"),
    ],
)
def test_patient_commune_as_integrators_send_it(
    client: TestClient, world: Runtime, address: dict[str, Any], commune: str
) -> None:
    from tests.factories import ins_for

    ins = ins_for(660)  # a man born in January 1980, as the example says
    patient = example("pdsm/example/Patient-fr-patient-123.json", ins)
    patient["identifier"] = [{"system": f"urn:oid:{ins.oid}", "value": ins.value}]
    patient["address"] = [address]
    patient["extension"] = [
        {
            "url": "https://dmp.example.org/fhir/StructureDefinition/dmp-consentement-ouverture",
            "valueBoolean": True,
        }
    ]
    _ok(client.post("/fhir/Patient", json=patient, headers=bearer(world, pro(world, GP))), 201)
    holder = world.access(actors.patient_actor(world, ins))
    assert holder.read_record(ins).demographics.residence_commune == commune


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"address": [{"postalCode": "37400"}]}, "Patient.address[0].postalCode"),
        ({"address": [{"postalCode": "99999"}]}, "Patient.address[0].postalCode"),
        (
            {"address": [{"extension": [{"url": INSEE, "valueString": "20004"}]}]},
            "Patient.address[0].extension[0]",
        ),
        ({"address": []}, "Patient.address"),
        ({"name": [{"family": "EXEMPLE", "given": "abc"}]}, "Patient.name[0].given"),
        ({"birthDate": "1980-02-30"}, "Patient.birthDate"),
    ],
)
def test_patient_errors_name_the_element(
    client: TestClient, world: Runtime, change: dict[str, Any], named: str
) -> None:
    from tests.factories import ins_for

    ins = ins_for(43)
    patient = example("pdsm/example/Patient-fr-patient-123.json", ins)
    patient["identifier"] = [{"system": f"urn:oid:{ins.oid}", "value": ins.value}]
    patient["address"] = [{"postalCode": "37400", "city": "Amboise"}]
    patient.update(change)
    r = client.post("/fhir/Patient", json=patient, headers=bearer(world, pro(world, GP)))
    assert r.status_code == 422, r.text
    assert named in r.json()["issue"][0]["diagnostics"]


def test_a_published_cda_is_parsed_once(
    client: TestClient, world: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adapter reads the header for the metadata, the gate checks the declared XML, then
    the patient and type: one parse serves all three (issue 26)."""
    from dmp.domain import cda

    parses: list[int] = []
    real = cda.parse_xml

    def counted(content: bytes, what: str, max_depth: int = cda.MAX_DEPTH) -> Any:
        parses.append(len(content))
        return real(content, what, max_depth)

    monkeypatch.setattr(cda, "parse_xml", counted)
    unique = f"<!-- {uuid.uuid4()} -->".encode()  # bytes no other test sent
    out = _publish_cda(client, world, "discharge-letter", unique)
    assert out["status"] == 201, out
    assert len(parses) == 1
    # A document that fails a check is refused every time it is sent, read before or not.
    other = f"<!-- {uuid.uuid4()} -->".encode()
    lab = {"type": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]}}
    wrong = _publish_cda(client, world, "discharge-letter", other, **lab)
    assert wrong["status"] in (400, 422), wrong
    again = _publish_cda(client, world, "discharge-letter", other, **lab)
    assert again["status"] == wrong["status"]
