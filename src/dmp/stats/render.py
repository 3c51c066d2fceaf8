"""Render the adoption report: every count is published perturbed by its cell key, and shown
as "< 10" when the perturbed count is under 10, so that a figure never singles out a person.

The method (docs/statistics.md, after the ABS cell-key method): a figure's cell key (the XOR of
the keyed numbers of the counter buckets it adds up, ``dmp.stats.figures``) gives it an offset
from 0 to 9, ``key mod 10``; the published figure is the count plus its offset, rounded down to
ten, or "< 10" when that is under 10. The same data always publishes the same figure, however it
is asked for; the figure is within 9 of the count and, over cells, unbiased; every difference of
published counts is a multiple of ten; and one who adds events to a cell one at a time until it
changes learns the count plus an offset they cannot know, never the count."""

from __future__ import annotations

import csv
import io
from typing import Any

from dmp.domain.french import number_fr, percent_fr
from dmp.stats.figures import AdoptionReport, DepartementFigures

SUPPRESSED = "< 10"
THRESHOLD = 10
ROUNDING = 10  # published counts are multiples of this
MODES = ("normal", "bris_de_glace", "centre_15")


def thousands(n: int) -> str:
    return number_fr(n)


def perturbed(n: int, key: int) -> int | None:
    """The count plus its cell's offset, rounded down to ten; None when under 10."""
    x = n + key % ROUNDING
    return None if x < THRESHOLD else x - x % ROUNDING


def publish(n: int, key: int) -> int | str:
    """The published form of a count of cell key ``key``."""
    value = perturbed(n, key)
    return SUPPRESSED if value is None else value


def published_share(f: DepartementFigures) -> float | None:
    """Active records as a share of the population, from the published count; None when the
    count is suppressed."""
    active = perturbed(f.active, f.key("active"))
    if active is None or not f.population:
        return None
    return active / f.population


def _share(f: DepartementFigures) -> float | str:
    share = published_share(f)
    return SUPPRESSED if share is None else round(100 * share, 5)


def departement_row(f: DepartementFigures) -> dict[str, Any]:
    def pub(name: str, n: int) -> int | str:
        return publish(n, f.key(name))

    return {
        "departement": f.code,
        "name": f.name,
        "population": f.population,
        "records_opened": pub("opened", f.opened),
        "records_opened_total": pub("opened_total", f.opened_total),
        "records_active": pub("active", f.active),
        "records_closed": pub("closed", f.closed),
        "penetration_percent": _share(f),
        "accounts_activated": pub("activated", f.activated),
        "documents": pub("documents", f.documents),
        **{f"accesses_{m}": pub(f"accesses:{m}", f.accesses.get(m, 0)) for m in MODES},
        "channels": {k: pub(f"channels:{k}", v) for k, v in sorted(f.channels.items())},
        "structure_kinds": {
            k: pub(f"structure_kinds:{k}", v) for k, v in sorted(f.structure_kinds.items())
        },
    }


def accesses_of(f: DepartementFigures) -> int | str:
    """Every consultation of a département, all modes (a cell of its own buckets)."""
    key = 0
    for m in f.accesses:
        key ^= f.key(f"accesses:{m}")
    return publish(sum(f.accesses.values()), key)


def series(report: AdoptionReport, name: str) -> dict[str, int | str]:
    values: dict[str, int] = getattr(report, name)
    return {k: publish(v, report.key(name, k)) for k, v in values.items()}


def with_data(report: AdoptionReport) -> list[DepartementFigures]:
    return [f for f in report.departements if f.opened_total or f.documents or f.opened]


def report_json(report: AdoptionReport, *, all_departements: bool = False) -> dict[str, Any]:
    rows = report.departements if all_departements else with_data(report)
    return {
        "period": {"from": report.period[0], "to": report.period[1]},
        "suppression": (
            f"each count plus its cell's secret offset (0 to {ROUNDING - 1}) is rounded down to "
            f"{ROUNDING}, and shown as {SUPPRESSED!r} when under {THRESHOLD}"
        ),
        "departements": [departement_row(f) for f in rows],
        "openings_per_month": series(report, "openings_per_month"),
        "closures_per_month": series(report, "closures_per_month"),
        "documents_per_type": series(report, "documents_per_type"),
        "documents_per_month": series(report, "documents_per_month"),
        "accesses_per_mode": series(report, "accesses_per_mode"),
        "milestones": [
            {
                "departement": m.departement,
                "name": m.name,
                "threshold": m.threshold,
                "reached_at": m.reached_at.isoformat(),
                "structure": m.structure_id,
                "structure_name": m.structure_name,
                "channel": m.channel,
            }
            for m in report.milestones
        ],
    }


_FLAT = (
    "departement",
    "name",
    "population",
    "records_opened",
    "records_opened_total",
    "records_active",
    "records_closed",
    "penetration_percent",
    "accounts_activated",
    "documents",
    "accesses_normal",
    "accesses_bris_de_glace",
    "accesses_centre_15",
)


def report_csv(report: AdoptionReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_FLAT)
    for f in with_data(report):
        row = departement_row(f)
        writer.writerow([row[k] for k in _FLAT])
    return out.getvalue()


def report_table(report: AdoptionReport) -> str:
    headers = (
        "dépt",
        "nom",
        "population",
        "ouverts",
        "actifs",
        "clos",
        "pénétration %",
        "activés",
        "documents",
        "accès",
    )
    lines = []
    for f in with_data(report):
        r = departement_row(f)
        lines.append(
            (
                f.code,
                f.name[:24],
                number_fr(f.population),
                cell("records_opened", r["records_opened"]),
                cell("records_active", r["records_active"]),
                cell("records_closed", r["records_closed"]),
                cell("penetration_percent", r["penetration_percent"]),
                cell("accounts_activated", r["accounts_activated"]),
                cell("documents", r["documents"]),
                cell("accesses", accesses_of(f)),
            )
        )
    widths = [
        max(len(h), *(len(x[i]) for x in lines)) if lines else len(h) for i, h in enumerate(headers)
    ]
    text = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    text += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    period = report.period
    if period[0] or period[1]:
        text.insert(0, f"période : {period[0] or '…'} → {period[1] or '…'}")
    if not lines:
        text.append("(aucun dossier)")
    for m in report.milestones:
        who = m.structure_name or m.structure_id or "—"
        text.append(
            f"jalon : {thousands(m.threshold)}e dossier de {m.name} ({m.departement}) ouvert le "
            f"{m.reached_at:%d/%m/%Y} par {who} ({m.channel})"
        )
    return "\n".join(text)


def cell(key: str, value: Any) -> str:
    """A figure of a row as a table shows it (French notation)."""
    if key == "penetration_percent" and isinstance(value, float):
        return percent_fr(value).removesuffix("\u202f%")
    if isinstance(value, int) and key != "departement":
        return number_fr(value)
    return str(value)
