"""FranceConnect's identity pivot matched to a record's INS identity (docs/portals.md, "Which
record a FranceConnect identity opens").

FranceConnect gives the person's civil-status identity as their identity provider (the tax
office, the insurer, La Poste...) holds it: birth name, given names, birth date, sex, birth
place and country. A record holds the INS identity the desk checked (RNIV strict traits) and the
INS itself, which encodes sex, birth year and month and birth place. A pivot opens a record only
when every trait agrees with it, as written here; any doubt opens nothing (a person who cannot
be matched goes to a desk, which checks an identity document).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any

from dmp.domain.ins import Ins, identity_mismatches

FRANCE = "99100"  # INSEE's country code for France (FranceConnect's birthcountry)
_SEXES = {"male": "M", "female": "F"}


class PivotError(ValueError):
    """The provider's claims are not a usable identity pivot (said in French)."""


@dataclass(frozen=True, slots=True)
class Pivot:
    family_name: str  # birth name
    given_names: tuple[str, ...]  # every given name, in order
    birth_date: date
    sex: str  # M or F
    birth_place: str | None  # the INSEE code of the commune of birth (born in France)
    birth_country: str  # the INSEE code of the country of birth (99100: France)

    @property
    def place_code(self) -> str | None:
        """The birth place as an INS identity writes it: the commune for a birth in France,
        ``99`` + the country's three digits for a birth abroad."""
        if self.birth_country == FRANCE:
            return self.birth_place
        return self.birth_country


@dataclass(frozen=True, slots=True)
class Candidate:
    """A record's INS identity, as the matcher compares it."""

    ins: Ins
    birth_family_name: str
    given_names: str
    sex: str
    birth_date: date
    birth_place_code: str | None


def normalize(name: str) -> str:
    """A name as compared: accents dropped, upper case, hyphens, apostrophes and every other
    separator one space (DUPONT-DURAND = Dupont Durand, Émilie = EMILIE)."""
    plain = unicodedata.normalize("NFKD", name)
    letters = "".join(c for c in plain if not unicodedata.combining(c)).upper()
    return " ".join("".join(c if c.isalpha() else " " for c in letters).split())


def pivot_from_claims(claims: dict[str, Any]) -> Pivot:
    """The pivot from FranceConnect's claims (OpenID Connect standard names, FranceConnect's
    birthplace and birthcountry). A missing or malformed trait is a PivotError."""

    def text(name: str) -> str:
        value = claims.get(name)
        return value.strip() if isinstance(value, str) else ""

    family = normalize(text("family_name"))
    given = tuple(normalize(text("given_name")).split())
    if not family or not given:
        raise PivotError("le fournisseur d'identité n'a transmis ni nom de naissance ni prénoms")
    try:
        born = date.fromisoformat(text("birthdate"))
    except ValueError:
        raise PivotError(
            "le fournisseur d'identité n'a pas transmis de date de naissance"
        ) from None
    sex = _SEXES.get(text("gender"))
    if sex is None:
        raise PivotError("le fournisseur d'identité n'a pas transmis le sexe")
    country = text("birthcountry") or FRANCE
    place = text("birthplace").upper() or None
    if not (len(country) == 5 and country.startswith("99") and country.isdigit()):
        raise PivotError("le pays de naissance transmis n'est pas un code INSEE de pays")
    if country == FRANCE and (place is None or len(place) != 5):
        raise PivotError("le lieu de naissance transmis n'est pas un code INSEE de commune")
    return Pivot(family, given, born, sex, place if country == FRANCE else None, country)


def mismatches(pivot: Pivot, candidate: Candidate) -> list[str]:
    """Every trait of the record's identity the pivot contradicts (empty: the same person).

    1. Birth date and sex are equal.
    2. The birth name is equal, once both are normalized (:func:`normalize`).
    3. The given names are the same list, in the same order, once normalized.
    4. The birth place is equal to the record's (a commune, or ``99`` + country abroad); a
       record that has none is compared with the place the INS encodes.
    5. The INS itself agrees with the pivot's sex, birth year, month and place (a pivot that
       matched a record's typed identity but not its INS opens nothing).
    """
    out: list[str] = []
    if pivot.birth_date != candidate.birth_date:
        out.append("date de naissance")
    if pivot.sex != candidate.sex:
        out.append("sexe")
    if pivot.family_name != normalize(candidate.birth_family_name):
        out.append("nom de naissance")
    if pivot.given_names != tuple(normalize(candidate.given_names).split()):
        out.append("prénoms")
    place = pivot.place_code
    recorded = (candidate.birth_place_code or "").strip().upper()
    if recorded and place != recorded:
        out.append("lieu de naissance")
    against_ins = identity_mismatches(
        candidate.ins,
        sex=pivot.sex,
        birth_year=pivot.birth_date.year,
        birth_month=pivot.birth_date.month,
        birth_place=place,
    )
    if against_ins:
        out.append("INS")
    return out


def match(pivot: Pivot, candidates: list[Candidate]) -> Ins | None:
    """The one record whose identity the pivot matches on every trait; None when there is
    none, or more than one (two records for one identity is a case for a desk, never a guess)."""
    found = [c.ins for c in candidates if not mismatches(pivot, c)]
    return found[0] if len(found) == 1 else None
