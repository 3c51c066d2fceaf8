"""The CI-SIS XDS value sets (JDV_J07 document types, J01 author specialties, J02 facility
types, J04 practice settings, J08 confidentiality), read from the package's copy of the ANS
SVS files (``scripts/derive_valuesets.py`` derives ``data/valuesets.json`` from them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

# FHIR canonical URIs of the code systems the sets use, where FHIR names one.
_NOS = "https://mos.esante.gouv.fr/NOS/"
SYSTEM_URIS = {
    "2.16.840.1.113883.6.1": "http://loinc.org",
    "2.16.840.1.113883.5.25": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
    "1.2.250.1.213.1.1.4.12": _NOS
    + "TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire",
    "1.2.250.1.71.4.2.4": _NOS + "TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite",
    "1.2.250.1.213.1.1.4.9": _NOS + "TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice",
    "1.2.250.1.213.1.1.4.13": _NOS
    + "TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument",
}


@dataclass(frozen=True)
class Concept:
    code: str
    system_oid: str
    display: str

    @property
    def system(self) -> str:
        """The coding system as FHIR writes it: a canonical URI, or ``urn:oid:``."""
        if self.system_oid in SYSTEM_URIS:
            return SYSTEM_URIS[self.system_oid]
        oid_like = self.system_oid.replace(".", "").isdigit()
        return f"urn:oid:{self.system_oid}" if oid_like else self.system_oid


@dataclass(frozen=True)
class ValueSet:
    name: str
    oid: str
    url: str
    concepts: dict[str, Concept]  # by code

    def __contains__(self, code: object) -> bool:
        return code in self.concepts

    def display(self, code: str) -> str | None:
        concept = self.concepts.get(code)
        return concept.display if concept else None


@cache
def value_sets() -> dict[str, ValueSet]:
    raw = json.loads(
        resources.files("dmp.domain").joinpath("data/valuesets.json").read_text(encoding="utf-8")
    )
    out = {}
    for binding, data in raw["sets"].items():
        concepts = {
            code: Concept(code, system, display) for code, system, display in data["concepts"]
        }
        out[binding] = ValueSet(binding, data["oid"], data["url"], concepts)
    return out


def document_types() -> ValueSet:
    """JDV_J07-XdsTypeCode-CISIS."""
    return value_sets()["type"]


def practice_settings() -> ValueSet:
    return value_sets()["practice_setting"]


def facility_types() -> ValueSet:
    return value_sets()["facility_type"]


def author_specialties() -> ValueSet:
    return value_sets()["author_specialty"]


def confidentiality_codes() -> ValueSet:
    return value_sets()["confidentiality"]
