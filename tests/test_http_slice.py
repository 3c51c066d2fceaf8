"""The vertical slice through HTTP: open a record, deposit, consent, read, see it in the history."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.auth import actors
from dmp.clock import FixedClock
from dmp.identity.actor import Actor
from dmp.jobs import maintenance
from dmp.runtime import Runtime
from tests.factories import CARDIOLOGIST, GP, NURSE, T0, desk, ins_for, pro

INS = ins_for(7)
BASE = f"/api/records/{INS.value}"
Q = {"oid": INS.oid}


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(world)) as c:
        yield c


def auth(rt: Runtime, actor: Actor) -> dict[str, str]:
    return {"Authorization": f"Bearer {actors.token_for(rt, actor)}"}


def _open(client: TestClient, rt: Runtime) -> None:
    body = {
        "ins": {"oid": INS.oid, "value": INS.value},
        "demographics": {
            "birth_family_name": "EXEMPLE",
            "given_names": "ALIX",
            "sex": "F",
            "birth_date": "1987-08-12",  # as INS (ins_for(7)) encodes them
            "residence_commune": "37003",
        },
        "channel": "pharmacy",
        "patient_consent": True,
    }
    r = client.post("/api/records", json=body, headers=auth(rt, desk()))
    assert r.status_code == 201, r.text
    assert r.json()["departement"] == "37"


def _document(content: bytes) -> dict[str, object]:
    return {
        "type_code": "11502-2",
        "format_code": "urn:ihe:iti:xds-sd:text:2008",
        "mime_type": "text/plain",
        "title": "Compte rendu de biologie",
        "creation_time": T0.isoformat(),
        "service_start": T0.isoformat(),
        "content_base64": base64.b64encode(content).decode(),
        "size": len(content),
        "sha1": hashlib.sha1(content, usedforsecurity=False).hexdigest(),
    }


def test_health(client: TestClient, world: Runtime) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["database"]["engine"] == world.engine.dialect.name
    assert body["database"]["migration"] == body["database"]["expected_migration"] is not None


def test_vertical_slice(client: TestClient, world: Runtime) -> None:
    _open(client, world)
    gp, cardio, nurse = pro(world, GP), pro(world, CARDIOLOGIST), pro(world, NURSE)
    patient = actors.patient_actor(world, INS)

    # The cardiologist deposits without read authorisation (AC-10).
    r = client.post(
        f"{BASE}/documents", params=Q, json=_document(b"TSH 2.1 mUI/L"), headers=auth(world, cardio)
    )
    assert r.status_code == 201, r.text
    doc_id = r.json()["id"]

    # The GP has no consent yet: refused with the reason.
    r = client.get(f"{BASE}/documents", params=Q, headers=auth(world, gp))
    assert r.status_code == 403
    assert r.json()["reason"] == "DENY_NO_CONSENT"

    # The GP declares the patient's consent, then searches and reads.
    assert (
        client.post(f"{BASE}/consents", params=Q, json={}, headers=auth(world, gp)).status_code
        == 204
    )
    r = client.get(f"{BASE}/documents", params=Q, headers=auth(world, gp))
    assert r.status_code == 200
    assert r.json()["total"] == 1
    assert r.json()["documents"][0]["id"] == doc_id
    r = client.get(f"{BASE}/documents/{doc_id}/content", params=Q, headers=auth(world, gp))
    assert r.status_code == 200
    assert r.content == b"TSH 2.1 mUI/L"
    assert r.headers["content-type"].startswith("text/plain")

    # A nurse without consent is refused.
    r = client.get(f"{BASE}/documents/{doc_id}/content", params=Q, headers=auth(world, nurse))
    assert r.status_code == 403

    # The patient sees every access, the refusals included, newest first.
    r = client.get(f"{BASE}/history", params=Q, headers=auth(world, patient))
    assert r.status_code == 200
    events = r.json()["events"]
    seen = [(e["actor"]["id"], e["action"], e["outcome"], e["reason"]) for e in events]
    assert seen == [
        (NURSE, "document.read", "denied", "DENY_NO_CONSENT"),
        (GP, "document.read", "success", "ALLOW_CONSENT"),
        (GP, "document.search", "success", "ALLOW_CONSENT"),
        (GP, "consent.declare", "success", "ALLOW_CONSENT_DECLARATION"),
        (GP, "document.search", "denied", "DENY_NO_CONSENT"),
        (CARDIOLOGIST, "document.create", "success", "ALLOW_CARE_DEPOSIT"),
        ("desk-1", "record.open", "success", "ALLOW_OPEN"),
    ]
    assert events[2]["documents"] == [doc_id]
    assert events[1]["target"] == doc_id

    # The professional reads only their own traces.
    r = client.get(f"{BASE}/history", params=Q, headers=auth(world, gp))
    assert {e["actor"]["id"] for e in r.json()["events"]} == {GP}
    assert maintenance.verify_audit(world).ok


def test_patient_reads_own_record_but_not_another(client: TestClient, world: Runtime) -> None:
    _open(client, world)
    patient = actors.patient_actor(world, INS)
    r = client.get(BASE, params=Q, headers=auth(world, patient))
    assert r.status_code == 200
    assert r.json()["demographics"]["given_names"] == "ALIX"
    other = actors.patient_actor(world, ins_for(8))
    r = client.get(BASE, params=Q, headers=auth(world, other))
    assert r.status_code == 404


def test_hidden_and_missing_documents_look_the_same(client: TestClient, world: Runtime) -> None:
    _open(client, world)
    gp = pro(world, GP)
    client.post(f"{BASE}/consents", params=Q, json={}, headers=auth(world, gp))
    masked = {**_document(b"masque"), "masked_ps": True}
    doc_id = client.post(
        f"{BASE}/documents", params=Q, json=masked, headers=auth(world, pro(world, CARDIOLOGIST))
    ).json()["id"]
    hidden = client.get(f"{BASE}/documents/{doc_id}", params=Q, headers=auth(world, gp))
    missing = client.get(f"{BASE}/documents/{'0' * 32}", params=Q, headers=auth(world, gp))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    # Having deposited gives the author no reading (AC-10); with the patient's consent the
    # author sees their masked document (AC-6), which others still cannot.
    author = auth(world, pro(world, CARDIOLOGIST))
    r = client.get(f"{BASE}/documents/{doc_id}", params=Q, headers=author)
    assert (r.status_code, r.json()["reason"]) == (403, "DENY_NO_CONSENT")
    client.post(f"{BASE}/consents", params=Q, json={}, headers=author)
    r = client.get(f"{BASE}/documents/{doc_id}", params=Q, headers=author)
    assert r.status_code == 200


def test_closed_record_refuses_professionals(client: TestClient, world: Runtime) -> None:
    _open(client, world)
    patient = actors.patient_actor(world, INS)
    r = client.post(
        f"{BASE}/close", params=Q, json={"reason": "choix du patient"}, headers=auth(world, patient)
    )
    assert r.status_code == 204
    r = client.post(
        f"{BASE}/documents", params=Q, json=_document(b"x"), headers=auth(world, pro(world, GP))
    )
    assert r.status_code == 403
    assert r.json()["reason"] == "DENY_RECORD_CLOSED"
    assert "2026-03-02" in r.json()["message"]


@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 401), ("Bearer", 401), ("Bearer not-a-token", 401), ("Basic dXNlcjpwYXNz", 401)],
)
def test_authentication_is_required(client: TestClient, header: str | None, status: int) -> None:
    headers = {"Authorization": header} if header else {}
    r = client.get(f"{BASE}/documents", params=Q, headers=headers)
    assert r.status_code == status
    assert r.headers["www-authenticate"] == "Bearer"


def test_expired_and_forged_tokens(client: TestClient, world: Runtime) -> None:
    _open(client, world)
    gp = pro(world, GP)
    token = actors.token_for(world, gp, ttl_seconds=60)
    assert isinstance(world.clock, FixedClock)
    world.clock.advance(timedelta(seconds=61))
    r = client.get(f"{BASE}/documents", params=Q, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert "expired" in r.json()["message"]
    head, payload, sig = actors.token_for(world, gp).split(".")
    forged = f"{head}.{payload}.{sig[:-4]}AAAA"
    r = client.get(f"{BASE}/documents", params=Q, headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


def test_bad_input_gets_clear_errors(client: TestClient, world: Runtime) -> None:
    _open(client, world)
    cardio = auth(world, pro(world, CARDIOLOGIST))
    bad_hash = {**_document(b"abc"), "sha1": "0" * 40}
    r = client.post(f"{BASE}/documents", params=Q, json=bad_hash, headers=cardio)
    assert r.status_code == 422
    assert "hash" in r.json()["message"]
    r = client.post(
        f"{BASE}/documents", params=Q, json={**_document(b"abc"), "size": 4}, headers=cardio
    )
    assert r.status_code == 422
    r = client.post(
        f"{BASE}/documents", params=Q, json={**_document(b"abc"), "type_code": "XX"}, headers=cardio
    )
    assert r.status_code == 422
    assert "not in JDV_J07-XdsTypeCode-CISIS" in r.json()["message"]  # the national set
    r = client.post(f"{BASE}/documents", params=Q, json={"title": "x"}, headers=cardio)
    assert r.status_code == 422
    r = client.get("/api/records/123/documents", headers=cardio)
    assert r.status_code == 422
    assert "15 characters" in r.json()["message"]
    # Nothing stored by the failed attempts.
    gp = pro(world, GP)
    client.post(f"{BASE}/consents", params=Q, json={}, headers=auth(world, gp))
    assert client.get(f"{BASE}/documents", params=Q, headers=auth(world, gp)).json()["total"] == 0


def test_oversized_body_is_refused(client: TestClient, world: Runtime) -> None:
    r = client.post(
        f"{BASE}/documents",
        params=Q,
        content=b"x" * (33 * 1024 * 1024),
        headers={**auth(world, pro(world, GP)), "content-type": "application/json"},
    )
    assert r.status_code == 413


def test_record_opened_twice_is_a_conflict(client: TestClient, world: Runtime) -> None:
    _open(client, world)
    body = {
        "ins": {"oid": INS.oid, "value": INS.value},
        "demographics": {
            "birth_family_name": "AUTRE",
            "given_names": "X",
            "sex": "F",
            "birth_date": "1987-08-30",
            "residence_commune": "37003",
        },
        "channel": "pharmacy",
        "patient_consent": True,
    }
    r = client.post("/api/records", json=body, headers=auth(world, desk()))
    assert r.status_code == 409
    r = client.post(
        "/api/records", json={**body, "patient_consent": False}, headers=auth(world, desk())
    )
    assert r.status_code in (409, 422)
