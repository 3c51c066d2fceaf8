#!/usr/bin/env python3
"""Copy the CI-SIS XDS value sets (IHE SVS files) into the package and derive the compact
index the service reads at run time, reproducibly.

    python3 scripts/derive_valuesets.py                  # from the copies in the repository
    python3 scripts/derive_valuesets.py NEW_SVS_DIRECTORY    # take newer SVS files first

The SVS files (from the ANS CI-SIS test content repository ansforge/TestContenuCDA-3-0, folder
jeuxDeValeurs/) are kept unchanged in src/dmp/domain/data/valuesets/; given a directory, the
script first copies the five files from it there. It then writes src/dmp/domain/data/
valuesets.json, listing per value set its OID, canonical URL, dates and concepts [code,
codeSystem, displayName]. It refuses a file that does not parse or holds no concept, and a code
listed twice in one system.
"""

from __future__ import annotations

import json
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "src" / "dmp" / "domain" / "data" / "valuesets"
INDEX = ROOT / "src" / "dmp" / "domain" / "data" / "valuesets.json"
SVS = "{urn:ihe:iti:svs:2008}"
# The sets the service uses, by the XDS metadata they bind.
SETS = {
    "JDV_J07_XdsTypeCode_CISIS.xml": "type",
    "JDV_J01_XdsAuthorSpecialty_CISIS.xml": "author_specialty",
    "JDV_J02_XdsHealthcareFacilityTypeCode_CISIS.xml": "facility_type",
    "JDV_J04_XdsPracticeSettingCode_CISIS.xml": "practice_setting",
    "JDV_J08_XdsConfidentialityCode_CISIS.xml": "confidentiality",
}


def read(path: Path) -> dict[str, object]:
    root = ET.parse(path).getroot()  # noqa: S314 - our own copies of published files
    vs = root.find(f"{SVS}ValueSet")
    if vs is None:
        raise SystemExit(f"{path.name}: no ValueSet element")
    concepts = [
        [c.get("code", ""), c.get("codeSystem", ""), c.get("displayName", "")]
        for c in vs.iter(f"{SVS}Concept")
    ]
    if not concepts or any(not code or not system for code, system, _ in concepts):
        raise SystemExit(f"{path.name}: no concepts, or a concept without code or system")
    seen = set()
    for code, system, _ in concepts:
        if (code, system) in seen:
            raise SystemExit(f"{path.name}: {code} listed twice in {system}")
        seen.add((code, system))
    return {
        "file": path.name,
        "oid": vs.get("id"),
        "url": vs.get("urlFichier"),
        "revision": vs.get("revisionDate"),
        "concepts": concepts,
    }


def main() -> int:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    index = {
        "source": "ANS CI-SIS test content, ansforge/TestContenuCDA-3-0, jeuxDeValeurs/ "
        "(commit 7cd489b, 2025-02-19), copied unchanged",
        "sets": {},
    }
    for name, binding in SETS.items():
        if source is not None:
            shutil.copyfile(source / name, OUT_DIR / name)
        index["sets"][binding] = read(OUT_DIR / name)  # type: ignore[index]
    INDEX.write_text(json.dumps(index, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for binding, data in index["sets"].items():  # type: ignore[attr-defined]
        print(f"{binding}: {len(data['concepts'])} concepts ({data['file']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
