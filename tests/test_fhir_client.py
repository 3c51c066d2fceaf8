"""An independent FHIR client library (fhirclient) against a real server on loopback:
publish, search, retrieve, replace, mask, search again."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import UTC, datetime

from fhirclient import client as fhir_client
from fhirclient.models.binary import Binary
from fhirclient.models.bundle import Bundle
from fhirclient.models.documentreference import DocumentReference

from dmp.identity.actor import Actor
from dmp.identity.tokens import issue_token
from dmp.runtime import Runtime
from tests.factories import CARDIOLOGIST, NURSE, ins_for, open_record, pro

INS = ins_for(71)


def _token(rt: Runtime, actor: Actor) -> str:
    """The server runs on the real clock, not the tests' fixed one."""
    return issue_token(actor, rt.token_secret, now=datetime.now(UTC), ttl_seconds=600)


def _client(url: str, token: str) -> fhir_client.FHIRClient:
    smart = fhir_client.FHIRClient(settings={"app_id": "dmp-tests", "api_base": url})
    smart.server.session.headers["Authorization"] = f"Bearer {token}"
    return smart


def _docref(content: bytes, title: str) -> DocumentReference:
    doc = DocumentReference(
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "masterIdentifier": {
                "system": "urn:ietf:rfc:3986",
                "value": f"urn:uuid:{os.urandom(16).hex()}",
            },
            "type": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]},
            "subject": {"reference": f"Patient?identifier=urn:oid:{INS.oid}|{INS.value}"},
            "date": "2026-03-01T10:00:00+01:00",
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "title": title,
                        "data": base64.b64encode(content).decode(),
                        "size": len(content),
                        "hash": base64.b64encode(
                            hashlib.sha1(content, usedforsecurity=False).digest()
                        ).decode(),
                    }
                }
            ],
        }
    )
    return doc


def test_independent_client_round_trip(world: Runtime, server_url: str) -> None:
    open_record(world, INS)
    world.access(pro(world, CARDIOLOGIST)).declare_consent(INS)
    token = _token(world, pro(world, CARDIOLOGIST))
    smart = _client(server_url, token)
    server = smart.server
    assert server.request_json("metadata")["resourceType"] == "CapabilityStatement"

    # Publish (ITI-105).
    created = DocumentReference(
        server.post_json("DocumentReference", _docref(b"TSH 2,1", "Biologie v1").as_json()).json()
    )
    assert created.id

    # Search (ITI-67), parsed by the client's own models.
    query = f"DocumentReference?patient.identifier=urn:oid:{INS.oid}|{INS.value}&status=current"
    found = Bundle(server.request_json(query))
    assert found.total == 1
    assert found.entry[0].resource.id == created.id

    # Retrieve (ITI-68): the client asks for FHIR JSON and gets a Binary resource.
    binary = Binary(server.request_json(f"Binary/{created.id}"))
    assert base64.b64decode(binary.data) == b"TSH 2,1"
    raw = server.session.get(f"{server_url}Binary/{created.id}", headers={"Accept": "*/*"})
    assert raw.content == b"TSH 2,1"

    # Replace (ITI-105 with relatesTo replaces).
    v2 = _docref(b"TSH 2,3", "Biologie v2").as_json()
    v2["relatesTo"] = [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{created.id}"}}
    ]
    replaced = DocumentReference(server.post_json("DocumentReference", v2).json())
    old = DocumentReference(server.request_json(f"DocumentReference/{created.id}"))
    assert old.status == "superseded"

    # Mask (PDSm metadata update by PATCH, through the client's HTTP session).
    res = server.session.patch(
        f"{server_url}DocumentReference/{replaced.id}",
        json=[
            {"op": "add", "path": "/securityLabel/-", "value": {"coding": [{"code": "MASQUE_PS"}]}}
        ],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert res.status_code == 200, res.text
    assert DocumentReference(res.json()).meta.versionId == "2"

    # Search again: the author still sees both; a nurse with consent sees none of the masked one.
    again = Bundle(
        server.request_json(query.replace("status=current", "status=current,superseded"))
    )
    assert {e.resource.id for e in again.entry} == {created.id, replaced.id}
    world.access(pro(world, NURSE)).declare_consent(INS)
    nurse = _client(server_url, _token(world, pro(world, NURSE))).server
    seen = Bundle(nurse.request_json(query.replace("status=current", "status=current,superseded")))
    assert [e.resource.id for e in seen.entry or []] == [created.id]
