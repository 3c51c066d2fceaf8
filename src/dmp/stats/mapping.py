"""The map of France by département, drawn by the server as SVG (no script): each département
coloured by the class of its published share of the population with an active record, with
its name, figure and rank in a title shown on hover and focus, and the same figures in a table.

The outlines come from pygal_maps_fr 1.1.0 (LGPL-3.0-or-later), derived into
``data/departements-map.json`` by ``scripts/derive_map.py``. Overseas collectivities other than
the départements (977, 978, 98x) have no outline: they are in the table only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from dmp.domain.french import percent_fr
from dmp.stats.figures import AdoptionReport, DepartementFigures

# Fixed classes of the share of the population with an active record, in percent: lower
# bound included, upper excluded. A share is never shown more precisely than its class here.
CLASSES: tuple[tuple[float, float | None], ...] = (
    (0, 5),
    (5, 10),
    (10, 15),
    (15, 20),
    (20, 30),
    (30, None),
)
# A sequential palette readable by colour-blind people (ColorBrewer "Blues", 6 classes), and a
# grey for départements whose count is suppressed.
COLOURS = ("#eff3ff", "#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c")
SUPPRESSED_COLOUR = "#bdbdbd"


@cache
def outlines() -> dict[str, Any]:
    raw = resources.files("dmp.stats").joinpath("data/departements-map.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(raw)
    return data


def class_of(share_percent: float) -> int:
    """The index of the class a share (in percent) falls in."""
    for n, (low, high) in enumerate(CLASSES):
        if share_percent >= low and (high is None or share_percent < high):
            return n
    return 0  # a negative share cannot happen; the first class is the floor


def class_label(n: int) -> str:
    low, high = CLASSES[n]
    if high is None:
        return f"{low:g} % et plus"
    return f"de {low:g} à {high:g} %"


@dataclass(frozen=True)
class MapEntry:
    code: str
    name: str
    share: float | None  # percent, from the published (rounded) count; None: suppressed
    rank: int | None
    klass: int | None  # None: suppressed

    @property
    def label(self) -> str:
        if self.share is None:
            return f"{self.name} ({self.code}) : effectif inférieur à 10, non publié"
        return f"{self.name} ({self.code}) : {percent_fr(self.share)}, rang {self.rank}"


def entries(
    departements: list[DepartementFigures], shares: dict[str, float | None]
) -> list[MapEntry]:
    """Every département given with its published share, its rank (1 = the highest
    share; equal shares share a rank) and its class."""
    ranked = sorted((s for s in shares.values() if s is not None), reverse=True)
    out = []
    for f in departements:
        share = shares.get(f.code)
        rank = ranked.index(share) + 1 if share is not None else None
        out.append(
            MapEntry(f.code, f.name, share, rank, class_of(share) if share is not None else None)
        )
    return out


def map_context(report: AdoptionReport, shares: dict[str, float | None]) -> dict[str, Any]:
    """What the SVG template needs: the drawing, each département's shapes and label."""
    data = outlines()
    shapes = data["departements"]
    drawn = []
    for entry in entries(report.departements, shares):
        if entry.code not in shapes:
            continue
        colour = SUPPRESSED_COLOUR if entry.klass is None else COLOURS[entry.klass]
        drawn.append(
            {
                "code": entry.code,
                "label": entry.label,
                "klass": "masque" if entry.klass is None else f"c{entry.klass}",
                "colour": colour,
                "paths": [{"d": d, "transform": t} for d, t in shapes[entry.code]],
            }
        )
    legend = [
        {"klass": f"c{n}", "colour": COLOURS[n], "label": class_label(n)}
        for n in range(len(CLASSES))
    ] + [{"klass": "masque", "colour": SUPPRESSED_COLOUR, "label": "effectif inférieur à 10"}]
    return {"viewBox": data["viewBox"], "departements": drawn, "legend": legend}


def shares_of(figures: list[DepartementFigures], share: Any) -> dict[str, float | None]:
    """Each département's published share in percent (``share`` gives the fraction or None)."""
    out: dict[str, float | None] = {}
    for f in figures:
        value = share(f)
        out[f.code] = None if value is None else 100 * value
    return out
