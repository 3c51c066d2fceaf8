#!/usr/bin/env python3
"""Derive src/dmp/domain/data/departements.json and postcodes.json from the npm package
@etalab/decoupage-administratif (MIT licence), reproducibly.

    python3 scripts/derive_departements.py            # needs npm and the npm registry

It downloads the pinned package version with `npm pack`, sums the legal population of the
current communes (type "commune-actuelle") of each département, and lists the commune codes whose
département is not given by their prefix (some associated communes). It also writes, for each
postal code, the current communes it serves (INSEE code and name): a Patient's postal code maps
to its commune, with the city name to choose when several share it. The outputs record the
source, version and licence.
"""

from __future__ import annotations

import collections
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@etalab/decoupage-administratif"
VERSION = "6.0.0"
OUT = Path(__file__).resolve().parents[1] / "src" / "dmp" / "domain" / "data" / "departements.json"
POSTCODES = OUT.with_name("postcodes.json")


def prefix_departement(code: str) -> str:
    return code[:3] if code[:2] in ("97", "98") else code[:2]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"],
            cwd=tmp,
            check=True,
            capture_output=True,
        )
        tgz = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp, filter="data")
        data = Path(tmp) / "package" / "data"
        departements = json.loads((data / "departements.json").read_text(encoding="utf-8"))
        communes = json.loads((data / "communes.json").read_text(encoding="utf-8"))
        licence = (Path(tmp) / "package" / "package.json").read_text(encoding="utf-8")
        licence_text = (Path(tmp) / "package" / "LICENSE").read_text(encoding="utf-8")
    population: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    exceptions: dict[str, str] = {}
    for c in communes:
        dept = c.get("departement")
        if not dept:
            continue
        if c["type"] == "commune-actuelle":
            population[dept] += int(c.get("population") or 0)
            count[dept] += 1
        if prefix_departement(c["code"]) != dept:
            exceptions[c["code"]] = dept
    out = {
        "source": f"npm {PACKAGE}@{VERSION} (data/departements.json, data/communes.json)",
        "licence": "MIT" if '"license": "MIT"' in licence else "see package",
        "derived_by": "scripts/derive_departements.py",
        "population": "sum of the legal population of current communes (commune-actuelle)",
        "departements": [
            {
                "code": d["code"],
                "name": d["nom"],
                "region": d["region"],
                "zone": d["zone"],
                "population": population[d["code"]],
                "communes": count[d["code"]],
            }
            for d in departements
        ],
        "commune_exceptions": dict(sorted(exceptions.items())),
    }
    OUT.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    postcodes: dict[str, list[list[str]]] = collections.defaultdict(list)
    for c in communes:
        if c["type"] == "commune-actuelle":
            for postal in c.get("codesPostaux") or []:
                postcodes[postal].append([c["code"], c["nom"]])
    POSTCODES.write_text(
        json.dumps(
            {
                "source": f"npm {PACKAGE}@{VERSION} (data/communes.json, codesPostaux)",
                "derived_by": "scripts/derive_departements.py",
                "postcodes": {k: sorted(v) for k, v in sorted(postcodes.items())},
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        + "\n",
        encoding="utf-8",
    )
    OUT.with_name("LICENSE-decoupage-administratif").write_text(licence_text, encoding="utf-8")
    print(f"wrote {OUT}: {len(out['departements'])} départements, {len(exceptions)} exceptions")


if __name__ == "__main__":
    main()
