from __future__ import annotations

import pytest

from dmp.domain.geo import departement_of_commune
from dmp.domain.ins import (
    OID_DEMO,
    OID_NIA,
    OID_NIR,
    OID_TEST,
    control_key,
    make_ins_value,
    parse_ins,
    parse_ins_token,
)
from dmp.errors import InvalidInput

# Fictional matricules; keys computed by hand with 97 - (n mod 97).
VALID = "1840537003123"  # key: 97 - (1840537003123 mod 97)


def test_control_key_matches_the_insee_formula() -> None:
    assert control_key(VALID) == 97 - (1840537003123 % 97)
    assert parse_ins(make_ins_value(VALID)).value == make_ins_value(VALID)


def test_valid_nir_and_nia() -> None:
    value = make_ins_value(VALID)
    assert parse_ins(value, OID_NIR).oid == OID_NIR
    assert parse_ins(value, OID_NIA).oid == OID_NIA
    assert parse_ins(f"{value[:5]} {value[5:]}").value == value  # spaces tolerated


def test_wrong_key_is_refused() -> None:
    value = make_ins_value(VALID)
    wrong = value[:13] + f"{(int(value[13:]) % 97) + 1:02d}"
    with pytest.raises(InvalidInput, match="control key"):
        parse_ins(wrong)


@pytest.mark.parametrize(("dept", "substitute"), [("2A", "19"), ("2B", "18")])
def test_corsica(dept: str, substitute: str) -> None:
    matricule = f"18405{dept}004123"
    numeric = int(f"18405{substitute}004123")
    key = 97 - numeric % 97
    ins = parse_ins(f"{matricule}{key:02d}")
    assert ins.departement_of_birth == dept
    # The same digits with the other Corsican code do not validate.
    other = "2B" if dept == "2A" else "2A"
    with pytest.raises(InvalidInput):
        parse_ins(f"18405{other}004123{key:02d}")
    assert parse_ins(f"18405{dept.lower()}004123{key:02d}").value == f"{matricule}{key:02d}"


@pytest.mark.parametrize("value", ["", "1840537003", "18405370031234567", "1840537003123"])
def test_wrong_length(value: str) -> None:
    with pytest.raises(InvalidInput, match="15 characters"):
        parse_ins(value)


@pytest.mark.parametrize("value", ["9840537003123xx", "18405X70031230", "A84053700312345"])
def test_wrong_characters(value: str) -> None:
    with pytest.raises(InvalidInput):
        parse_ins(value)


@pytest.mark.parametrize("oid", [OID_TEST, OID_DEMO])
def test_test_oids_only_in_test_mode(oid: str) -> None:
    value = make_ins_value(VALID)
    with pytest.raises(InvalidInput, match="test or demo mode"):
        parse_ins(value, oid)
    assert parse_ins(value, oid, test_mode=True).oid == oid


def test_unknown_oid() -> None:
    with pytest.raises(InvalidInput, match="assigning authority"):
        parse_ins(make_ins_value(VALID), "1.2.3.4")


def test_token_forms() -> None:
    value = make_ins_value(VALID)
    assert parse_ins_token(f"urn:oid:{OID_NIR}|{value}").value == value
    assert parse_ins_token(f"{OID_NIA}|{value}").oid == OID_NIA
    assert parse_ins_token(value).oid == OID_NIR


@pytest.mark.parametrize(
    ("commune", "dept"),
    [
        ("37003", "37"),
        ("2A004", "2A"),
        ("2B033", "2B"),
        ("97105", "971"),
        ("97611", "976"),
        ("75056", "75"),
        ("01001", "01"),
    ],
)
def test_departement_of_commune(commune: str, dept: str) -> None:
    assert departement_of_commune(commune) == dept


@pytest.mark.parametrize("commune", ["2004", "20004", "3700A", "ABCDE", ""])
def test_bad_commune(commune: str) -> None:
    with pytest.raises(InvalidInput):
        departement_of_commune(commune)
