"""The holder's controls and the access modes through HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from dmp.access import admin
from dmp.access.runtime import Runtime
from dmp.app import create_app
from dmp.identity.actor import Actor
from tests.factories import CARDIOLOGIST, GP, NURSE, T0, ins_for, open_record, pro

INS = ins_for(21)
BASE = f"/api/records/{INS.value}"
Q = {"oid": INS.oid}


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    open_record(world, INS)
    with TestClient(create_app(world)) as c:
        yield c


def h(rt: Runtime, actor: Actor, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin.token_for(rt, actor)}", **extra}


def _deposit(client: TestClient, rt: Runtime, who: str, **flags: object) -> str:
    body = {
        "type_code": "11502-2",
        "format_code": "urn:ihe:iti:xds-sd:text:2008",
        "mime_type": "text/plain",
        "title": "Biologie",
        "creation_time": T0.isoformat(),
        "service_start": T0.isoformat(),
        "content_base64": base64.b64encode(b"x").decode(),
        **flags,
    }
    r = client.post(f"{BASE}/documents", params=Q, json=body, headers=h(rt, pro(rt, who)))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_block_unblock_and_settings(client: TestClient, world: Runtime) -> None:
    holder = h(world, admin.patient_actor(world, INS))
    nurse = h(world, pro(world, NURSE))
    assert client.post(f"{BASE}/consents", params=Q, json={}, headers=nurse).status_code == 204
    assert (
        client.post(
            f"{BASE}/blocks", params=Q, json={"id_nat_ps": NURSE}, headers=holder
        ).status_code
        == 204
    )
    r = client.get(f"{BASE}/documents", params=Q, headers=nurse)
    assert (r.status_code, r.json()["reason"]) == (403, "DENY_BLOCKED")
    assert client.delete(f"{BASE}/blocks/{NURSE}", params=Q, headers=holder).status_code == 204
    assert client.get(f"{BASE}/documents", params=Q, headers=nurse).status_code == 200
    r = client.patch(
        f"{BASE}/settings",
        params=Q,
        headers=holder,
        json={"oppose_bris_de_glace": True, "medecin_traitant": GP},
    )
    assert r.status_code == 200
    assert r.json()["oppose_bris_de_glace"] is True
    assert r.json()["medecin_traitant"] == GP
    # A professional cannot change the holder's settings.
    r = client.patch(f"{BASE}/settings", params=Q, headers=nurse, json={"mask_all": True})
    assert r.status_code == 403
    r = client.patch(f"{BASE}/settings", params=Q, headers=holder, json={})
    assert r.status_code == 422


def test_mask_and_delete_documents(client: TestClient, world: Runtime) -> None:
    doc = _deposit(client, world, CARDIOLOGIST)
    holder = h(world, admin.patient_actor(world, INS))
    nurse = h(world, pro(world, NURSE))
    client.post(f"{BASE}/consents", params=Q, json={}, headers=nurse)
    assert client.get(f"{BASE}/documents/{doc}", params=Q, headers=nurse).status_code == 200
    r = client.patch(f"{BASE}/documents/{doc}", params=Q, json={"masked_ps": True}, headers=holder)
    assert r.status_code == 200
    assert r.json()["version"] == 2
    assert "MASQUE_PS" in r.json()["confidentiality"]
    assert client.get(f"{BASE}/documents/{doc}", params=Q, headers=nurse).status_code == 404
    r = client.delete(f"{BASE}/documents/{doc}", params=Q, headers=holder)
    assert (r.status_code, r.json()["reason"]) == (403, "DENY_NOT_AUTHOR")
    cardio = h(world, pro(world, CARDIOLOGIST))
    assert client.delete(f"{BASE}/documents/{doc}", params=Q, headers=cardio).status_code == 204
    assert client.get(f"{BASE}/documents/{doc}", params=Q, headers=holder).status_code == 404


def test_emergency_mode_through_headers(client: TestClient, world: Runtime) -> None:
    doc = _deposit(client, world, CARDIOLOGIST)
    nurse = pro(world, NURSE)
    r = client.get(
        f"{BASE}/documents/{doc}",
        params=Q,
        headers=h(world, nurse, **{"X-DMP-Purpose-Of-Use": "bris_de_glace"}),
    )
    assert (r.status_code, r.json()["reason"]) == (403, "DENY_JUSTIFICATION_REQUIRED")
    why = quote("patiente inconsciente, détresse respiratoire")
    r = client.get(
        f"{BASE}/documents/{doc}",
        params=Q,
        headers=h(
            world, nurse, **{"X-DMP-Purpose-Of-Use": "bris_de_glace", "X-DMP-Justification": why}
        ),
    )
    assert r.status_code == 200
    r = client.get(
        f"{BASE}/documents",
        params=Q,
        headers=h(world, nurse, **{"X-DMP-Purpose-Of-Use": "BRIS_DE_GLACE"}),
    )
    assert r.status_code == 200
    r = client.get(
        f"{BASE}/documents",
        params=Q,
        headers=h(world, nurse, **{"X-DMP-Purpose-Of-Use": "curiosity"}),
    )
    assert r.status_code == 422
    assert "purpose of use" in r.json()["message"]
    history = client.get(
        f"{BASE}/history", params=Q, headers=h(world, admin.patient_actor(world, INS))
    ).json()["events"]
    assert any(e["action"] == "emergency.open" and e["purpose"] == "bris_de_glace" for e in history)


def test_care_team_through_http(client: TestClient, world: Runtime) -> None:
    _deposit(client, world, CARDIOLOGIST)
    holder = h(world, admin.patient_actor(world, INS))
    gp = h(world, pro(world, GP))
    assert client.get(f"{BASE}/documents", params=Q, headers=gp).status_code == 403
    r = client.post(f"{BASE}/care-team", params=Q, json={"id_nat_ps": GP}, headers=holder)
    assert r.status_code == 204
    r = client.get(f"{BASE}/documents", params=Q, headers=gp)
    assert r.status_code == 200
    assert r.json()["total"] == 1


def test_account_activation_is_counted_once(client: TestClient, world: Runtime) -> None:
    from dmp.access import statistics

    holder = h(world, admin.patient_actor(world, INS))
    assert client.post(f"{BASE}/activation", params=Q, headers=holder).status_code == 204
    assert client.post(f"{BASE}/activation", params=Q, headers=holder).status_code == 204
    r = client.post(f"{BASE}/activation", params=Q, headers=h(world, pro(world, NURSE)))
    assert r.status_code == 403
    figures = {f.code: f for f in statistics.adoption(world).departements}
    assert figures["37"].activated == 1
    assert statistics.verify_counters(world) == []
