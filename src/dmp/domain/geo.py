"""INSEE commune codes and the département they belong to.

The list of départements (with their legal population) and the few communes whose code does not
start with their département's code come from ``data/departements.json``, derived from the npm
package @etalab/decoupage-administratif by ``scripts/derive_departements.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from dmp.errors import InvalidInput

_COMMUNE = re.compile(r"^(\d{5}|2[AB]\d{3})$")


@dataclass(frozen=True, slots=True)
class Departement:
    code: str
    name: str
    region: str
    zone: str  # metro, drom (overseas départements 971-976), com (overseas collectivities)
    population: int


@dataclass(frozen=True)
class Geography:
    departements: dict[str, Departement]
    exceptions: dict[str, str]
    source: str


@cache
def geography() -> Geography:
    raw = resources.files("dmp.domain").joinpath("data/departements.json").read_text("utf-8")
    doc = json.loads(raw)
    deps = {
        d["code"]: Departement(d["code"], d["name"], d["region"], d["zone"], int(d["population"]))
        for d in doc["departements"]
    }
    return Geography(deps, dict(doc["commune_exceptions"]), str(doc["source"]))


def departement_of_commune(commune: str) -> str:
    """The département of an INSEE commune code: 2 characters (01-95, 2A, 2B) or 3 (971-976
    and the overseas collectivities 975, 977, 978, 98x)."""
    code = commune.strip().upper()
    if not _COMMUNE.match(code):
        raise InvalidInput(
            f"{commune!r} is not an INSEE commune code (5 characters, 2A/2B for Corsica)"
        )
    geo = geography()
    dept = geo.exceptions.get(code) or (code[:3] if code[:2] in ("97", "98") else code[:2])
    if dept not in geo.departements:
        if code.startswith("20"):
            raise InvalidInput("Corsican communes are coded 2A or 2B, not 20")
        raise InvalidInput(f"{commune!r} is not in a known département")
    return dept
