"""The public statistics pages in HTML: the map, the trends and the page of each département
(jinja2 templates, pygal charts). Kept apart from ``render`` (the figures as text, CSV and
JSON) so that `dmp stats` loads neither jinja2 nor pygal."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from dmp.domain import geo
from dmp.domain.french import date_fr, number_fr, percent_fr
from dmp.stats import mapping, trends
from dmp.stats.figures import AdoptionReport, DepartementFigures, Milestone
from dmp.stats.render import (
    SUPPRESSED,
    cell,
    departement_row,
    published_share,
    report_json,
    thousands,
)

_TEMPLATES = Environment(
    loader=PackageLoader("dmp.stats", "templates"),
    autoescape=select_autoescape(("html", "svg")),
    trim_blocks=False,
)


def _map(report: AdoptionReport) -> dict[str, Any]:
    """The map of France: every département coloured by the class of its published share."""
    return mapping.map_context(report, mapping.shares_of(report.departements, published_share))


def _ranking(report: AdoptionReport) -> list[dict[str, Any]]:
    """The map's figures as a table (its accessible twin), by département code: the
    départements whose share is published (the others are counted apart, not listed)."""
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
        if e.share is not None
    ]


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
    ranking = _ranking(report)
    return _TEMPLATES.get_template("stats.html").render(
        suppressed=SUPPRESSED,
        map=_map(report),
        ranking=ranking,
        hidden_count=len(geo.geography().departements) - len(ranking),
        trends=national_trends(report),
        rows=[[cell(k, r[k]) for k in _COLUMNS] for r in data["departements"]],
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
    return _charts(report, [], where)


def _charts(report: AdoptionReport, milestones: list[Milestone], where: str) -> dict[str, Any]:
    openings = report.keys.get("openings_per_month", {})
    return {
        "openings": trends.openings_chart(report.openings_per_month, openings, where),
        "cumulative": trends.cumulative_chart(
            report.openings_per_month, openings, milestones, where, _closures(report)
        ),
        "channels": trends.channels_chart(
            report.channels_per_month, report.keys.get("channels_per_month", {}), where
        ),
    }


def _closures(report: AdoptionReport) -> tuple[dict[str, int], dict[str, int]] | None:
    """Closures by month and their cell keys, when the report starts at the origin (records
    active at the end of a month need every opening and closure before it)."""
    if report.period[0] is not None:
        return None
    return report.closures_per_month, report.keys.get("closures_per_month", {})


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
            cell("records_opened_total", row["records_opened_total"]),
        ),
        ("Dossiers actifs", cell("records_active", row["records_active"])),
        ("Dossiers clos", cell("records_closed", row["records_closed"])),
        (
            "Part de la population disposant d'un dossier actif",
            SUPPRESSED if entry.share is None else percent_fr(entry.share),
        ),
        ("Rang parmi les départements", "—" if entry.rank is None else str(entry.rank)),
        ("Comptes activés", cell("accounts_activated", row["accounts_activated"])),
        ("Documents déposés", cell("documents", row["documents"])),
    ]
    where = f"{f.name} ({f.code})"
    return _TEMPLATES.get_template("departement.html").render(
        name=f.name,
        code=f.code,
        figures=figures,
        suppressed=SUPPRESSED,
        **_charts(report, report.milestones, where),
        milestones=_milestones_fr(report),
    )
