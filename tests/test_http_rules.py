"""The holder's controls and the access modes through HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.auth import actors
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins
from dmp.errors import InvalidInput
from dmp.identity.actor import Actor
from dmp.identity.tokens import issue_token
from dmp.runtime import Runtime
from dmp.stats import counters
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
    return {"Authorization": f"Bearer {actors.token_for(rt, actor)}", **extra}


def _document(**flags: object) -> dict[str, object]:
    return {
        "type_code": "11502-2",
        "format_code": "urn:ihe:iti:xds-sd:text:2008",
        "mime_type": "text/plain",
        "title": "Biologie",
        "creation_time": T0.isoformat(),
        "service_start": T0.isoformat(),
        "content_base64": base64.b64encode(b"x").decode(),
        **flags,
    }


def _deposit(client: TestClient, rt: Runtime, who: str, **flags: object) -> str:
    body = _document(**flags)
    r = client.post(f"{BASE}/documents", params=Q, json=body, headers=h(rt, pro(rt, who)))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_block_unblock_and_settings(client: TestClient, world: Runtime) -> None:
    holder = h(world, actors.patient_actor(world, INS))
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
    holder = h(world, actors.patient_actor(world, INS))
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


def _emergency(rt: Runtime, actor: Actor, why: str | None, patient: Ins | None = INS) -> str:
    """A token in emergency mode (bris de glace); the server refuses to issue one without a
    justification and a patient, so the claims are written here to test the gate itself."""
    claims: dict[str, object] = {"purpose": "bris_de_glace", "patient": patient}
    if why is not None:
        claims["justification"] = why
    token = issue_token(actor, rt.token_secret, now=rt.clock.now(), ttl_seconds=300, **claims)
    return f"Bearer {token}"


def test_emergency_mode_comes_from_the_token(client: TestClient, world: Runtime) -> None:
    doc = _deposit(client, world, CARDIOLOGIST)
    nurse = pro(world, NURSE)
    url = f"{BASE}/documents/{doc}"
    r = client.get(url, params=Q, headers={"Authorization": _emergency(world, nurse, None)})
    assert (r.status_code, r.json()["reason"]) == (403, "DENY_JUSTIFICATION_REQUIRED")
    why = "patiente inconsciente, détresse respiratoire"
    r = client.get(url, params=Q, headers={"Authorization": _emergency(world, nurse, why)})
    assert r.status_code == 200
    # The same kind of token without a patient opens nothing (one justification, one record).
    unbound = {"Authorization": _emergency(world, nurse, why, patient=None)}
    r = client.get(url, params=Q, headers=unbound)
    assert (r.status_code, r.json()["reason"]) == (403, "DENY_UNBOUND_EMERGENCY")
    history = client.get(
        f"{BASE}/history", params=Q, headers=h(world, actors.patient_actor(world, INS))
    ).json()["events"]
    assert any(e["action"] == "emergency.open" and e["purpose"] == "bris_de_glace" for e in history)


def test_an_emergency_token_opens_one_patient_only(client: TestClient, world: Runtime) -> None:
    other = ins_for(22)
    open_record(world, other)
    why = "patient inconscient"
    token = {"Authorization": _emergency(world, pro(world, NURSE), why)}
    assert client.get(f"{BASE}/documents", params=Q, headers=token).status_code == 200
    r = client.get(
        f"/api/records/{other.value}/documents", params={"oid": other.oid}, headers=token
    )
    assert (r.status_code, r.json()["reason"]) == (403, "DENY_OTHER_PATIENT")
    # Refused and audited in the other patient's trail.
    trail = world.access(actors.patient_actor(world, other)).history(other).items
    assert [(t.outcome, t.reason) for t in trail][:1] == [("denied", "DENY_OTHER_PATIENT")]
    with pytest.raises(InvalidInput, match="justification and the patient"):
        actors.token_for(world, pro(world, NURSE), purpose=PurposeOfUse.EMERGENCY)


def test_the_purpose_never_comes_from_a_header(client: TestClient, world: Runtime) -> None:
    """Defect: a header once switched any token into emergency mode on /api."""
    _deposit(client, world, CARDIOLOGIST)
    headers = h(world, pro(world, NURSE), **{"X-DMP-Purpose-Of-Use": "bris_de_glace"})
    headers["X-DMP-Justification"] = quote("urgence")
    r = client.get(f"{BASE}/documents", params=Q, headers=headers)
    assert r.status_code == 400
    assert "come from the token" in r.json()["message"]


def test_scopes_bind_the_json_api_too(client: TestClient, world: Runtime) -> None:
    """Defect: a SMART token limited to DocumentReference.rs deposited and declared consent
    through /api. The gate enforces scopes whichever API the request came through."""
    gp = pro(world, GP)
    scoped = issue_token(
        gp,
        world.token_secret,
        now=world.clock.now(),
        ttl_seconds=300,
        scopes=frozenset({"user/DocumentReference.rs"}),
    )
    headers = {"Authorization": f"Bearer {scoped}"}
    r = client.post(f"{BASE}/consents", params=Q, json={}, headers=headers)
    assert (r.status_code, r.json()["reason"]) == (403, "DENY_SCOPE")
    assert "user/Consent.c" in r.json()["message"]
    r = client.post(f"{BASE}/documents", params=Q, json=_document(), headers=headers)
    assert (r.status_code, r.json()["reason"]) == (403, "DENY_SCOPE")
    r = client.get(f"{BASE}/history", params=Q, headers=headers)
    assert (r.status_code, r.json()["reason"]) == (403, "DENY_SCOPE")
    # What the scopes allow still works (the rules decide: the GP reads).
    world.access(actors.patient_actor(world, INS)).update_settings(INS, medecin_traitant=GP)
    assert client.get(f"{BASE}/documents", params=Q, headers=headers).status_code == 200
    # Refusals for scope are audited in the patient's trail.
    trail = world.access(actors.patient_actor(world, INS)).history(INS, limit=100).items
    assert sum(t.reason == "DENY_SCOPE" for t in trail) == 3


def test_care_team_through_http(client: TestClient, world: Runtime) -> None:
    _deposit(client, world, CARDIOLOGIST)
    holder = h(world, actors.patient_actor(world, INS))
    gp = h(world, pro(world, GP))
    assert client.get(f"{BASE}/documents", params=Q, headers=gp).status_code == 403
    r = client.post(f"{BASE}/care-team", params=Q, json={"id_nat_ps": GP}, headers=holder)
    assert r.status_code == 204
    r = client.get(f"{BASE}/documents", params=Q, headers=gp)
    assert r.status_code == 200
    assert r.json()["total"] == 1


def test_account_activation_is_counted_once(client: TestClient, world: Runtime) -> None:
    from dmp.stats import figures as statistics

    holder = h(world, actors.patient_actor(world, INS))
    assert client.post(f"{BASE}/activation", params=Q, headers=holder).status_code == 204
    assert client.post(f"{BASE}/activation", params=Q, headers=holder).status_code == 204
    r = client.post(f"{BASE}/activation", params=Q, headers=h(world, pro(world, NURSE)))
    assert r.status_code == 403
    figures = {f.code: f for f in statistics.adoption(world).departements}
    assert figures["37"].activated == 1
    assert counters.verify_counters(world) == []
