"""The PDSm profiles: what the server returns for a complete publication claims them and meets
them (every other test checks every response against what it claims, tests/conftest.py); and
the validator itself catches what it must."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.domain.ins import Ins
from dmp.runtime import Runtime
from tests import profiles
from tests.cda_fixtures import CDA_PATIENT
from tests.factories import CARDIOLOGIST, open_record, pro
from tests.fhir_helpers import bearer, example

CDA_INS = Ins(*CDA_PATIENT)
DOCREF = profiles.PDSM + "pdsm-comprehensive-document-reference"
SUBMISSION = profiles.PDSM + "pdsm-submissionset-comprehensive"


@pytest.fixture
def published(world: Runtime) -> Iterator[tuple[TestClient, dict[str, str]]]:
    open_record(world, CDA_INS)
    world.access(pro(world, CARDIOLOGIST)).declare_consent(CDA_INS)
    h = bearer(world, pro(world, CARDIOLOGIST))
    with TestClient(create_app(world)) as client:
        bundle = example("pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", CDA_INS)
        assert client.post("/fhir", json=bundle, headers=h).status_code == 200
        yield client, h


def _claims(resource: dict[str, Any]) -> list[str]:
    return list((resource.get("meta") or {}).get("profile") or [])


def test_a_complete_publication_claims_and_meets_the_profiles(
    published: tuple[TestClient, dict[str, str]],
) -> None:
    client, h = published
    q = {"patient.identifier": f"urn:oid:{CDA_INS.oid}|{CDA_INS.value}"}
    docs = client.get("/fhir/DocumentReference", params=q, headers=h).json()
    lists = client.get("/fhir/List", params=q, headers=h).json()
    assert _claims(docs) == [profiles.PDSM + "pdsm-find-documentreferences-comprehensive-response"]
    assert _claims(lists) == [profiles.PDSM + "pdsm-find-lists-response"]
    doc = docs["entry"][0]["resource"]
    assert _claims(doc) == [DOCREF]
    assert _claims(lists["entry"][0]["resource"]) == [SUBMISSION]
    read = client.get(f"/fhir/DocumentReference/{doc['id']}", headers=h).json()
    for resource in (docs, lists, read):
        assert profiles.claimed_problems(resource) == []


def test_the_validator_catches_what_breaks_a_profile(
    published: tuple[TestClient, dict[str, str]],
) -> None:
    client, h = published
    q = {"patient.identifier": f"urn:oid:{CDA_INS.oid}|{CDA_INS.value}"}
    doc = client.get("/fhir/DocumentReference", params=q, headers=h).json()["entry"][0]["resource"]
    the_list = client.get("/fhir/List", params=q, headers=h).json()["entry"][0]["resource"]
    broken = copy.deepcopy(doc)
    del broken["masterIdentifier"]  # 1..1
    assert any("masterIdentifier" in p for p in profiles.validate(broken, DOCREF))
    broken = copy.deepcopy(doc)
    broken["content"].append(broken["content"][0])  # content 1..1
    assert any("DocumentReference.content:" in p for p in profiles.validate(broken, DOCREF))
    broken = copy.deepcopy(the_list)
    broken["mode"] = "snapshot"  # pattern "working"
    assert any("List.mode" in p for p in profiles.validate(broken, SUBMISSION))
    broken = copy.deepcopy(the_list)
    broken["extension"] = [
        e for e in broken["extension"] if not e["url"].endswith("ihe-sourceId")
    ]  # the sourceId slice is 1..1
    assert any("extension:sourceId" in p for p in profiles.validate(broken, SUBMISSION))
    folder = copy.deepcopy(the_list)
    folder["code"]["coding"][0]["code"] = "folder"  # a Folder has no source (0..0)
    assert any(
        "List.source" in p
        for p in profiles.validate(folder, profiles.PDSM + "pdsm-folder-comprehensive")
    )


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        # required bindings: the MHD set (narrower than FHIR's), FHIR core sets, MIME types
        (("status",), "entered-in-error", "DocumentReference.status"),
        (("relatesTo",), [{"code": "copies", "target": {"reference": "x"}}], "relatesTo.code"),
        (("content", 0, "attachment", "contentType"), "pdf", "contentType"),
        # preferred / extensible bindings to the national sets: their systems' codes only
        (
            ("type",),
            {"coding": [{"system": "http://loinc.org", "code": "00000-0"}]},
            "DocumentReference.type",
        ),
        (
            ("type",),
            {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "CR"}]},
            "displayed 'CR'",
        ),
        (
            ("context", "practiceSetting"),
            {"coding": [{"system": "urn:oid:1.2.250.1.213.1.1.4.9", "code": "NOPE"}]},
            "practiceSetting",
        ),
        (("securityLabel", 0, "coding", 0, "code"), "X", "securityLabel"),
    ],
)
def test_the_validator_checks_bindings(
    published: tuple[TestClient, dict[str, str]],
    path: tuple[str | int, ...],
    value: Any,
    named: str,
) -> None:
    client, h = published
    q = {"patient.identifier": f"urn:oid:{CDA_INS.oid}|{CDA_INS.value}"}
    doc = client.get("/fhir/DocumentReference", params=q, headers=h).json()["entry"][0]["resource"]
    assert profiles.validate(doc, DOCREF) == []
    broken = copy.deepcopy(doc)
    node: Any = broken
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    problems = profiles.validate(broken, DOCREF)
    assert any(named in p for p in problems), problems


def test_a_required_binding_the_validator_cannot_resolve_is_a_problem() -> None:
    element = {
        "id": "DocumentReference.x",
        "path": "DocumentReference.x",
        "binding": {"strength": "required", "valueSet": "http://example.org/ValueSet/unknown"},
    }
    assert profiles._binding(element, ["a"], {}) == [
        "DocumentReference.x: the required value set http://example.org/ValueSet/unknown "
        "cannot be checked by this validator"
    ]


def test_the_validator_checks_invariants(published: tuple[TestClient, dict[str, str]]) -> None:
    client, h = published
    q = {"patient.identifier": f"urn:oid:{CDA_INS.oid}|{CDA_INS.value}"}
    docs = client.get("/fhir/DocumentReference", params=q, headers=h).json()
    doc = docs["entry"][0]["resource"]
    the_list = client.get("/fhir/List", params=q, headers=h).json()["entry"][0]["resource"]

    def broken(resource: dict[str, Any], url: str, change: Any) -> list[str]:
        copied = copy.deepcopy(resource)
        change(copied)
        return profiles.validate(copied, url)

    # ext-1: an extension has a value or extensions, not both
    ext = broken(doc, DOCREF, lambda d: d["extension"][0].update(extension=[{"url": "x"}]))
    assert any("ext-1" in p for p in ext), ext
    # ele-1: no element without a value or children
    ele = broken(doc, DOCREF, lambda d: d["content"][0]["attachment"].update(title=""))
    assert any("ele-1" in p and "title" in p for p in ele), ele
    # dom-3: a contained resource is referenced from its container
    dom = broken(doc, DOCREF, lambda d: d["context"].update(sourcePatientInfo={"display": "x"}))
    assert any("dom-3" in p for p in dom), dom
    # lst-2: only a "changes" list may mark entries deleted
    lst = broken(the_list, SUBMISSION, lambda x: x["entry"][0].update(deleted=True))
    assert any("lst-2" in p for p in lst), lst
    # bdl-8: no fullUrl with a version
    found = profiles.PDSM + "pdsm-find-documentreferences-comprehensive-response"
    bdl = broken(docs, found, lambda b: b["entry"][0].update(fullUrl="http://x/D/1/_history/1"))
    assert any("bdl-8" in p for p in bdl), bdl
