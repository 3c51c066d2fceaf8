"""INSEE commune codes and the département they belong to.

The list of départements (with their legal population) and the few communes whose code does not
start with their département's code come from ``data/departements.json``, derived from the npm
package @etalab/decoupage-administratif by ``scripts/derive_departements.py``.
"""

from __future__ import annotations

import json
import re
import unicodedata
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
            f"{commune!r} is not an INSEE commune code (5 characters, 2A/2B for Corsica)",
            french=f"« {commune[:20]} » n'est pas un code INSEE de commune (5 caractères, 2A ou "
            "2B pour la Corse) : le code de la commune de résidence est à vérifier",
        )
    geo = geography()
    dept = geo.exceptions.get(code) or (code[:3] if code[:2] in ("97", "98") else code[:2])
    if dept not in geo.departements:
        if code.startswith("20"):
            raise InvalidInput(
                "Corsican communes are coded 2A or 2B, not 20",
                french="les communes de Corse se codent 2A ou 2B, et non 20",
            )
        raise InvalidInput(
            f"{commune!r} is not in a known département",
            french=f"la commune « {commune[:20]} » n'est dans aucun département connu",
        )
    return dept


@cache
def _postcodes() -> dict[str, list[list[str]]]:
    raw = resources.files("dmp.domain").joinpath("data/postcodes.json").read_text(encoding="utf-8")
    table: dict[str, list[list[str]]] = json.loads(raw)["postcodes"]
    return table


def _plain(name: str) -> str:
    decomposed = unicodedata.normalize("NFD", name.casefold())
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join("".join(c if c.isalnum() else " " for c in letters).split())


def commune_of_postcode(postcode: str, city: str | None, *, where: str) -> str:
    """The INSEE code of the commune a postal code and a city name designate (the postal-code
    table of @etalab/decoupage-administratif). A postal code serving several communes needs
    the city to choose; ``where`` names the element in the error."""
    communes = _postcodes().get(postcode.strip())
    if not communes:
        raise InvalidInput(f"{where}.postalCode {postcode!r} is not a French postal code")
    if len(communes) == 1:
        return communes[0][0]
    if city:
        named = [code for code, name in communes if _plain(name) == _plain(city)]
        if len(named) == 1:
            return named[0]
    names = ", ".join(name for _, name in communes[:6]) + (", …" if len(communes) > 6 else "")
    raise InvalidInput(
        f"{where}.postalCode {postcode!r} serves several communes ({names}): give {where}.city "
        "as one of them, or the INSEE code (FR Core extension fr-core-address-insee-code)"
    )


def postcode_cities(postcode: str) -> list[str]:
    """The names of the communes a French postal code serves (empty: not a postal code)."""
    return [name for _code, name in _postcodes().get(postcode.strip(), [])]


@cache
def _commune_names() -> dict[str, str]:
    return {code: name for communes in _postcodes().values() for code, name in communes}


def commune_name(code: str | None) -> str | None:
    """A commune's name from its INSEE code (None when unknown)."""
    return _commune_names().get(code or "")
