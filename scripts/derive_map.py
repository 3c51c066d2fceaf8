#!/usr/bin/env python3
"""Derive src/dmp/stats/data/departements-map.json, the outline of every French département
(metropolitan, Corsica's 2A/2B, and the five overseas départements in insets), from the PyPI
package pygal_maps_fr 1.1.0 (LGPL-3.0-or-later), reproducibly.

    python3 scripts/derive_map.py            # needs pip and the PyPI registry

It downloads the pinned wheel with `pip download`, reads its fr.departments.svg (a group of
paths per département, classes z01 .. z976), and writes each département's path data with the
drawing's viewBox and offset. The licence texts go beside it (LGPL-3 and the GPL-3 it extends,
from Debian's common-licenses).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lxml import etree

PACKAGE, VERSION = "pygal_maps_fr", "1.1.0"
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "dmp" / "stats" / "data" / "departements-map.json"
SVG = "{http://www.w3.org/2000/svg}"


NUMBER = re.compile(r"-?\d+\.\d+")


def _coarse(d: str) -> str:
    """Coordinates to one decimal: a tenth of a unit of a 2000-unit drawing is invisible, and
    the page is a third lighter."""
    return NUMBER.sub(lambda m: f"{float(m.group()):.1f}".rstrip("0").rstrip("."), d)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             f"{PACKAGE}=={VERSION}", "--dest", tmp],
            check=True,
        )  # fmt: skip
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            raw = zf.read("pygal_maps_fr/fr.departments.svg")
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.fromstring(raw, parser)
    # Three drawings: metropolitan France (with an offset), an inset of Paris and its inner
    # ring, and the overseas départements; each shape keeps its drawing's transform.
    shapes: dict[str, list[list[str | None]]] = {}
    for drawing in root.findall(f"{SVG}g"):
        transform = drawing.get("transform")
        for group in drawing.iter(f"{SVG}g"):
            classes = (group.get("class") or "").split()
            if "departement" not in classes:
                continue
            code = next(c[1:] for c in classes if c.startswith("z"))
            for path in group.iter(f"{SVG}path"):
                if path.get("transform"):
                    raise SystemExit(f"{code}: a path with its own transform is not handled")
                shapes.setdefault(code, []).append([_coarse(path.get("d", "")), transform])
    out = {
        "source": f"PyPI {PACKAGE} {VERSION} (pygal_maps_fr/fr.departments.svg)",
        "licence": "LGPL-3.0-or-later (LICENSE-pygal_maps_fr)",
        "derived_by": "scripts/derive_map.py",
        "viewBox": root.get("viewBox"),
        "departements": dict(sorted(shapes.items())),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, separators=(",", ":")) + "\n", encoding="utf-8")
    licences = Path("/usr/share/common-licenses")
    with OUT.with_name("LICENSE-pygal_maps_fr").open("w", encoding="utf-8") as fh:
        fh.write(
            f"The map outlines come from {PACKAGE} {VERSION}, under the GNU LGPL v3 or later.\n\n"
        )
        for name in ("LGPL-3", "GPL-3"):
            fh.write((licences / name).read_text(encoding="utf-8") + "\n")
    print(f"wrote {OUT}: {len(shapes)} départements")
    return 0


if __name__ == "__main__":
    sys.exit(main())
