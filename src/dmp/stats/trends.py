"""Trends drawn by the server with pygal: records opened per month, records opened to date with
the milestones marked, and the mix of opening channels over time. Every chart has its axes and
units, a scale from zero, French labels, and only published figures (each count perturbed by its
cell key, left out when under 10, as everywhere: docs/statistics.md). No script: pygal's own is
removed, the SVG needs none."""

from __future__ import annotations

import itertools
import operator
from typing import Any

import pygal
from lxml import etree
from markupsafe import Markup
from pygal.style import Style

from dmp.domain.french import MONTHS, number_fr
from dmp.stats.figures import Milestone
from dmp.stats.render import perturbed

CHANNELS = {
    "pharmacy": "pharmacie",
    "online": "en ligne",
    "insurer_desk": "accueil de l'Assurance maladie",
    "health_facility": "établissement de santé",
    "professional": "professionnel de santé",
    "insurer_provisioning": "ouverture automatique",
}
STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#1e1e1e",
    foreground_strong="#1e1e1e",
    foreground_subtle="#666666",
    colors=("#08519c", "#e6550d", "#31a354", "#756bb1", "#636363", "#de2d26"),
    font_family="sans-serif",
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=12,
    title_font_size=15,
)


def month_fr(month: str) -> str:
    """2026-03 -> mars 2026."""
    year, number = month.split("-")
    return f"{MONTHS[int(number) - 1]} {year}"


def _months(first: str, last: str) -> list[str]:
    """Every month from first to last (the charts show months without openings too)."""
    y, m = int(first[:4]), int(first[5:])
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _svg(chart: Any, label: str) -> Markup:
    """The chart's SVG without pygal's script and comments, labelled for screen readers."""
    root = etree.fromstring(chart.render(is_unicode=True).encode("utf-8"))
    for node in list(root.iter("{*}script")) + list(root.iter(etree.Comment)):
        node.getparent().remove(node)
    root.set("role", "img")
    root.set("aria-label", label)
    # pygal builds the SVG with lxml (every text escaped); its script is gone.
    return Markup(etree.tostring(root, encoding="unicode"))  # noqa: S704


def _config() -> dict[str, Any]:
    return {
        "style": STYLE,
        "js": [],
        "disable_xml_declaration": True,
        "width": 760,
        "height": 320,
        "include_x_axis": True,  # the scale starts at zero
        "value_formatter": lambda v: number_fr(int(v)) if v is not None else "< 10",
        "x_label_rotation": 30,
        "show_minor_x_labels": False,
        "truncate_label": -1,
        "truncate_legend": -1,
        "legend_at_bottom": True,
    }


def openings_chart(per_month: dict[str, int], keys: dict[str, int], where: str) -> Markup | None:
    """Records opened per month (bars), published figures only."""
    if not per_month:
        return None
    months = _months(min(per_month), max(per_month))
    chart = pygal.Bar(**_config(), show_legend=False, y_title="dossiers ouverts par mois")
    chart.title = f"Dossiers ouverts chaque mois — {where}"
    chart.x_labels = [month_fr(m) for m in months]
    chart.x_labels_major = [month_fr(m) for m in months[:: max(1, len(months) // 12)]]
    values = [perturbed(per_month.get(m, 0), keys.get(m, 0)) for m in months]
    if all(v is None for v in values):
        return None  # every month under 10: nothing to draw (the page says why)
    chart.add("dossiers ouverts", values)
    return _svg(chart, f"Histogramme des dossiers ouverts par mois, {where}")


def cumulative_chart(
    per_month: dict[str, int],
    keys: dict[str, int],
    milestones: list[Milestone],
    where: str,
    closures: tuple[dict[str, int], dict[str, int]] | None = None,
) -> Markup | None:
    """Records opened to date, month by month, with the milestones reached marked; with
    ``closures`` (records closed per month from the origin, and their cell keys), the records
    active at the end of each month too. A point to date adds up the buckets of every month
    before it: its cell key is the XOR of theirs (the last point is the total's own cell)."""
    if not per_month:
        return None
    months = _months(min(per_month), max([*per_month, *(closures[0] if closures else {})]))
    running = list(itertools.accumulate(per_month.get(m, 0) for m in months))
    running_keys = list(itertools.accumulate((keys.get(m, 0) for m in months), operator.xor))
    reached = {f"{m.reached_at:%Y-%m}": m for m in milestones}
    # A few months draw few points: bigger dots, so that a one-month curve still shows.
    chart = pygal.Line(**_config(), y_title="dossiers", dots_size=2 if len(months) > 3 else 6)
    chart.title = f"Dossiers ouverts depuis l'origine, dossiers actifs, et jalons — {where}"
    chart.x_labels = [month_fr(m) for m in months]
    chart.x_labels_major = [month_fr(m) for m in months[:: max(1, len(months) // 12)]]
    opened = [perturbed(n, k) for n, k in zip(running, running_keys, strict=True)]
    if all(v is None for v in opened):
        return None  # the total itself is under 10
    chart.add("dossiers ouverts (cumul)", opened)
    if closures is not None:
        closed_counts, closed_keys = closures
        closed = itertools.accumulate(closed_counts.get(m, 0) for m in months)
        closed_key = itertools.accumulate((closed_keys.get(m, 0) for m in months), operator.xor)
        chart.add(
            "dossiers actifs en fin de mois",
            [
                perturbed(n - c, k ^ ck)
                for n, c, k, ck in zip(running, closed, running_keys, closed_key, strict=True)
            ],
        )
    chart.add(
        "jalon atteint",
        [
            {"value": reached[m].threshold, "label": f"{number_fr(reached[m].threshold)}e dossier"}
            if m in reached
            else None
            for m in months
        ],
        stroke=False,
        dots_size=6,
    )
    return _svg(
        chart, f"Courbe des dossiers ouverts depuis l'origine et des dossiers actifs, {where}"
    )


def channels_chart(
    per_month: dict[str, dict[str, int]], keys: dict[str, int], where: str
) -> Markup | None:
    """The mix of opening channels month by month (stacked bars)."""
    if not per_month:
        return None
    months = _months(min(per_month), max(per_month))
    channels = sorted({c for mix in per_month.values() for c in mix})
    chart = pygal.StackedBar(**_config(), y_title="dossiers ouverts par mois")
    chart.title = f"Où les dossiers sont ouverts — {where}"
    chart.x_labels = [month_fr(m) for m in months]
    chart.x_labels_major = [month_fr(m) for m in months[:: max(1, len(months) // 12)]]
    drawn = 0
    for channel in channels:
        values = [
            perturbed(per_month.get(m, {}).get(channel, 0), keys.get(f"{m}|{channel}", 0))
            for m in months
        ]
        if any(v is not None for v in values):
            chart.add(CHANNELS.get(channel, channel), values)
            drawn += 1
    if not drawn:
        return None
    return _svg(chart, f"Histogramme empilé des dossiers ouverts par canal et par mois, {where}")
