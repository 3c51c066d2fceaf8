"""Identity that matches the INS (issue 21, item 4).

The expected traits below are read by hand from the NIR positions the domain reference gives
(§3.1b: sex, birth year, birth month, birth place as département + commune or 99 + country,
2A/2B, unknown months, temporary numbers), never from the code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from dmp.access.views import Demographics
from dmp.app import create_app
from dmp.auth import actors
from dmp.domain.codes import CreationChannel
from dmp.domain.ins import OID_TEST, Ins, identity_mismatches, make_ins_value, nir_traits
from dmp.errors import InvalidInput
from dmp.identity.actor import system_actor
from dmp.runtime import Runtime
from tests.factories import CARDIOLOGIST, desk, ins_for, pro
from tests.test_http_slice import auth


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(world)) as c:
        yield c


WOMAN_JANUARY_1982 = Ins(OID_TEST, make_ins_value("2820137261123"))  # born in Tours (37261)


@pytest.mark.parametrize(
    ("matricule", "sex", "year", "month", "place"),
    [
        ("1850675056045", "M", 85, 6, "75056"),  # Paris
        ("2820137261123", "F", 82, 1, "37261"),  # Tours
        ("1760199135002", "M", 76, 1, "99135"),  # born abroad, country 135
        ("285502A004123", "F", 85, None, "2A004"),  # month code 50: unknown; Corse-du-Sud
        ("169302B033012", "M", 69, None, "2B033"),  # month code 30: unknown; Haute-Corse
        ("1551297411012", "M", 55, 12, "97411"),  # Saint-Denis (La Réunion), 97 + 4 + 11
        ("7820137261123", "M", 82, None, None),  # a temporary number: month and place unread
        ("8820137261123", "F", 82, None, None),
        ("3820199100123", "M", 82, 1, "99100"),  # born abroad, registration pending
    ],
)
def test_the_traits_an_nir_encodes(
    matricule: str, sex: str, year: int, month: int | None, place: str | None
) -> None:
    traits = nir_traits(make_ins_value(matricule))
    assert (traits.sex, traits.year, traits.month, traits.place) == (sex, year, month, place)


def test_the_issue_case_names_every_mismatch() -> None:
    found = identity_mismatches(
        WOMAN_JANUARY_1982, sex="M", birth_year=1990, birth_month=6, birth_place="75056"
    )
    english = " | ".join(m.english for m in found)
    french = " | ".join(m.french for m in found)
    assert len(found) == 4
    for part in ("sex M", "1990", "month 06", "75056"):
        assert part in english
    for part in ("masculin", "féminin", "1990", "juin", "janvier", "75056", "37261"):
        assert part in french


def test_what_does_not_contradict() -> None:
    ok = identity_mismatches
    ins = WOMAN_JANUARY_1982
    assert ok(ins, sex="F", birth_year=1982, birth_month=1, birth_place="37261") == []
    assert ok(ins, sex="F", birth_year=1982, birth_month=1, birth_place=None) == []
    assert ok(ins, sex="U", birth_year=1982, birth_month=1, birth_place=None) == []
    # Corsica before 1976: département 20 in the NIR, 2A/2B in today's code.
    old = Ins(OID_TEST, make_ins_value("1700120004123"))
    assert ok(old, sex="M", birth_year=1970, birth_month=1, birth_place="2A004") == []
    assert len(ok(old, sex="M", birth_year=1970, birth_month=1, birth_place="2A005")) == 1
    # A month code for an unknown month checks no month.
    unknown = Ins(OID_TEST, make_ins_value("2829937261123"))
    assert ok(unknown, sex="F", birth_year=1982, birth_month=7, birth_place=None) == []
    # The year is the last two digits: 1982 and 2082 read the same.
    assert ok(ins, sex="F", birth_year=2082, birth_month=1, birth_place=None) == []
    assert len(ok(ins, sex="F", birth_year=1983, birth_month=1, birth_place=None)) == 1


def _demo(sex: str, born: date, place: str | None = None) -> Demographics:
    return Demographics("EXEMPLE", "ALIX", sex, born, "37261", birth_place_code=place)


def test_a_contradicting_identity_opens_no_record(world: Runtime) -> None:
    gate = world.access(desk())
    with pytest.raises(InvalidInput) as refused:
        gate.open_record(
            WOMAN_JANUARY_1982,
            _demo("M", date(1990, 6, 12)),
            channel=CreationChannel.PHARMACY,
            patient_consent=True,
        )
    assert refused.value.reason == "identity-mismatch"
    with world.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM patients")).scalar_one() == 0
    opened = gate.open_record(
        WOMAN_JANUARY_1982,
        _demo("F", date(1982, 1, 12), "37261"),
        channel=CreationChannel.PHARMACY,
        patient_consent=True,
        identity_document="CN",
    )
    assert opened.identity_status == "QUAL" and opened.identity_document == "CN"


def test_the_identity_status_says_how_the_identity_was_checked(world: Runtime) -> None:
    def open_with(i: int, actor: object, document: str | None) -> str:
        ins = ins_for(i)
        sex = "M" if ins.value[0] == "1" else "F"
        born = date(1900 + int(ins.value[1:3]), int(ins.value[3:5]), 3)
        view = world.access(actor).open_record(  # type: ignore[arg-type]
            ins,
            Demographics("EXEMPLE", "ALIX", sex, born, "37261"),
            channel=CreationChannel.PHARMACY,
            patient_consent=True,
            identity_document=document,
        )
        return view.identity_status

    assert open_with(20, desk(), "PA") == "QUAL"  # passport
    assert open_with(21, desk(), "CS") == "QUAL"  # residence permit
    assert open_with(22, desk(), "LE") == "PROV"  # family record book: not high trust
    assert open_with(23, desk(), None) == "PROV"
    assert open_with(24, pro(world, CARDIOLOGIST), "CN") == "QUAL"
    assert open_with(25, system_actor("insurer-provisioning"), "TC") == "QUAL"
    with pytest.raises(InvalidInput):
        open_with(26, desk(), "TC")  # a desk is no trusted third party
    with pytest.raises(InvalidInput):
        open_with(27, desk(), "XX")
    ins = ins_for(28)
    holder = actors.patient_actor(world, ins)
    sex = "M" if ins.value[0] == "1" else "F"
    view = world.access(holder).open_record(
        ins,
        Demographics(
            "EXEMPLE",
            "ALIX",
            sex,
            date(1900 + int(ins.value[1:3]), int(ins.value[3:5]), 3),
            "37261",
        ),
        channel=CreationChannel.ONLINE,
        patient_consent=True,
        identity_document="CN",
    )
    assert view.identity_status == "PROV"  # the person online has checked nothing


def test_the_json_api_and_fhir_name_the_mismatch_and_show_the_status(
    client: TestClient, world: Runtime
) -> None:
    body = {
        "ins": {"oid": WOMAN_JANUARY_1982.oid, "value": WOMAN_JANUARY_1982.value},
        "demographics": {
            "birth_family_name": "EXEMPLE",
            "given_names": "ALIX",
            "sex": "M",
            "birth_date": "1990-06-12",
            "residence_commune": "37261",
        },
        "channel": "pharmacy",
        "patient_consent": True,
    }
    r = client.post("/api/records", json=body, headers=auth(world, desk()))
    assert r.status_code == 422, r.text
    assert "contradicts the INS" in r.json()["message"] and "sex M" in r.json()["message"]

    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": f"urn:oid:{WOMAN_JANUARY_1982.oid}", "value": WOMAN_JANUARY_1982.value}
        ],
        "extension": [
            {
                "url": "https://dmp.example.org/fhir/StructureDefinition/dmp-consentement-ouverture",
                "valueBoolean": True,
            },
            {
                "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability",
                "extension": [
                    {
                        "url": "validationMode",
                        "valueCoding": {
                            "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-mode-validation-identity",
                            "code": "PA",
                        },
                    }
                ],
            },
        ],
        "name": [{"use": "official", "family": "EXEMPLE", "given": ["ALIX"]}],
        "gender": "male",
        "birthDate": "1990-06-12",
        "address": [{"postalCode": "37000", "city": "Tours"}],
    }
    headers = {**auth(world, pro(world, CARDIOLOGIST)), "Content-Type": "application/fhir+json"}
    r = client.post("/fhir/Patient", json=patient, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "contradicts the INS" in r.text

    patient["gender"] = "female"
    patient["birthDate"] = "1982-01-12"
    r = client.post("/fhir/Patient", json=patient, headers=headers)
    assert r.status_code == 201, r.text
    [ext] = [e for e in r.json()["extension"] if e["url"].endswith("/fr-core-identity-reliability")]
    parts = {p["url"]: p for p in ext["extension"]}
    assert parts["identityStatus"]["valueCoding"]["code"] == "QUAL"
    assert parts["validationMode"]["valueCoding"]["code"] == "PA"
    assert parts["validationDate"]["valueDate"] == world.clock.now().date().isoformat()
