"""SMART Backend Services authentication for API clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.auth import smart
from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.errors import InvalidInput
from dmp.jobs import clients
from dmp.runtime import Runtime
from tests.factories import CARDIOLOGIST, GP, HOSPITAL, ins_for, open_record
from tests.fhir_helpers import assertion, ec_key, example, rsa_key

TOKEN_URL = "http://testserver/fhir/auth/token"
INS = ins_for(61)


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    open_record(world, INS)
    with TestClient(create_app(world)) as c:
        yield c


def _exchange(client: TestClient, signed: str, scope: str = "user/DocumentReference.rs") -> Any:
    return client.post(
        TOKEN_URL,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": smart.ASSERTION_TYPE,
            "client_assertion": signed,
            "scope": scope,
        },
    )


def _now(rt: Runtime) -> float:
    return rt.clock.now().timestamp()


@pytest.mark.parametrize("make", [rsa_key, ec_key], ids=["RS384", "ES384"])
def test_token_exchange_and_use(client: TestClient, world: Runtime, make: Any) -> None:
    key, jwks = make()
    alg = jwks["keys"][0]["alg"]
    cid = clients.register_client(world, name="DPI Hôpital", structure_id=HOSPITAL, jwks=jwks)
    signed = assertion(key, jwks, cid, TOKEN_URL, alg=alg, now=_now(world), idnatps=CARDIOLOGIST)
    r = _exchange(client, signed)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "user/DocumentReference.rs"
    world.access(world_actor(world)).declare_consent(INS)
    h = {"Authorization": f"Bearer {body['access_token']}"}
    q = {"patient.identifier": f"urn:oid:{INS.oid}|{INS.value}"}
    assert client.get("/fhir/DocumentReference", params=q, headers=h).status_code == 200
    # Missing scope for publishing: a valid publication is refused by the gate, and audited.
    doc = example("pdsm/example/DocumentReference-PDSmSimplifiedExample.json", INS)
    r = client.post("/fhir/DocumentReference", json=doc, headers=h)
    assert r.status_code == 403
    assert "user/DocumentReference.c" in r.json()["issue"][0]["diagnostics"]
    # The access token is short-lived.
    clock = world.clock
    assert isinstance(clock, FixedClock)
    clock.advance(timedelta(seconds=301))
    assert client.get("/fhir/DocumentReference", params=q, headers=h).status_code == 401


def world_actor(rt: Runtime) -> Any:
    from tests.factories import pro

    return pro(rt, CARDIOLOGIST)


@pytest.fixture
def registered(world: Runtime) -> tuple[Any, dict[str, Any], str]:
    key, jwks = rsa_key()
    cid = clients.register_client(
        world,
        name="LGC",
        structure_id=HOSPITAL,
        jwks=jwks,
        scopes=frozenset({"user/DocumentReference.rs"}),
    )
    return key, jwks, cid


def test_replayed_assertion(client: TestClient, world: Runtime, registered: Any) -> None:
    key, jwks, cid = registered
    signed = assertion(key, jwks, cid, TOKEN_URL, now=_now(world), idnatps=CARDIOLOGIST)
    assert _exchange(client, signed).status_code == 200
    r = _exchange(client, signed)
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    assert "replay" in r.json()["error_description"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("expired", "expired"),
        ("too-long", "five minutes"),
        ("forged", "not accepted"),
        ("wrong-aud", "rejected"),
        # The same answer for both of each pair (issue 12: nobody learns who exists).
        ("unknown-professional", "not a professional of the client's structure"),
        ("other-structure", "not a professional of the client's structure"),
        ("no-professional", "acting professional"),
        ("emergency-without-justification", "justification"),
        ("hs256", "RS384 or ES384"),
        ("unknown-client", "not accepted"),
    ],
)
def test_refused_assertions(
    client: TestClient, world: Runtime, registered: Any, case: str, message: str
) -> None:
    key, jwks, cid = registered
    now = _now(world)
    claims: dict[str, Any] = {"idnatps": CARDIOLOGIST}
    kw: dict[str, Any] = {}
    aud = TOKEN_URL
    signing_key = key
    if case == "expired":
        kw["now"], kw["lifetime"] = now - 600, 60
    elif case == "too-long":
        kw["lifetime"] = 3600
    elif case == "forged":
        signing_key, _ = rsa_key()
    elif case == "wrong-aud":
        aud = "http://elsewhere/token"
    elif case == "unknown-professional":
        claims["idnatps"] = "899999999999"
    elif case == "other-structure":
        claims["idnatps"] = GP
    elif case == "no-professional":
        claims = {}
    elif case == "emergency-without-justification":
        claims["purpose_of_use"] = "bris_de_glace"
    kw.setdefault("now", now)
    if case == "hs256":
        signed = jwt.encode(
            {"iss": cid, "sub": cid, "aud": aud, "jti": "x", "exp": int(now) + 60, **claims},
            "secret-secret-secret-secret-secret-32",
            algorithm="HS256",
        )
    elif case == "unknown-client":
        signed = assertion(signing_key, jwks, "client-nobody", aud, **kw, **claims)
    else:
        signed = assertion(signing_key, jwks, cid, aud, **kw, **claims)
    r = _exchange(client, signed)
    assert r.status_code == 401, r.text
    assert message in r.json()["error_description"]


def test_scope_outside_the_registration(
    client: TestClient, world: Runtime, registered: Any
) -> None:
    key, jwks, cid = registered
    signed = assertion(key, jwks, cid, TOKEN_URL, now=_now(world), idnatps=CARDIOLOGIST)
    r = _exchange(client, signed, scope="user/DocumentReference.c")
    assert (r.status_code, r.json()["error"]) == (400, "invalid_scope")


def test_emergency_mode_travels_in_the_token(
    client: TestClient, world: Runtime, registered: Any
) -> None:
    key, jwks, cid = registered
    signed = assertion(
        key,
        jwks,
        cid,
        TOKEN_URL,
        now=_now(world),
        idnatps=CARDIOLOGIST,
        purpose_of_use="bris_de_glace",
        justification="arrêt cardiaque",
        patient=f"urn:oid:{INS.oid}|{INS.value}",
    )
    token = _exchange(client, signed).json()["access_token"]
    q = {"patient.identifier": f"urn:oid:{INS.oid}|{INS.value}"}
    r = client.get(
        "/fhir/DocumentReference", params=q, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200
    history = world.access(world_actor(world)).history(INS).items
    assert any(t.action == "emergency.open" for t in history)


def test_registration_refuses_private_keys_and_unknown_structures(world: Runtime) -> None:
    key, jwks = rsa_key()
    private = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    with pytest.raises(InvalidInput, match="private"):
        clients.register_client(world, name="x", structure_id=HOSPITAL, jwks={"keys": [private]})
    with pytest.raises(InvalidInput, match="not in the directory"):
        clients.register_client(world, name="x", structure_id="NOPE", jwks=jwks)
    with pytest.raises(InvalidInput, match="unknown scopes"):
        clients.register_client(
            world, name="x", structure_id=HOSPITAL, jwks=jwks, scopes=frozenset({"system/*.*"})
        )


def test_client_add_command(world: Runtime, settings: Settings, tmp_path: Path) -> None:
    _, jwks = ec_key()
    f = tmp_path / "jwks.json"
    f.write_text(json.dumps(jwks), encoding="utf-8")
    env = {**os.environ, "DMP_DATA_DIR": str(settings.data_dir)}
    if settings.database_url:
        env["DMP_DATABASE_URL"] = settings.database_url
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dmp.cli",
            "client",
            "add",
            "--name",
            "LGC",
            "--structure",
            HOSPITAL,
            "--jwks",
            str(f),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("client-")


def test_an_emergency_assertion_must_name_its_patient(
    client: TestClient, world: Runtime, registered: Any
) -> None:
    """Defect: one emergency token with one justification opened any number of records."""
    key, jwks, cid = registered
    claims = {"idnatps": CARDIOLOGIST, "purpose_of_use": "bris_de_glace", "justification": "x"}
    signed = assertion(key, jwks, cid, TOKEN_URL, now=_now(world), **claims)
    r = _exchange(client, signed)
    assert r.status_code == 401
    assert "patient" in r.json()["error_description"]


def test_the_token_endpoint_is_rate_limited_per_address(
    client: TestClient, world: Runtime, registered: Any
) -> None:
    key, jwks, cid = registered
    answers = []
    for _ in range(61):
        signed = assertion(key, jwks, cid, TOKEN_URL, now=_now(world), idnatps=CARDIOLOGIST)
        answers.append(_exchange(client, signed))
    assert [r.status_code for r in answers[:60]] == [200] * 60
    limited = answers[60]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert limited.json()["error"] == "slow_down"


@pytest.mark.parametrize(
    ("registered_scopes", "asked", "granted"),
    [
        # Narrowed to the registration, in the requested context.
        (
            {"user/DocumentReference.rs"},
            "user/DocumentReference.cruds",
            "user/DocumentReference.rs",
        ),
        ({"user/DocumentReference.rs"}, "user/*.rs", "user/DocumentReference.rs"),
        ({"user/*.cruds"}, "user/Binary.r user/List.s", "user/Binary.r user/List.s"),
        ({"user/*.rs"}, "user/DocumentReference.read", "user/DocumentReference.rs"),
        # system/ for a structure's software means the same as user/ (docs/api.md).
        (
            {"user/DocumentReference.rs"},
            "system/DocumentReference.rs",
            "system/DocumentReference.rs",
        ),
        ({"user/*.cruds"}, "system/*.rs", "system/*.rs"),
    ],
)
def test_requested_scopes_are_narrowed_to_the_registration(
    client: TestClient, world: Runtime, registered_scopes: set[str], asked: str, granted: str
) -> None:
    key, jwks = rsa_key()
    cid = clients.register_client(
        world, name="LGC", structure_id=HOSPITAL, jwks=jwks, scopes=frozenset(registered_scopes)
    )
    signed = assertion(key, jwks, cid, TOKEN_URL, now=_now(world), idnatps=CARDIOLOGIST)
    r = _exchange(client, signed, scope=asked)
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == granted
    # The token does what the answer says and no more (the patient gave no consent: what is
    # refused is refused by the scopes or by the rules, and the outcome says which).
    h = {"Authorization": f"Bearer {r.json()['access_token']}"}
    docs = client.get(
        f"/fhir/DocumentReference?patient.identifier=urn:oid:{INS.oid}|{INS.value}", headers=h
    )
    by_scope = "scopes do not allow" in docs.text
    assert by_scope == ("DocumentReference.rs" not in granted and "*.rs" not in granted), docs.text


@pytest.mark.parametrize(
    ("asked", "said"),
    [
        ("nonsense", "is not a SMART scope"),
        ("launch/patient", "is not a SMART scope"),
        ("openid fhirUser", "is not a SMART scope"),
        ("patient/DocumentReference.rs", "patient/ scopes are for apps"),
        ("user/Observation.rs", "not a resource served here"),
        ("user/DocumentReference.sr", "subset of cruds"),
        ("user/DocumentReference.c", "none of the requested scopes"),
        ("user/DocumentReference.rs nonsense", "is not a SMART scope"),
    ],
)
def test_scopes_outside_the_grammar_or_the_registration_are_invalid(
    client: TestClient, world: Runtime, registered: Any, asked: str, said: str
) -> None:
    key, jwks, cid = registered
    signed = assertion(key, jwks, cid, TOKEN_URL, now=_now(world), idnatps=CARDIOLOGIST)
    r = _exchange(client, signed, scope=asked)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_scope"), r.text
    assert said in r.json()["error_description"]


def test_smart_configuration_describes_the_token_endpoint(client: TestClient) -> None:
    r = client.get("/fhir/.well-known/smart-configuration")
    assert r.status_code == 200
    body = r.json()
    assert body["token_endpoint"] == "http://testserver/fhir/auth/token"
    assert (
        "client_credentials" in body["grant_types_supported"]
    )  # and the apps' (test_patient_apps)
    assert "private_key_jwt" in body["token_endpoint_auth_methods_supported"]
    assert set(body["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert "system/DocumentReference.rs" in body["scopes_supported"]
