"""The PDSm document-sharing server role, parameter by parameter: every interaction and search
parameter of its CapabilityStatement is declared and served, with FHIR R4's modifiers and
prefixes for its type; what is not supported is refused with 400 naming it, or ignored under
``Prefer: handling=lenient``. Expected answers come from the data each test publishes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from bench.load import iti65_bundle
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.auth import actors
from dmp.clock import FixedClock
from dmp.domain.ins import OID_TEST
from dmp.runtime import Runtime
from tests.factories import EXAMPLES, GP, GP_PRACTICE, NURSE, ins_for, open_record, pro
from tests.fhir_helpers import bearer

INS = ins_for(212)
MHD = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"


def _bundle(uid: str, title: str, designation: str, source_id: str, folder: str | None) -> Any:
    content = b"Compte rendu fictif " + uid.encode()
    bundle = iti65_bundle(INS.value, GP, content)
    text = json.dumps(bundle).replace("__UID__", uid)
    bundle = json.loads(text)
    the_list = bundle["entry"][0]["resource"]
    the_list["title"] = title
    the_list["extension"] = [
        {"url": MHD + "ihe-sourceId", "valueIdentifier": {"value": source_id}},
        {
            "url": MHD + "ihe-designationType",
            "valueCodeableConcept": {
                "coding": [{"system": "urn:oid:1.2.250.1.71.4.2.4", "code": designation}]
            },
        },
    ]
    bundle["entry"][1]["resource"]["content"][0]["attachment"]["contentType"] = "text/plain"
    bundle["entry"][1]["resource"]["content"][0]["format"]["code"] = "urn:ihe:iti:xds-sd:text:2008"
    bundle["entry"][2]["resource"]["contentType"] = "text/plain"
    if folder:
        bundle["entry"].append(
            {
                "fullUrl": "urn:uuid:0b0b0b0b-0000-4000-8000-000000000009",
                "resource": {
                    "resourceType": "List",
                    "status": "current",
                    "mode": "working",
                    "title": folder,
                    "code": {
                        "coding": [
                            {"system": MHD[:-20] + "CodeSystem/MHDlistTypes", "code": "folder"}
                        ]
                    },
                    "identifier": [
                        {
                            "use": "usual",
                            "system": "urn:ietf:rfc:3986",
                            "value": f"urn:oid:2.25.{uid}9",
                        }
                    ],
                    "subject": bundle["entry"][0]["resource"]["subject"],
                    "date": "2026-11-01T10:00:00+01:00",
                    "entry": [
                        {"item": {"reference": "urn:uuid:0b0b0b0b-0000-4000-8000-000000000002"}}
                    ],
                },
                "request": {"method": "POST", "url": "List"},
            }
        )
    return bundle


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(world)) as c:
        yield c


@pytest.fixture
def published(client: TestClient, world: Runtime) -> dict[str, Any]:
    """Two submissions by the GP, 40 days apart; the second with a folder."""
    open_record(world, INS)
    world.access(pro(world, GP)).declare_consent(INS)
    h = bearer(world, pro(world, GP))
    clock = world.clock
    assert isinstance(clock, FixedClock)
    first = _bundle("1001", "Suivi post-opératoire", "SA05", "urn:oid:1.2.250.1.999.7", None)
    r = client.post("/fhir", json=first, headers=h)
    assert r.status_code == 200, r.text
    clock.advance(timedelta(days=40))
    h = bearer(world, pro(world, GP))  # a token of the new day
    second = _bundle("2002", "Bilan biologique", "SA01", "urn:oid:1.2.250.1.999.8", "Cardio")
    r = client.post("/fhir", json=second, headers=h)
    assert r.status_code == 200, r.text
    key = world.access(actors.patient_actor(world, INS)).search_documents(INS).items[0].patient_id
    return {"h": h, "key": key}


def _titles(client: TestClient, h: dict[str, str], **params: str) -> list[str]:
    query = {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}", **params}
    r = client.get("/fhir/List", params=query, headers=h)
    assert r.status_code == 200, r.text
    return sorted(e["resource"].get("title", "") for e in r.json().get("entry", []))


ALL = ["Bilan biologique", "Cardio", "Suivi post-opératoire"]
SECOND = ["Bilan biologique", "Cardio"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ALL),
        # date: every FHIR prefix
        ({"date": "2026-03-02"}, ["Suivi post-opératoire"]),
        ({"date": "eq2026-03"}, ["Suivi post-opératoire"]),
        ({"date": "ne2026-03-02"}, SECOND),
        ({"date": "gt2026-03-02"}, SECOND),
        ({"date": "ge2026-04-11"}, SECOND),
        ({"date": "lt2026-04-11"}, ["Suivi post-opératoire"]),
        ({"date": "le2026-03-02"}, ["Suivi post-opératoire"]),
        ({"date": "sa2026-03"}, SECOND),
        ({"date": "eb2026-04"}, ["Suivi post-opératoire"]),
        ({"date": "ap2026-03-03"}, ["Suivi post-opératoire"]),
        # designationType (token): code, system|code, and :not
        ({"designationType": "SA05"}, ["Suivi post-opératoire"]),
        ({"designationType": "urn:oid:1.2.250.1.71.4.2.4|SA01"}, ["Bilan biologique"]),
        ({"designationType": "SA05,SA01"}, ["Bilan biologique", "Suivi post-opératoire"]),
        ({"designationType:not": "SA05"}, SECOND),
        # isArchived
        ({"isArchived": "false"}, ALL),
        ({"isArchived": "true"}, []),
        # title (string): starts with, case and accents ignored; :contains; :exact
        ({"title": "suivi post-operatoire"}, ["Suivi post-opératoire"]),
        ({"title": "BIL"}, ["Bilan biologique"]),
        ({"title:contains": "ologi"}, ["Bilan biologique"]),
        ({"title:exact": "Bilan biologique"}, ["Bilan biologique"]),
        ({"title:exact": "bilan biologique"}, []),
        # sourceId (token)
        ({"sourceId": "urn:oid:1.2.250.1.999.8"}, ["Bilan biologique"]),
        ({"sourceId": "1.2.250.1.999.7"}, ["Suivi post-opératoire"]),
        # source (reference): the professional (PractitionerRole) or the patient
        ({"source": f"PractitionerRole/{GP}"}, ALL),
        ({"source:identifier": f"urn:oid:1.2.250.1.71.4.2.1|{GP}"}, ALL),
        ({"source": f"PractitionerRole/{NURSE}"}, []),
        ({"source": "Patient/0123456789abcdef0123456789abcdef"}, []),
        # authorOrg (reference)
        ({"authorOrg": f"Organization/{GP_PRACTICE}"}, ALL),
        ({"authorOrg:identifier": f"urn:oid:1.2.250.1.71.4.2.2|{GP_PRACTICE}"}, ALL),
        ({"authorOrg": "Organization/OTHER"}, []),
        # code, status, identifier
        ({"code": "folder"}, ["Cardio"]),
        (
            {"code": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes|submissionset"},
            ["Bilan biologique", "Suivi post-opératoire"],
        ),
        ({"status": "current"}, ALL),
        ({"status": "retired"}, []),
        ({"identifier": "urn:ietf:rfc:3986|urn:oid:2.25.10011"}, ["Suivi post-opératoire"]),
        # two parameters: AND
        ({"code": "submissionset", "date": "ge2026-04"}, ["Bilan biologique"]),
    ],
)
def test_each_list_parameter(
    client: TestClient, published: dict[str, Any], params: dict[str, str], expected: list[str]
) -> None:
    assert _titles(client, published["h"], **params) == expected


def test_list_subject_and_patient_forms(client: TestClient, published: dict[str, Any]) -> None:
    h, key = published["h"], published["key"]
    for query in (
        {"subject": f"Patient/{key}"},
        {"patient": key},
        {"subject:identifier": f"urn:oid:{OID_TEST}|{INS.value}"},
    ):
        r = client.get("/fhir/List", params=query, headers=h)
        assert r.status_code == 200, (query, r.text)
        assert r.json()["total"] == 3


def test_list_read(client: TestClient, published: dict[str, Any], world: Runtime) -> None:
    h = published["h"]
    query = {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}", "code": "folder"}
    found = client.get("/fhir/List", params=query, headers=h).json()["entry"][0]
    read = client.get(f"/fhir/List/{found['resource']['id']}", headers=h)
    assert read.status_code == 200
    assert read.json() == found["resource"]
    assert found["fullUrl"].endswith(f"/List/{found['resource']['id']}")
    missing = client.get(f"/fhir/List/{published['key']}.ffffffffffffffff", headers=h)
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
    # A professional without the patient's consent reads nothing.
    other = client.get(
        f"/fhir/List/{found['resource']['id']}", headers=bearer(world, pro(world, NURSE))
    )
    assert other.status_code in (403, 404)


def test_document_reference_subject(client: TestClient, published: dict[str, Any]) -> None:
    h, key = published["h"], published["key"]
    for query in (
        {"subject": f"Patient/{key}"},
        {"subject:identifier": f"urn:oid:{OID_TEST}|{INS.value}"},
        {"patient": f"Patient/{key}"},
        {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}"},
    ):
        r = client.get("/fhir/DocumentReference", params=query, headers=h)
        assert r.status_code == 200, (query, r.text)
        assert r.json()["total"] == 2


@pytest.mark.parametrize("resource", ["DocumentReference", "List"])
def test_unknown_parameters_are_refused_or_ignored_on_request(
    client: TestClient, published: dict[str, Any], resource: str
) -> None:
    h = published["h"]
    query = {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}", "colour": "blue"}
    refused = client.get(f"/fhir/{resource}", params=query, headers=h)
    assert refused.status_code == 400
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "colour" in json.dumps(outcome)
    lenient = client.get(
        f"/fhir/{resource}", params=query, headers={**h, "Prefer": "handling=lenient"}
    )
    assert lenient.status_code == 200
    body = lenient.json()
    assert body["total"] >= 2
    self_link = parse_qs(urlsplit(body["link"][0]["url"]).query)
    assert "colour" not in self_link and "patient.identifier" in self_link


@pytest.mark.parametrize(
    ("resource", "name"),
    [
        ("List", "title:text"),  # a string has no :text
        ("List", "date:missing"),
        ("DocumentReference", "identifier:text"),  # an identifier has no display
        ("DocumentReference", "period:exact"),
    ],
)
def test_unsupported_modifiers_are_named(
    client: TestClient, published: dict[str, Any], resource: str, name: str
) -> None:
    query = {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}", name: "x"}
    r = client.get(f"/fhir/{resource}", params=query, headers=published["h"])
    assert r.status_code == 400
    assert name.split(":")[1] in json.dumps(r.json())


@pytest.mark.parametrize("resource", ["DocumentReference", "List"])
def test_summary_count(client: TestClient, published: dict[str, Any], resource: str) -> None:
    query = {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}", "_summary": "count"}
    body = client.get(f"/fhir/{resource}", params=query, headers=published["h"]).json()
    assert body["total"] >= 2
    assert not body.get("entry")  # the count only
    query["_summary"] = "text"
    assert client.get(f"/fhir/{resource}", params=query, headers=published["h"]).status_code == 400


def test_a_count_names_no_document_in_the_audit(
    client: TestClient, world: Runtime, published: dict[str, Any]
) -> None:
    """_summary=count is applied inside the gate: the trail says what left, and no document
    did (issue 22: the event listed every document counted)."""
    query = {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}", "_summary": "count"}
    assert (
        client.get("/fhir/DocumentReference", params=query, headers=published["h"]).json()["total"]
        >= 2
    )
    with world.engine.connect() as conn:
        action, targets = conn.execute(
            sa.text(
                "SELECT action, targets FROM audit_events WHERE chain_id = :p "
                "ORDER BY seq DESC LIMIT 1"
            ),
            {"p": published["key"]},
        ).one()
    assert action == "document.search" and not targets
    del query["_summary"]
    client.get("/fhir/DocumentReference", params=query, headers=published["h"])
    with world.engine.connect() as conn:
        targets = conn.execute(
            sa.text(
                "SELECT targets FROM audit_events WHERE chain_id = :p ORDER BY seq DESC LIMIT 1"
            ),
            {"p": published["key"]},
        ).scalar_one()
    assert len(targets.split()) >= 2  # a page that left names its documents


def test_document_reference_date_prefixes(client: TestClient, published: dict[str, Any]) -> None:
    """period is the service date (both documents: 2026-11-01); ap widens by a day; ne is
    outside the interval (tests/test_docref_search_params.py has every modifier)."""
    base = {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}"}

    def total(**p: str) -> int:
        r = client.get("/fhir/DocumentReference", params={**base, **p}, headers=published["h"])
        assert r.status_code == 200, r.text
        return int(r.json()["total"])

    assert total(period="2026-11-01") == 2
    assert total(period="ap2026-10-31") == 2
    assert total(period="ap2026-10-29") == 0
    assert total(period="gt2026-11-01") == 0
    assert total(period="sa2026-10") == 2
    assert total(period="eb2026-12") == 2
    assert total(period="ne2026-11-01") == 0
    assert total(period="ne2026-10") == 2


# The PDSm CapabilityStatement names some parameters differently from the codes clients send
# (the SearchParameter's code): written out here from the guide's SearchParameter resources.
PDSM_CODES = {
    "DesignationType": "designationType",
    "SourceId": "sourceId",
    "PDSm_isArchived": "isArchived",
    "PDSm_authorOrg": "authorOrg",
    "PDSm_List_PatientAsSource": "source",
    "PDSm_List_PractitionerRoleAsSource": "source",
    "PDSm_DocumentReference_period-start": "period-start",
    "PDSm_DocumentReference_period-end": "period-end",
    "DocumentReference Patient": "subject",
    "DocumentRefence Author": "author",
}


def test_the_capability_statement_covers_the_pdsm_server_role(client: TestClient) -> None:
    role = json.loads(
        (
            EXAMPLES / "pdsm/CapabilityStatement-PDSm-GestionnaireDePartageDeDocuments.json"
        ).read_text()
    )
    ours = client.get("/fhir/metadata").json()
    served = {r["type"]: r for r in ours["rest"][0]["resource"]}
    assert {"transaction"} <= {i["code"] for i in ours["rest"][0]["interaction"]}
    wanted = 0
    for resource in role["rest"][0]["resource"]:
        mine = served[resource["type"]]
        codes = {i["code"] for i in mine.get("interaction", [])}
        for interaction in resource.get("interaction", []):
            assert interaction["code"] in codes, (resource["type"], interaction["code"])
            wanted += 1
        params = {p["name"]: p["type"] for p in mine.get("searchParam", [])}
        for p in resource.get("searchParam", []):
            code = PDSM_CODES.get(p["name"], p["name"])
            assert params.get(code) == p["type"], (resource["type"], p["name"], code)
            wanted += 1
    assert wanted == 35  # 6 interactions, 29 parameters (source twice: its two PDSm variants)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/fhir/AuditEvent", {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}"}),
        ("/fhir/Consent", {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}"}),
        ("/fhir/Patient", {"identifier": f"urn:oid:{OID_TEST}|{INS.value}"}),
    ],
)
def test_every_search_refuses_what_it_does_not_know(
    client: TestClient, published: dict[str, Any], world: Runtime, path: str, query: dict[str, str]
) -> None:
    holder = bearer(world, actors.patient_actor(world, INS))
    assert client.get(path, params=query, headers=holder).status_code == 200
    r = client.get(path, params={**query, "_lastUpdated": "gt2026"}, headers=holder)
    assert r.status_code == 400 and "_lastUpdated" in r.text
    lenient = {**holder, "Prefer": "handling=lenient"}
    assert (
        client.get(path, params={**query, "_lastUpdated": "gt2026"}, headers=lenient).status_code
        == 200
    )


def _last_list_search_targets(world: Runtime, key: str) -> list[str]:
    with world.engine.connect() as conn:
        action, targets = conn.execute(
            sa.text(
                "SELECT action, targets FROM audit_events WHERE chain_id = :p "
                "ORDER BY seq DESC LIMIT 1"
            ),
            {"p": key},
        ).one()
    assert action == "list.search"
    return sorted((targets or "").split())


def test_list_criteria_and_pages_are_applied_inside_the_gate(
    client: TestClient, world: Runtime, published: dict[str, Any]
) -> None:
    """The List search's criteria, page and count are applied before the audit: the event
    names the documents of the Lists that left, not of every List the patient has (issue 22:
    the criteria were applied after the gate)."""
    h = published["h"]
    q = {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}"}
    every = client.get("/fhir/List", params=q, headers=h).json()
    assert every["total"] == 3
    all_docs = _last_list_search_targets(world, published["key"])
    assert len(all_docs) == 2
    # One submission set matches: only its document is named.
    body = client.get("/fhir/List", params={**q, "designationType": "SA05"}, headers=h).json()
    assert [e["resource"]["title"] for e in body["entry"]] == ["Suivi post-opératoire"]
    first_doc = _last_list_search_targets(world, published["key"])
    assert len(first_doc) == 1 and set(first_doc) < set(all_docs)
    # Nothing matches: nothing is named.
    body = client.get("/fhir/List", params={**q, "title": "Aucun"}, headers=h).json()
    assert body["total"] == 0
    assert _last_list_search_targets(world, published["key"]) == []
    # A count alone, or a page of none: nothing left, nothing named.
    for extra in ({"_summary": "count"}, {"_count": "0"}):
        body = client.get("/fhir/List", params={**q, **extra}, headers=h).json()
        assert body["total"] == 3 and not body.get("entry")
        assert _last_list_search_targets(world, published["key"]) == []
    # A page of one names the documents of that List alone (the newest: the second submission).
    body = client.get("/fhir/List", params={**q, "_count": "1"}, headers=h).json()
    assert body["total"] == 3 and len(body["entry"]) == 1
    page_docs = _last_list_search_targets(world, published["key"])
    assert len(page_docs) == 1 and page_docs != first_doc
