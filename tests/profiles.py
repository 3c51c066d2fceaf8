"""A validator of resources against the PDSm StructureDefinitions (their snapshots), written
for the tests from the FHIR R4 rules for profiles: cardinalities (min/max) of every element,
counted per occurrence of its parent; fixed[x] values (equal) and pattern[x] values (the
instance holds at least the pattern); extension slices discriminated by url; entries of the
search-response Bundles checked against the resource profile of their slice.

Bindings: a *required* binding is checked against its value set, whatever it is: the FHIR
R4 core sets from the ``enum_values`` of the ``fhir.resources`` models (an independent,
published source), the two IHE MHD sets written out below from the MHD guide, the MIME types
by the RFC 6838 grammar; a required set the validator cannot resolve is itself a problem, never
a silent pass. A *preferred* or *extensible* binding to a national set (JDV_J07, J02, J04, J08)
is checked as far as FHIR lets it be: a coding in one of the set's code systems must be one of
its concepts, with the set's display name if it carries one (codes of other systems stay free).

Invariants: every constraint of severity error with a FHIRPath expression is evaluated with
fhirpathpy on each instance of its element (``%resource`` the resource validated); it is broken
when it evaluates to false. fhirpathpy lacks ``hasValue()``: ele-1 ("a value or children") is
checked as FHIR JSON states it (no empty object, array or string, no null, anywhere) and dom-3
("a contained resource is referenced from its container") by looking for its ``#id``; elsewhere
``hasValue()`` is read as ``exists()`` (the same on JSON primitives). An expression fhirpathpy
cannot evaluate is a problem, never a silent pass. The PDSm constraints without an expression
(``constr-bind-*``: which terminologies a code comes from, in words) are not checked.

Not checked: the profiles of data types (IHE identifier profiles).
The StructureDefinitions are test fixtures copied from the FHIR package
ans.fhir.fr.pdsm 3.1.1 (CC0-1.0)."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from fhirpathpy import compile as fhirpath
from fhirpathpy.models import models as fhirpath_models

from dmp.domain import valuesets

PROFILES = Path(__file__).resolve().parent / "fixtures" / "pdsm" / "profiles"
PDSM = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/"

# IHE MHD 4.2 value sets (https://profiles.ihe.net/ITI/MHD/): DocumentReferenceStats holds
# current and superseded; MHDlistTypesVS the two codes of MHDlistTypes.
_MHD = "https://profiles.ihe.net/ITI/MHD/"
MHD_SETS = {
    _MHD + "ValueSet/DocumentReferenceStats": {(None, "current"), (None, "superseded")},
    _MHD + "ValueSet/MHDlistTypesVS": {
        (_MHD + "CodeSystem/MHDlistTypes", "submissionset"),
        (_MHD + "CodeSystem/MHDlistTypes", "folder"),
    },
}
# RFC 6838 4.2: type "/" subtype, restricted names, optional parameters.
_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
MIME_TYPE = re.compile(rf"{_NAME}/{_NAME}(\s*;\s*{_NAME}=(\"[^\"]*\"|[^;\s]+))*")


@cache
def _definitions() -> dict[str, dict[str, Any]]:
    out = {}
    for path in PROFILES.glob("StructureDefinition-*.json"):
        sd = json.loads(path.read_text(encoding="utf-8"))
        out[sd["url"]] = sd
    return out


def known(url: str) -> bool:
    return url in _definitions()


def _children(node: Any, name: str) -> list[Any]:
    """The values of one element name in a node (a choice type value[x] matches valueX)."""
    if not isinstance(node, dict):
        return []
    if name.endswith("[x]"):
        stem = name[:-3]
        found = [v for k, v in node.items() if k.startswith(stem) and k[len(stem) :][:1].isupper()]
    else:
        found = [node[name]] if name in node else []
    out: list[Any] = []
    for value in found:
        out.extend(value if isinstance(value, list) else [value])
    return out


def _matches_pattern(value: Any, pattern: Any) -> bool:
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            _matches_pattern(value.get(k), v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        return all(any(_matches_pattern(i, p) for i in items) for p in pattern)
    return bool(value == pattern)


def _slice_url(element: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> str | None:
    """The url an extension slice is discriminated by: its url child's fixed value, or the
    extension profile of its type."""
    url_child = by_id.get(element["id"] + ".url")
    if url_child and "fixedUri" in url_child:
        return str(url_child["fixedUri"])
    for t in element.get("type", []):
        for profile in t.get("profile", []):
            return str(profile)
    return None


def _core_codes(path: str, by_path: dict[str, dict[str, Any]]) -> frozenset[str] | None:
    """The codes FHIR R4 allows for a coded element of a core type (fhir.resources models)."""
    parent_path, _, field = path.rpartition(".")
    parent = by_path.get(parent_path, {})
    types = [t["code"] for t in parent.get("type", [])]
    if "." not in parent_path or types == ["BackboneElement"]:
        parts = parent_path.split(".")
        module, name = parts[0].lower(), "".join(p[0].upper() + p[1:] for p in parts)
    elif len(types) == 1:
        module, name = types[0].lower(), types[0]
    else:
        return None
    try:
        model = getattr(importlib.import_module(f"fhir.resources.R4B.{module}"), name)
    except (ImportError, AttributeError):
        return None
    if field not in model.model_fields:
        return None
    extra = model.model_fields[field].json_schema_extra or {}
    values = extra.get("enum_values") if isinstance(extra, dict) else None
    return frozenset(values) if isinstance(values, list) else None


def _codings(value: Any) -> list[tuple[str | None, str | None, str | None]]:
    """(system, code, display) of a code, a Coding or a CodeableConcept."""
    if isinstance(value, str):
        return [(None, value, None)]
    if not isinstance(value, dict):
        return []
    codings = value.get("coding", [value])
    return [
        (c.get("system"), c.get("code"), c.get("display")) for c in codings if isinstance(c, dict)
    ]


def _required(eid: str, path: str, vs: str, values: list[Any], by_path: Any) -> list[str]:
    problems = []
    if vs.startswith("http://hl7.org/fhir/ValueSet/mimetypes"):
        return [
            f"{eid}: {v!r} is not a MIME type" for v in values if not MIME_TYPE.fullmatch(str(v))
        ]
    if vs in MHD_SETS:
        allowed = MHD_SETS[vs]
        for v in values:
            codings = _codings(v)
            if not any((s, c) in allowed or (None, c) in allowed for s, c, _ in codings):
                problems.append(f"{eid}: {v!r} is not in the required value set {vs}")
        return problems
    codes = _core_codes(path, by_path)
    if codes is None:
        return [f"{eid}: the required value set {vs} cannot be checked by this validator"]
    for v in values:
        if not any(c in codes for _, c, _ in _codings(v)):
            problems.append(f"{eid}: {v!r} is not in the required value set {vs}")
    return problems


def _national(eid: str, vs: str, values: list[Any]) -> list[str]:
    """A preferred or extensible binding to a national set: codings of its code systems must
    be its concepts, with its display names."""
    for held in valuesets.value_sets().values():
        if vs.split("|")[0].startswith(held.url):
            break
    else:
        return []
    systems = {c.system for c in held.concepts.values()} | {
        f"urn:oid:{c.system_oid}" for c in held.concepts.values()
    }
    problems = []
    for v in values:
        for system, code, display in _codings(v):
            if system not in systems:
                continue
            concept = held.concepts.get(code or "")
            if concept is None:
                problems.append(f"{eid}: {system}|{code} is not a concept of {held.url}")
            elif display is not None and display != concept.display:
                problems.append(f"{eid}: {code} is displayed {display!r}, not {concept.display!r}")
    return problems


def _binding(e: dict[str, Any], values: list[Any], by_path: dict[str, dict[str, Any]]) -> list[str]:
    binding = e.get("binding") or {}
    vs = binding.get("valueSet")
    if not vs or not values:
        return []
    if binding.get("strength") == "required":
        return _required(e["id"], e["path"], vs, values, by_path)
    return _national(e["id"], vs, values)


@cache
def _expression(text: str) -> Callable[..., list[Any]]:
    compiled: Callable[..., list[Any]] = fhirpath(
        text.replace("hasValue()", "exists()"), fhirpath_models["r4"]
    )
    return compiled


def empty_values(node: Any, path: str) -> list[str]:
    """ele-1 as FHIR JSON states it: no element without a value or children."""
    if node is None or node == "" or node == [] or node == {}:
        return [f"{path}: ele-1 (an element has a value or children): {node!r}"]
    problems = []
    if isinstance(node, dict):
        for key, value in node.items():
            problems += empty_values(value, f"{path}.{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            problems += empty_values(value, f"{path}[{n}]")
    return problems


def _references(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["reference"]} if isinstance(node.get("reference"), str) else set()
        return found.union(*(_references(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_references(v) for v in node))
    return set()


def _invariants(e: dict[str, Any], resource: dict[str, Any], done: set[Any]) -> list[str]:
    """The element's FHIRPath constraints, evaluated from the resource's root (so that
    fhirpathpy knows every node's type: ``value`` finds ``valueBoolean``) over every instance
    of its path; slices share their path, each constraint is evaluated once per path."""
    problems = []
    path = e["path"]
    for constraint in e.get("constraint", []):
        key, expression = constraint["key"], constraint.get("expression")
        if constraint.get("severity") != "error" or not expression or key == "ele-1":
            continue
        if (path, key) in done:
            continue
        done.add((path, key))
        if key == "dom-3":
            refs = _references(resource)
            problems += [
                f"{path}: dom-3: contained {c.get('id')!r} is not referenced"
                for c in resource.get("contained") or []
                if f"#{c.get('id')}" not in refs and "#" not in _references(c)
            ]
            continue
        whole = expression if "." not in path else f"{path}.all({expression})"
        try:
            result = _expression(whole)(resource, {"resource": resource})
        except Exception as error:
            problems.append(f"{path}: {key} cannot be evaluated: {error}")
            continue
        if False in result:
            problems.append(f"{path}: {key} broken ({constraint.get('human')})")
    return problems


def validate(resource: dict[str, Any], url: str) -> list[str]:
    """Every way ``resource`` breaks the profile ``url`` (empty: it conforms)."""
    sd = _definitions()[url]
    elements = sd["snapshot"]["element"]
    by_id = {e["id"]: e for e in elements}
    by_path = {e["path"]: e for e in elements if ":" not in e["id"]}
    evaluated: set[tuple[str, str]] = set()
    problems: list[str] = _invariants(elements[0], resource, evaluated)
    # Instances of every element id (slices included), found from their parent's instances.
    instances: dict[str, list[Any]] = {elements[0]["id"]: [resource]}
    for e in elements[1:]:
        eid = e["id"]
        parent_id, _, last = eid.rpartition(".")
        name, _, slice_name = last.partition(":")
        parents = instances.get(parent_id, [])
        per_parent: list[list[Any]] = []
        for parent in parents:
            found = _children(parent, name)
            if slice_name:
                if name in ("extension", "modifierExtension"):
                    wanted = _slice_url(e, by_id)
                    found = [x for x in found if isinstance(x, dict) and x.get("url") == wanted]
                else:
                    found = []  # other slices (identifier, entry) are checked elsewhere
            per_parent.append(found)
        instances[eid] = [x for group in per_parent for x in group]
        if slice_name and name not in ("extension", "modifierExtension"):
            continue
        low = int(e.get("min", 0))
        high = e.get("max", "*")
        for group in per_parent:
            # A slice's parent list is already the sliced one: the base element (extension)
            # counts every extension, each slice only its own.
            if len(group) < low:
                problems.append(f"{eid}: {len(group)} found, at least {low} required")
            if high != "*" and len(group) > int(high):
                problems.append(f"{eid}: {len(group)} found, at most {high} allowed")
        problems += _binding(e, instances[eid], by_path)
        problems += _invariants(e, resource, evaluated)
        for key, expected in e.items():
            if key.startswith("fixed"):
                for value in instances[eid]:
                    if value != expected:
                        problems.append(f"{eid}: {value!r} is not the fixed {expected!r}")
            elif key.startswith("pattern"):
                for value in instances[eid]:
                    if not _matches_pattern(value, expected):
                        problems.append(f"{eid}: {value!r} does not hold the pattern {expected!r}")
    problems += empty_values(resource, elements[0]["id"])
    if resource.get("resourceType") == "Bundle":
        problems += _entries(resource, url)
    return problems


_ENTRY_PROFILES = {
    ("DocumentReference", None): PDSM + "pdsm-comprehensive-document-reference",
    ("List", "submissionset"): PDSM + "pdsm-submissionset-comprehensive",
    ("List", "folder"): PDSM + "pdsm-folder-comprehensive",
}


def _entries(bundle: dict[str, Any], url: str) -> list[str]:
    """Each entry of a find-*-response Bundle against the resource profile of its slice."""
    problems = []
    for n, entry in enumerate(bundle.get("entry") or []):
        res = entry.get("resource") or {}
        kind = res.get("resourceType")
        code = None
        if kind == "List":
            codings = (res.get("code") or {}).get("coding") or [{}]
            code = codings[0].get("code")
        profile = _ENTRY_PROFILES.get((kind, code))
        if profile is None:
            problems.append(f"Bundle.entry[{n}]: a {kind} has no slice in {url}")
            continue
        problems += [f"Bundle.entry[{n}].resource: {p}" for p in validate(res, profile)]
    return problems


def claimed_problems(resource: Any) -> list[str]:
    """Check a resource (and the resources of a Bundle) against every PDSm profile it claims
    in meta.profile."""
    if not isinstance(resource, dict):
        return []
    problems = []
    for url in (resource.get("meta") or {}).get("profile") or []:
        if known(url):
            problems += [f"{url.rsplit('/', 1)[-1]}: {p}" for p in validate(resource, url)]
    for entry in resource.get("entry") or []:
        if isinstance(entry, dict):
            problems += claimed_problems(entry.get("resource"))
    return problems
