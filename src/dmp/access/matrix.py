"""Loading and validating the habilitation matrix (profession x document type, AC-5).

The default ships with the package (``access/data/matrix.json``); operators may replace it with
``DMP_MATRIX_FILE``. A replacement is validated at load: an unknown document type code, an unknown
group or a malformed rule stops the service with a message naming the problem.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from dmp.access.policy import Matrix
from dmp.domain.codes import TYPE_TO_CLASS
from dmp.domain.valuesets import document_types
from dmp.errors import ConfigurationError

# A matrix may name any document type of JDV_J07 (the DMP's own types are among them).
ALL_TYPES = frozenset(document_types().concepts) | frozenset(TYPE_TO_CLASS)


def _expand(types: Any, groups: dict[str, list[str]], where: str) -> frozenset[str] | None:
    if types == "*":
        return None
    if not isinstance(types, list) or not types:
        raise ConfigurationError(f"{where}: 'types' must be \"*\" or a non-empty list")
    out: set[str] = set()
    for item in types:
        if not isinstance(item, str):
            raise ConfigurationError(f"{where}: type codes are strings")
        if item.startswith("@"):
            if item[1:] not in groups:
                raise ConfigurationError(f"{where}: unknown group {item}")
            out.update(groups[item[1:]])
        elif item not in ALL_TYPES:
            raise ConfigurationError(f"{where}: unknown document type code {item!r}")
        else:
            out.add(item)
    return frozenset(out)


def parse_matrix(doc: Any, origin: str) -> Matrix:
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise ConfigurationError(f"{origin}: a matrix is an object with a 'rules' list")
    groups = doc.get("groups", {})
    if not isinstance(groups, dict):
        raise ConfigurationError(f"{origin}: 'groups' must be an object")
    for name, codes in groups.items():
        unknown = [c for c in codes if c not in ALL_TYPES]
        if unknown:
            raise ConfigurationError(f"{origin}: group {name} has unknown type codes {unknown}")
    rules: dict[tuple[str, str | None, str | None], frozenset[str] | None] = {}
    labels: dict[tuple[str, str | None, str | None], str] = {}
    for n, rule in enumerate(doc["rules"], 1):
        where = f"{origin}: rule {n}"
        if not isinstance(rule, dict) or not isinstance(rule.get("profession"), str):
            raise ConfigurationError(f"{where}: each rule names a 'profession' code")
        unknown_keys = set(rule) - {"profession", "specialty", "section", "label", "types"}
        if unknown_keys:
            raise ConfigurationError(f"{where}: unknown keys {sorted(unknown_keys)}")
        key = (rule["profession"], rule.get("specialty"), rule.get("section"))
        if key in rules:
            raise ConfigurationError(f"{where}: duplicate rule for {key}")
        rules[key] = _expand(rule.get("types"), groups, where)
        labels[key] = str(rule.get("label", ""))
    forbidden = doc.get("forbidden", {})
    if not isinstance(forbidden, dict) or set(forbidden) - {"sectors", "specialties", "note"}:
        raise ConfigurationError(
            f"{origin}: 'forbidden' is an object with 'sectors' and 'specialties' lists"
        )
    sectors = forbidden.get("sectors", [])
    specialties = forbidden.get("specialties", [])
    regulation = doc.get("regulation_professions", ["10"])
    if not all(isinstance(x, str) for x in [*sectors, *specialties, *regulation]):
        raise ConfigurationError(
            f"{origin}: forbidden sectors and specialties and regulation_professions are lists "
            "of strings"
        )
    return Matrix(
        rules=rules,
        labels=labels,
        forbidden_sectors=frozenset(sectors),
        forbidden_specialties=frozenset(specialties),
        regulation_professions=frozenset(regulation),
        version=str(doc.get("version", "")),
    )


def load_matrix(path: Path | None = None) -> Matrix:
    if path is None:
        text = resources.files("dmp.access").joinpath("data/matrix.json").read_text("utf-8")
        origin = "default matrix"
    else:
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the matrix file {path}: {exc.strerror}"
            ) from None
        origin = str(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{origin}: not valid JSON ({exc.msg}, line {exc.lineno})"
        ) from None
    return parse_matrix(doc, origin)
