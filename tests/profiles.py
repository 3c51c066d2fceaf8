"""A validator of resources against the PDSm StructureDefinitions (their snapshots), written
for the tests from the FHIR R4 rules for profiles: cardinalities (min/max) of every element,
counted per occurrence of its parent; fixed[x] values (equal) and pattern[x] values (the
instance holds at least the pattern); extension slices discriminated by url; entries of the
search-response Bundles checked against the resource profile of their slice.

Not checked (no source in the repository to check them against): bindings to value sets the
guide publishes elsewhere, invariants (FHIRPath constraints), and the profiles of data types
(IHE identifier profiles). The StructureDefinitions are test fixtures copied from the FHIR
package ans.fhir.fr.pdsm 3.1.1 (CC0-1.0)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

PROFILES = Path(__file__).resolve().parent / "fixtures" / "pdsm" / "profiles"
PDSM = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/"


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


def validate(resource: dict[str, Any], url: str) -> list[str]:
    """Every way ``resource`` breaks the profile ``url`` (empty: it conforms)."""
    sd = _definitions()[url]
    elements = sd["snapshot"]["element"]
    by_id = {e["id"]: e for e in elements}
    problems: list[str] = []
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
        for key, expected in e.items():
            if key.startswith("fixed"):
                for value in instances[eid]:
                    if value != expected:
                        problems.append(f"{eid}: {value!r} is not the fixed {expected!r}")
            elif key.startswith("pattern"):
                for value in instances[eid]:
                    if not _matches_pattern(value, expected):
                        problems.append(f"{eid}: {value!r} does not hold the pattern {expected!r}")
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
