"""Render the adoption report. Every count under 10 is shown as "< 10" (small-count
suppression: a figure must never single out a person), and so is any share computed from one.
Every other count is rounded to the nearest ten, and shares are computed from the rounded
count: a suppressed figure cannot be recovered by subtracting published ones (closed = opened -
active, a channel = the openings - the other channels, a month = one period - another), since
every difference of published counts is a multiple of ten. See docs/statistics.md."""

from __future__ import annotations

import csv
import io
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from dmp.access.statistics import AdoptionReport, DepartementFigures
from dmp.domain.french import date_fr, number_fr, percent_fr
from dmp.stats import mapping, trends

SUPPRESSED = "< 10"
THRESHOLD = 10
ROUNDING = 10  # published counts are multiples of this
MODES = ("normal", "bris_de_glace", "centre_15")


def thousands(n: int) -> str:
    return number_fr(n)


def rounded(n: int) -> int:
    """To the nearest ten, halves up (monotone: a larger count never publishes smaller)."""
    return (n + ROUNDING // 2) // ROUNDING * ROUNDING


def suppress(n: int) -> int | str:
    """The published form of a count: "< 10" under the threshold, else rounded to ten."""
    return rounded(n) if n >= THRESHOLD else SUPPRESSED


def published_share(f: DepartementFigures) -> float | None:
    """Active records as a share of the population, from the published (rounded) count; None
    when the count is suppressed."""
    if f.active < THRESHOLD or not f.population:
        return None
    return rounded(f.active) / f.population


def _share(f: DepartementFigures) -> float | str:
    share = published_share(f)
    return SUPPRESSED if share is None else round(100 * share, 5)


def departement_row(f: DepartementFigures) -> dict[str, Any]:
    return {
        "departement": f.code,
        "name": f.name,
        "population": f.population,
        "records_opened": suppress(f.opened),
        "records_opened_total": suppress(f.opened_total),
        "records_active": suppress(f.active),
        "records_closed": suppress(f.closed),
        "penetration_percent": _share(f),
        "accounts_activated": suppress(f.activated),
        "documents": suppress(f.documents),
        **{f"accesses_{m}": suppress(f.accesses.get(m, 0)) for m in MODES},
        "channels": {k: suppress(v) for k, v in sorted(f.channels.items())},
        "structure_kinds": {k: suppress(v) for k, v in sorted(f.structure_kinds.items())},
    }


def with_data(report: AdoptionReport) -> list[DepartementFigures]:
    return [f for f in report.departements if f.opened_total or f.documents or f.opened]


def report_json(report: AdoptionReport, *, all_departements: bool = False) -> dict[str, Any]:
    rows = report.departements if all_departements else with_data(report)
    return {
        "period": {"from": report.period[0], "to": report.period[1]},
        "suppression": (
            f"counts under {THRESHOLD} are shown as {SUPPRESSED!r}; "
            f"other counts are rounded to the nearest {ROUNDING}"
        ),
        "departements": [departement_row(f) for f in rows],
        "openings_per_month": {k: suppress(v) for k, v in report.openings_per_month.items()},
        "closures_per_month": {k: suppress(v) for k, v in report.closures_per_month.items()},
        "documents_per_type": {k: suppress(v) for k, v in report.documents_per_type.items()},
        "documents_per_month": {k: suppress(v) for k, v in report.documents_per_month.items()},
        "accesses_per_mode": {k: suppress(v) for k, v in report.accesses_per_mode.items()},
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
        accesses = sum(f.accesses.values())
        lines.append(
            (
                f.code,
                f.name[:24],
                number_fr(f.population),
                _cell("records_opened", r["records_opened"]),
                _cell("records_active", r["records_active"]),
                _cell("records_closed", r["records_closed"]),
                _cell("penetration_percent", r["penetration_percent"]),
                _cell("accounts_activated", r["accounts_activated"]),
                _cell("documents", r["documents"]),
                _cell("accesses", suppress(accesses)),
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


_TEMPLATES = Environment(
    loader=PackageLoader("dmp.stats", "templates"),
    autoescape=select_autoescape(("html", "svg")),
    trim_blocks=False,
)


def _map(report: AdoptionReport) -> dict[str, Any]:
    """The map of France: every département coloured by the class of its published share."""
    return mapping.map_context(report, mapping.shares_of(report.departements, published_share))


def _ranking(report: AdoptionReport) -> list[dict[str, Any]]:
    """The map's figures as a table (its accessible twin), by département code."""
    shares = mapping.shares_of(report.departements, published_share)
    return [
        {
            "code": e.code,
            "name": e.name,
            "share": SUPPRESSED if e.share is None else percent_fr(e.share),
            "rank": "—" if e.rank is None else str(e.rank),
            "klass": "effectif inférieur à 10" if e.klass is None else mapping.class_label(e.klass),
        }
        for e in mapping.entries(report.departements, shares)
    ]


def _cell(key: str, value: Any) -> str:
    if key == "penetration_percent" and isinstance(value, float):
        return percent_fr(value).removesuffix("\u202f%")
    if isinstance(value, int) and key != "departement":
        return number_fr(value)
    return str(value)


_COLUMNS = (
    "departement",
    "name",
    "population",
    "records_opened_total",
    "records_active",
    "penetration_percent",
    "accounts_activated",
    "documents",
)


def html_page(report: AdoptionReport) -> str:
    """The public page (Jinja2, autoescaped): the chart, the table, the milestones."""
    data = report_json(report)
    return _TEMPLATES.get_template("stats.html").render(
        suppressed=SUPPRESSED,
        map=_map(report),
        ranking=_ranking(report),
        trends=national_trends(report),
        rows=[[_cell(k, r[k]) for k in _COLUMNS] for r in data["departements"]],
        milestones=[
            {
                "threshold": thousands(m["threshold"]),
                "name": m["name"],
                "departement": m["departement"],
                "date": m["reached_at"][:10],
                "by": m["structure_name"] or m["structure"] or "—",
                "channel": m["channel"],
            }
            for m in data["milestones"]
        ],
    )


def _milestones_fr(report: AdoptionReport) -> list[dict[str, str]]:
    return [
        {
            "threshold": number_fr(m.threshold),
            "name": m.name,
            "departement": m.departement,
            "date": date_fr(m.reached_at),
            "by": m.structure_name or m.structure_id or "—",
            "channel": trends.CHANNELS.get(m.channel, m.channel),
        }
        for m in report.milestones
    ]


def national_trends(report: AdoptionReport) -> dict[str, Any]:
    where = "France entière" if len(report.departements) > 1 else report.departements[0].name
    return {
        "openings": trends.openings_chart(report.openings_per_month, where),
        "cumulative": trends.cumulative_chart(
            report.openings_per_month, [], where, _closures(report)
        ),
        "channels": trends.channels_chart(report.channels_per_month, where),
    }


def _closures(report: AdoptionReport) -> dict[str, int] | None:
    """Closures by month, when the report starts at the origin (records active at the end of
    a month need every opening and closure before it)."""
    return report.closures_per_month if report.period[0] is None else None


def absent_page(asked: str) -> str:
    """The page for a code that is no département (404)."""
    return _TEMPLATES.get_template("absent.html").render(asked=asked[:20])


def departement_page(report: AdoptionReport, everywhere: list[DepartementFigures]) -> str:
    """The page of one département (``/stats/37``): its figures and rank, its trends, its
    milestones and its channel mix. ``everywhere`` (every département's totals) gives the
    rank."""
    f = report.departements[0]
    shares = mapping.shares_of(everywhere, published_share)
    entry = next(e for e in mapping.entries(everywhere, shares) if e.code == f.code)
    row = departement_row(f)
    figures = [
        ("Population légale", number_fr(f.population)),
        (
            "Dossiers ouverts depuis l'origine",
            _cell("records_opened_total", row["records_opened_total"]),
        ),
        ("Dossiers actifs", _cell("records_active", row["records_active"])),
        ("Dossiers clos", _cell("records_closed", row["records_closed"])),
        (
            "Part de la population disposant d'un dossier actif",
            SUPPRESSED if entry.share is None else percent_fr(entry.share),
        ),
        ("Rang parmi les départements", "—" if entry.rank is None else str(entry.rank)),
        ("Comptes activés", _cell("accounts_activated", row["accounts_activated"])),
        ("Documents déposés", _cell("documents", row["documents"])),
    ]
    where = f"{f.name} ({f.code})"
    return _TEMPLATES.get_template("departement.html").render(
        name=f.name,
        code=f.code,
        figures=figures,
        suppressed=SUPPRESSED,
        openings=trends.openings_chart(report.openings_per_month, where),
        cumulative=trends.cumulative_chart(
            report.openings_per_month, report.milestones, where, _closures(report)
        ),
        channels=trends.channels_chart(report.channels_per_month, where),
        milestones=_milestones_fr(report),
    )
