"""Which record a FranceConnect identity opens: the matching rules of docs/portals.md, case by
case, each expectation written from the rule (not from the matcher's answer)."""

from __future__ import annotations

from datetime import date

import pytest

from dmp.domain.identity_pivot import (
    Candidate,
    PivotError,
    match,
    mismatches,
    normalize,
    pivot_from_claims,
)
from dmp.domain.ins import OID_TEST, Ins, make_ins_value

# A woman born in March 1983 in Amboise (INSEE 37003); a man born abroad (Morocco, 99350).
AMBOISE = Ins(OID_TEST, make_ins_value("2830337003003"))
ABROAD = Ins(OID_TEST, make_ins_value("1750599350012"))


def _claims(**changes: str) -> dict[str, str]:
    claims = {
        "family_name": "Dupont-Durand",
        "given_name": "Émilie Anne",
        "birthdate": "1983-03-17",
        "gender": "female",
        "birthplace": "37003",
        "birthcountry": "99100",
    }
    return {**claims, **changes}


def _record(**changes: object) -> Candidate:
    values: dict[str, object] = {
        "ins": AMBOISE,
        "birth_family_name": "DUPONT DURAND",
        "given_names": "EMILIE ANNE",
        "sex": "F",
        "birth_date": date(1983, 3, 17),
        "birth_place_code": "37003",
    }
    values.update(changes)
    return Candidate(**values)  # type: ignore[arg-type]


def test_names_compare_without_accents_case_or_separators() -> None:
    assert normalize("Dupont-Durand") == "DUPONT DURAND"
    assert normalize("  d'Artagnan  ") == "D ARTAGNAN"
    assert normalize("Émilie") == "EMILIE"
    assert normalize("Noël-Zoé") == "NOEL ZOE"


def test_the_same_person_matches_her_record() -> None:
    assert mismatches(pivot_from_claims(_claims()), _record()) == []
    assert match(pivot_from_claims(_claims()), [_record()]) == AMBOISE


@pytest.mark.parametrize(
    ("claims", "record", "trait"),
    [
        ({"birthdate": "1983-03-18"}, {}, "date de naissance"),
        ({"gender": "male"}, {}, "sexe"),
        ({"family_name": "Dupond-Durand"}, {}, "nom de naissance"),
        # Every given name, in order: one missing, or the order changed, is another identity.
        ({"given_name": "Émilie"}, {}, "prénoms"),
        ({"given_name": "Anne Émilie"}, {}, "prénoms"),
        ({"birthplace": "37261"}, {}, "lieu de naissance"),
        # The record has no birth place: the INS's own (Amboise) decides.
        ({"birthplace": "37261"}, {"birth_place_code": None}, "INS"),
        # Typed identity and pivot agree, but the INS encodes another birth month.
        (
            {"birthdate": "1983-04-17"},
            {"birth_date": date(1983, 4, 17)},
            "INS",
        ),
    ],
)
def test_one_trait_that_differs_opens_nothing(
    claims: dict[str, str], record: dict[str, object], trait: str
) -> None:
    pivot = pivot_from_claims(_claims(**claims))
    assert trait in mismatches(pivot, _record(**record))
    assert match(pivot, [_record(**record)]) is None


def test_a_birth_abroad_is_compared_by_country() -> None:
    pivot = pivot_from_claims(
        _claims(
            family_name="Benali",
            given_name="Karim",
            birthdate="1975-05-02",
            gender="male",
            birthplace="",
            birthcountry="99350",
        )
    )
    record = _record(
        ins=ABROAD,
        birth_family_name="BENALI",
        given_names="KARIM",
        sex="M",
        birth_date=date(1975, 5, 2),
        birth_place_code="99350",
    )
    assert mismatches(pivot, record) == []
    assert "lieu de naissance" in mismatches(
        pivot_from_claims(
            _claims(
                family_name="Benali",
                given_name="Karim",
                birthdate="1975-05-02",
                gender="male",
                birthplace="",
                birthcountry="99131",
            )
        ),
        record,
    )


def test_two_records_for_one_identity_open_neither() -> None:
    twin = _record(ins=Ins(OID_TEST, make_ins_value("2830337003099")))
    assert match(pivot_from_claims(_claims()), [_record(), twin]) is None


@pytest.mark.parametrize(
    "claims",
    [
        {"family_name": ""},
        {"given_name": "  "},
        {"birthdate": "17/03/1983"},
        {"gender": "other"},
        {"birthplace": ""},
        {"birthcountry": "France"},
    ],
)
def test_claims_that_are_no_pivot_are_refused_in_french(claims: dict[str, str]) -> None:
    with pytest.raises(PivotError, match=r"fournisseur d.identité|code INSEE"):
        pivot_from_claims(_claims(**claims))
