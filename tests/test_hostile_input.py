"""Inputs that once answered 500 (issue 12, "no 500 on any input"): each now gets a clear 4xx
with the API's error body, and nothing stored changes. Run on SQLite and PostgreSQL (NUL bytes
and an over-long jti failed on PostgreSQL only)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.auth import actors, smart
from dmp.identity.actor import system_actor
from dmp.jobs import clients
from dmp.runtime import Runtime
from tests.factories import (
    CARDIOLOGIST,
    GP,
    HOSPITAL,
    T0,
    ins_for,
    new_document,
    open_record,
    pro,
)
from tests.fhir_helpers import assertion, ec_key, rsa_key

INS = ins_for(121)
TOKEN_URL = "http://testserver/fhir/auth/token"


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    open_record(world, INS)
    world.access(pro(world, GP)).declare_consent(INS)
    with TestClient(create_app(world), raise_server_exceptions=False) as c:
        yield c


def _h(rt: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {actors.token_for(rt, actors.professional_actor(rt, GP))}"}


def _fh(rt: Runtime) -> dict[str, str]:
    return {**_h(rt), "Content-Type": "application/fhir+json"}


PATIENT = f"urn:oid:{INS.oid}|{INS.value}"
DOCS = f"/api/records/{INS.value}/documents?oid={INS.oid}"
HISTORY = f"/api/records/{INS.value}/history?oid={INS.oid}"


@pytest.mark.parametrize(
    "url",
    [
        DOCS + "&service_from=2024-01-01T00:00:00",  # a naive datetime
        DOCS + f"&offset={2**63}",
        HISTORY + f"&offset={2**63}",
        f"/fhir/DocumentReference?patient.identifier={PATIENT}&_offset={2**63}",
        f"/fhir/AuditEvent?patient.identifier={PATIENT}&_offset={2**63}",
        f"/fhir/DocumentReference?patient.identifier={PATIENT}&period=9999-12-31",
        f"/fhir/DocumentReference?patient.identifier={PATIENT}&period=ge9999-12-31",
        f"/fhir/DocumentReference?patient.identifier={PATIENT}&date=le9999-12",
        f"/fhir/DocumentReference?patient.identifier={PATIENT}&identifier=a%00b",
    ],
)
def test_search_parameters_out_of_range_are_client_errors(
    client: TestClient, world: Runtime, url: str
) -> None:
    r = client.get(url, headers=_h(world))
    assert 400 <= r.status_code < 500, (url, r.status_code, r.text[:300])
    if url.startswith("/fhir"):
        assert r.json()["resourceType"] == "OperationOutcome"
    else:
        assert r.json()["error"] == "invalid"


def _deposit(**changes: Any) -> dict[str, Any]:
    content = b"texte"
    body: dict[str, Any] = {
        "type_code": "11488-4",
        "format_code": "urn:ihe:iti:xds-sd:text:2008",
        "mime_type": "text/plain",
        "title": "Compte rendu",
        "creation_time": T0.isoformat(),
        "service_start": T0.isoformat(),
        "content_base64": base64.b64encode(content).decode(),
        "size": len(content),
        "sha1": hashlib.sha1(content, usedforsecurity=False).hexdigest(),
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "changes",
    [
        {"title": "a\u0000b"},
        {"type_code": "11488-4\u0000"},
        {"unique_id": "1.2.3\u00004"},
    ],
)
def test_nul_characters_are_refused_and_nothing_is_stored(
    client: TestClient, world: Runtime, changes: dict[str, Any]
) -> None:
    r = client.post(DOCS, json=_deposit(**changes), headers=_h(world))
    assert r.status_code == 400, r.text
    assert "NUL" in r.json()["message"]
    assert world.access(system_actor("t")).search_documents(INS).total == 0


def test_a_closure_reason_with_a_nul_is_refused(client: TestClient, world: Runtime) -> None:
    holder = {
        "Authorization": f"Bearer {actors.token_for(world, actors.patient_actor(world, INS))}"
    }
    r = client.post(
        f"/api/records/{INS.value}/close?oid={INS.oid}", json={"reason": "x\u0000"}, headers=holder
    )
    assert r.status_code == 400
    assert world.access(system_actor("t")).read_record(INS).status == "active"


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Patient", "identifier": "x"},
        {"resourceType": "Patient", "identifier": [{"system": 1}]},
        {"resourceType": "Patient", "name": "x"},
        {"resourceType": "Patient", "name": [{"given": "abc"}]},
        {"resourceType": "Patient", "address": "x"},
        {"resourceType": "Patient", "extension": "x"},
        {"resourceType": "Patient", "birthDate": 5},
        {"resourceType": "Patient", "identifier": [None]},
    ],
)
def test_wrongly_shaped_patients_are_refused(
    client: TestClient, world: Runtime, body: dict[str, Any]
) -> None:
    r = client.post("/fhir/Patient", json=body, headers=_fh(world))
    assert r.status_code in (400, 422), (body, r.status_code, r.text[:300])
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "body",
    [
        [{"op": "replace", "path": "/securityLabel/0", "value": "x"}, "x"],
        {"op": "replace"},
        [{"op": "replace", "path": 5, "value": {}}],
        [{"op": "test"}],
    ],
)
def test_wrongly_shaped_patches_are_refused(client: TestClient, world: Runtime, body: Any) -> None:
    doc = world.access(pro(world, GP)).deposit_document(
        INS,
        new_document(T0),
        b"x",
    )
    from dmp.front.fhir_mapping import doc_fhir_id

    r = client.patch(
        f"/fhir/DocumentReference/{doc_fhir_id(doc)}",
        json=body,
        headers={**_h(world), "Content-Type": "application/json-patch+json"},
    )
    assert 400 <= r.status_code < 500, (body, r.status_code, r.text[:300])


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Consent", "patient": "x"},
        {"resourceType": "Consent", "provision": "x"},
        {"resourceType": "Consent", "patient": {"identifier": "x"}},
    ],
)
def test_wrongly_shaped_consents_are_refused(
    client: TestClient, world: Runtime, body: dict[str, Any]
) -> None:
    r = client.post("/fhir/Consent", json=body, headers=_fh(world))
    assert 400 <= r.status_code < 500, (body, r.status_code, r.text[:300])


def _exchange(client: TestClient, signed: str) -> Any:
    return client.post(
        TOKEN_URL,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": smart.ASSERTION_TYPE,
            "client_assertion": signed,
            "scope": "user/DocumentReference.rs",
        },
    )


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "tomorrow"},
        {"exp": [1, 2]},
        {"exp": 1e20},
        {"exp": True},
        {"jti": "j" * 129},
        {"jti": 5},
    ],
)
def test_token_endpoint_refuses_odd_claims(
    client: TestClient, world: Runtime, claims: dict[str, Any]
) -> None:
    key, jwks = rsa_key()
    cid = clients.register_client(world, name="DPI", structure_id=HOSPITAL, jwks=jwks)
    now = world.clock.now().timestamp()
    signed = assertion(key, jwks, cid, TOKEN_URL, now=now, idnatps=CARDIOLOGIST, **claims)
    r = _exchange(client, signed)
    assert r.status_code == 401, (claims, r.status_code, r.text)
    assert r.json()["error"] in ("invalid_client", "login")


def test_an_ec_client_sent_an_rs384_assertion_is_refused(
    client: TestClient, world: Runtime
) -> None:
    _, ec_jwks = ec_key()
    cid = clients.register_client(world, name="DPI", structure_id=HOSPITAL, jwks=ec_jwks)
    rsa_private, _ = rsa_key()
    now = int(world.clock.now().timestamp())
    signed = jwt.encode(
        {
            "iss": cid,
            "sub": cid,
            "aud": TOKEN_URL,
            "jti": "a",
            "exp": now + 60,
            "idnatps": CARDIOLOGIST,
        },
        rsa_private,
        algorithm="RS384",
        headers={"kid": ec_jwks["keys"][0]["kid"]},
    )
    r = _exchange(client, signed)
    assert r.status_code == 401, r.text


def test_a_chunked_body_over_the_limit_is_413(world: Runtime) -> None:
    """No Content-Length: the size is counted as the body arrives."""
    open_record(world, INS)
    with TestClient(create_app(world, max_body=1000), raise_server_exceptions=False) as c:

        def chunks() -> Iterator[bytes]:
            for _ in range(5):
                yield b"x" * 400

        json_body = {**_h(world), "Content-Type": "application/json"}
        r = c.post(DOCS, content=chunks(), headers=json_body)
        assert r.status_code == 413 and r.json()["error"] == "too-large"
        fhir_body = {**_h(world), "Content-Type": "application/fhir+json"}
        r = c.post("/fhir/DocumentReference", content=chunks(), headers=fhir_body)
        assert r.status_code == 413 and r.json()["resourceType"] == "OperationOutcome"


# -- issue 22, item 5: inputs that still answered 500, and headers that could be split --------

YEAR_ONE_EAST = "0001-01-01T00:00:00+14:00"  # before the calendar once in UTC
LAST_DAY_WEST = "9999-12-31T23:00:00-14:00"  # after it


@pytest.mark.parametrize(
    "changes",
    [{"creation_time": YEAR_ONE_EAST}, {"service_start": LAST_DAY_WEST}],
)
def test_times_beyond_the_calendar_in_utc_are_refused_at_deposit(
    client: TestClient, world: Runtime, changes: dict[str, Any]
) -> None:
    r = client.post(DOCS, json=_deposit(**changes), headers=_h(world))
    assert r.status_code == 422, r.text
    assert "outside the calendar" in r.json()["message"]
    assert world.access(system_actor("t")).search_documents(INS).total == 0


@pytest.mark.parametrize(
    "url",
    [
        DOCS + "&service_from=" + YEAR_ONE_EAST.replace("+", "%2B"),
        DOCS + "&service_to=" + LAST_DAY_WEST,
        f"/fhir/DocumentReference?patient.identifier={PATIENT}&date="
        + YEAR_ONE_EAST.replace("+", "%2B"),
        f"/fhir/DocumentReference?patient.identifier={PATIENT}&date=lt{LAST_DAY_WEST}",
        f"/fhir/DocumentReference?patient.identifier={PATIENT}&period=ge{LAST_DAY_WEST}",
    ],
)
def test_times_beyond_the_calendar_in_utc_are_refused_in_searches(
    client: TestClient, world: Runtime, url: str
) -> None:
    r = client.get(url, headers=_h(world))
    assert 400 <= r.status_code < 500, (url, r.status_code, r.text[:300])


@pytest.mark.parametrize("mime", ["text/plain\r\nX-Injected: 1", "text/\nplain", "pdf", "a/b c"])
def test_a_mime_type_that_would_split_a_header_is_refused(
    client: TestClient, world: Runtime, mime: str
) -> None:
    r = client.post(DOCS, json=_deposit(mime_type=mime), headers=_h(world))
    assert r.status_code == 422, r.text
    assert "MIME type" in r.json()["message"]
    assert world.access(system_actor("t")).search_documents(INS).total == 0


@pytest.mark.parametrize("title", ["Compte\r\nrendu", "Compte\nrendu", "a\u0007b"])
def test_a_title_with_control_characters_is_refused(
    client: TestClient, world: Runtime, title: str
) -> None:
    r = client.post(DOCS, json=_deposit(title=title), headers=_h(world))
    assert r.status_code == 422, r.text
    assert "control character" in r.json()["message"]


def test_a_document_content_of_the_wrong_shape_is_refused(
    client: TestClient, world: Runtime
) -> None:
    from tests.test_fhir import example

    simple = example(
        "pdsm4dmp/DocumentReference-example-td2-iti105-publication-simplifiee.json", INS
    )
    simple["content"] = ["x"]
    r = client.post("/fhir/DocumentReference", json=simple, headers=_fh(world))
    assert r.status_code == 422 and "content[0]" in r.text, r.text
    bundle = example("pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", INS)
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "DocumentReference":
            entry["resource"]["content"] = ["x"]
    r = client.post("/fhir", json=bundle, headers=_fh(world))
    assert r.status_code == 422 and "content[0]" in r.text, r.text
    assert world.access(system_actor("t")).search_documents(INS).total == 0


@pytest.mark.parametrize(
    "parameters",
    [
        "x",
        ["x"],
        [{"name": "operation", "part": "x"}],
        [{"name": "operation", "part": ["x"]}],
        [{"name": "operation", "part": [{"name": "type", "valueCode": 5}]}],
    ],
)
def test_fhirpath_patches_of_the_wrong_shape_are_refused(
    client: TestClient, world: Runtime, parameters: Any
) -> None:
    doc = world.access(pro(world, GP)).deposit_document(INS, new_document(T0), b"x")
    from dmp.front.fhir_mapping import doc_fhir_id

    r = client.patch(
        f"/fhir/DocumentReference/{doc_fhir_id(doc)}",
        json={"resourceType": "Parameters", "parameter": parameters},
        headers=_fh(world),
    )
    assert r.status_code == 422, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert world.access(system_actor("t")).read_document(INS, doc.logical_id).version == 1


@pytest.mark.parametrize("exp", ["soon", [1], True, 1e20])
def test_a_bearer_token_whose_exp_is_no_numeric_date_is_refused(
    client: TestClient, world: Runtime, exp: Any
) -> None:
    from dmp.identity import tokens

    now = int(world.clock.now().timestamp())
    claims = {"iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "sub": GP, "kind": "professional"}
    token = jwt.encode(
        {**claims, "jti": "j", "iat": now, "exp": exp}, world.token_secret, algorithm="HS256"
    )
    r = client.get(DOCS, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text


@pytest.mark.parametrize("kind", ["Nope", 5, None, ["Binary"]])
def test_a_resource_of_no_fhir_type_inside_a_submission_is_refused(
    client: TestClient, world: Runtime, kind: Any
) -> None:
    """``fhir.resources`` fails with a KeyError or a TypeError on such a nested resource: the
    answer is a 422 naming the place, never a 500."""
    from tests.test_fhir import example

    bundle = example("pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", INS)
    bundle["entry"][1]["resource"]["contained"] = [{"resourceType": kind, "id": "x"}]
    r = client.post("/fhir", json=bundle, headers=_fh(world))
    assert r.status_code == 422, r.text
    assert "Bundle.entry[1].resource.contained[0]" in r.text, r.text
    simple = example(
        "pdsm4dmp/DocumentReference-example-td2-iti105-publication-simplifiee.json", INS
    )
    simple["contained"] = [{"resourceType": kind}]
    r = client.post("/fhir/DocumentReference", json=simple, headers=_fh(world))
    assert r.status_code == 422 and "DocumentReference.contained[0]" in r.text, r.text
    assert world.access(system_actor("t")).search_documents(INS).total == 0


@pytest.mark.parametrize("url", [False, 5, {"x": 1}, ["a"]])
def test_a_url_that_is_no_string_is_refused(client: TestClient, world: Runtime, url: Any) -> None:
    """``fhir.resources`` fails with an AttributeError on a url element that is not a string
    (found by the compiled check's property test): a 422, never a 500."""
    from tests.test_fhir import example

    simple = example(
        "pdsm4dmp/DocumentReference-example-td2-iti105-publication-simplifiee.json", INS
    )
    simple["content"][0]["attachment"]["url"] = url
    r = client.post("/fhir/DocumentReference", json=simple, headers=_fh(world))
    assert r.status_code == 422 and "DocumentReference" in r.text, r.text
    assert world.access(system_actor("t")).search_documents(INS).total == 0
