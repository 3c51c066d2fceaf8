from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmp.access.matrix import ALL_TYPES, load_matrix, parse_matrix
from dmp.errors import ConfigurationError
from dmp.identity.actor import Actor, ActorKind


def _pro(profession: str, specialty: str | None = None, section: str | None = None) -> Actor:
    return Actor(
        ActorKind.PROFESSIONAL,
        "x",
        profession=profession,
        specialty=specialty,
        pharmacist_section=section,
    )


def test_default_matrix_loads_and_is_sane() -> None:
    m = load_matrix()
    assert m.readable_types(_pro("10")) is None
    assert m.readable_types(_pro("40")) is None
    assert m.readable_types(_pro("50")) is None
    pharma = m.readable_types(_pro("21", section="A"))
    assert pharma is not None
    assert {"57833-6", "60593-1", "11502-2", "11369-6", "60591-5"} <= pharma
    hospital_pharma = m.readable_types(_pro("21", section="H"))
    assert hospital_pharma is not None
    assert pharma < hospital_pharma
    nurse = m.readable_types(_pro("60"))
    assert nurse is not None
    assert "18748-4" not in nurse
    social = m.readable_types(_pro("SOC-ASS"))
    assert social == frozenset({"11488-4", "11490-0", "18761-7", "74207-2"})
    assert m.readable_types(_pro("99")) == frozenset()  # unknown profession reads nothing
    assert "SA-STRAV" in m.forbidden_sectors


def test_a_replacement_is_validated(tmp_path: Path) -> None:
    good = {
        "rules": [{"profession": "10", "types": "*"}, {"profession": "60", "types": ["11502-2"]}]
    }
    f = tmp_path / "m.json"
    f.write_text(json.dumps(good), encoding="utf-8")
    m = load_matrix(f)
    assert m.readable_types(_pro("60")) == frozenset({"11502-2"})
    assert m.readable_types(_pro("21")) == frozenset()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"rules": [{"profession": "60", "types": ["99999-9"]}]},
            "unknown document type code '99999-9'",
        ),
        ({"rules": [{"profession": "60", "types": ["@NOPE"]}]}, "unknown group @NOPE"),
        ({"rules": [{"profession": "60"}]}, "'types' must be"),
        ({"rules": [{"types": "*"}]}, "names a 'profession'"),
        (
            {"rules": [{"profession": "10", "types": "*"}, {"profession": "10", "types": "*"}]},
            "duplicate rule",
        ),
        ({"rules": [{"profession": "10", "types": "*", "colour": "red"}]}, "unknown keys"),
        ({"groups": {"G": ["bad"]}, "rules": []}, "group G has unknown type codes"),
        ({"no": "rules"}, "'rules' list"),
    ],
)
def test_bad_replacements_are_refused_with_a_clear_message(doc: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        parse_matrix(doc, "test.json")


def test_unreadable_or_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_matrix(tmp_path / "absent.json")
    f = tmp_path / "bad.json"
    f.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        load_matrix(f)


def test_every_type_code_is_readable_by_someone() -> None:
    m = load_matrix()
    covered: set[str] = set()
    for types in m.rules.values():
        covered |= ALL_TYPES if types is None else types
    assert covered == ALL_TYPES
