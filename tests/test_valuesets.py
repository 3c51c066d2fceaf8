"""The national value sets: every document type of JDV_J07-XdsTypeCode-CISIS is accepted (or
the configured subset), display names come from the sets, and codes claimed in a CI-SIS system
must be in their set. Expected values are read here from the SVS files themselves."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from dmp.app import create_app
from dmp.config import Settings
from dmp.domain import valuesets
from dmp.errors import InvalidInput
from dmp.runtime import Runtime
from tests.factories import (
    CARDIOLOGIST,
    T0,
    ins_for,
    load_directory,
    new_document,
    open_record,
    pro,
)
from tests.fhir_helpers import bearer, iti105

SVS = "{urn:ihe:iti:svs:2008}"
INS = ins_for(244)


def _svs(name: str) -> dict[str, tuple[str, str]]:
    """code -> (codeSystem, displayName), straight from the packaged SVS file."""
    path = resources.files("dmp.domain").joinpath(f"data/valuesets/{name}")
    root = etree.fromstring(path.read_bytes(), etree.XMLParser(resolve_entities=False))
    return {
        c.get("code"): (c.get("codeSystem"), c.get("displayName"))
        for c in root.iter(f"{SVS}Concept")
    }


def test_the_index_matches_the_svs_files() -> None:
    for binding, name in (
        ("type", "JDV_J07_XdsTypeCode_CISIS.xml"),
        ("author_specialty", "JDV_J01_XdsAuthorSpecialty_CISIS.xml"),
        ("facility_type", "JDV_J02_XdsHealthcareFacilityTypeCode_CISIS.xml"),
        ("practice_setting", "JDV_J04_XdsPracticeSettingCode_CISIS.xml"),
        ("confidentiality", "JDV_J08_XdsConfidentialityCode_CISIS.xml"),
    ):
        svs = _svs(name)
        vs = valuesets.value_sets()[binding]
        assert {c: (x.system_oid, x.display) for c, x in vs.concepts.items()} == svs
    assert len(valuesets.document_types().concepts) == 114


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    open_record(world, INS)
    world.access(pro(world, CARDIOLOGIST)).declare_consent(INS)
    with TestClient(create_app(world)) as c:
        yield c


def test_every_j07_type_is_accepted_with_its_display(world: Runtime, client: TestClient) -> None:
    gp = world.access(pro(world, CARDIOLOGIST))
    h = bearer(world, pro(world, CARDIOLOGIST))
    types = _svs("JDV_J07_XdsTypeCode_CISIS.xml")
    for code, (_, display) in sorted(types.items()):
        meta = dataclasses.replace(new_document(T0, type_code=code), class_code="10")
        doc = gp.deposit_document(INS, meta, b"contenu fictif")
        r = client.get(f"/fhir/DocumentReference/{doc.patient_id}.{doc.logical_id}", headers=h)
        coding = r.json()["type"]["coding"][0]
        assert (coding["code"], coding["display"]) == (code, display)
    # LOINC types are written with LOINC's URI.
    assert any(s == "2.16.840.1.113883.6.1" for s, _ in types.values())


def test_a_type_outside_j07_or_without_a_class_is_refused(world: Runtime) -> None:
    gp = world.access(pro(world, CARDIOLOGIST))
    open_record(world, INS)
    gp.declare_consent(INS)
    with pytest.raises(InvalidInput, match="JDV_J07"):
        gp.deposit_document(INS, new_document(T0, type_code="99999-9"), b"x")
    # A J07 type the class table does not know needs the class code (DocumentReference.category).
    with pytest.raises(InvalidInput, match="category"):
        gp.deposit_document(INS, new_document(T0, type_code="ATTEST-RESID"), b"x")


def test_a_deployment_restricts_the_types(settings: Settings, clock: object) -> None:
    from dmp.clock import FixedClock

    assert isinstance(clock, FixedClock)
    only = settings.model_copy(update={"document_types": "11488-4, 34112-3"})
    rt = Runtime.start(only, clock=clock)
    try:
        load_directory(rt)
        open_record(rt, INS)
        gp = rt.access(pro(rt, CARDIOLOGIST))
        gp.declare_consent(INS)
        gp.deposit_document(INS, new_document(T0, type_code="11488-4"), b"x")
        with pytest.raises(InvalidInput, match="not accepted by this deployment"):
            gp.deposit_document(INS, new_document(T0, type_code="11502-2"), b"x")
    finally:
        rt.close()
    with pytest.raises(ValueError, match="JDV_J07"):
        Settings(data_dir=Path("/nonexistent"), document_types="11488-4,NOPE")


def test_codes_claimed_in_a_ci_sis_system_must_be_in_their_set(
    world: Runtime, client: TestClient
) -> None:
    h = bearer(world, pro(world, CARDIOLOGIST))
    docref = iti105(INS, b"Compte rendu fictif")
    r02 = "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
    docref["context"] = {
        **(docref.get("context") or {}),
        "facilityType": {"coding": [{"system": r02, "code": "SA99"}]},
    }
    r = client.post("/fhir/DocumentReference", json=docref, headers=h)
    assert r.status_code == 422
    assert "context.facilityType" in r.text
    # A code of that set is taken, with the set's display name on the way out.
    docref["context"]["facilityType"] = {"coding": [{"system": r02, "code": "SA01"}]}
    r = client.post("/fhir/DocumentReference", json=docref, headers=h)
    assert r.status_code == 201, r.text
    facility = r.json()["context"]["facilityType"]["coding"][0]
    expected = _svs("JDV_J02_XdsHealthcareFacilityTypeCode_CISIS.xml")["SA01"][1]
    assert (facility["code"], facility["display"]) == ("SA01", expected)
    # Codes of other systems (the DMP guide's examples send SNOMED CT) are taken as sent.
    docref["context"]["facilityType"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": "22232009"}]
    }
    docref.pop("masterIdentifier", None)  # a new document, not the same one again
    assert client.post("/fhir/DocumentReference", json=docref, headers=h).status_code == 201
