"""Adoption statistics per département, read from the counters (never from patient rows).

Counts are aggregates; the presentation layer suppresses small counts (< 10) so that no figure
singles out a person.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from dmp.access.runtime import Runtime
from dmp.domain.geo import geography
from dmp.errors import InvalidInput
from dmp.records import database, directory, stats


@dataclass
class DepartementFigures:
    code: str
    name: str
    zone: str
    population: int
    opened_total: int = 0  # every record ever opened
    active: int = 0
    closed: int = 0
    activated: int = 0
    opened: int = 0  # opened within the period
    channels: dict[str, int] = field(default_factory=dict)
    structure_kinds: dict[str, int] = field(default_factory=dict)
    documents: int = 0
    accesses: dict[str, int] = field(default_factory=dict)

    @property
    def penetration(self) -> float:
        """Active records as a share of the legal population."""
        return self.active / self.population if self.population else 0.0


@dataclass(frozen=True)
class Milestone:
    departement: str
    name: str
    threshold: int
    reached_at: datetime
    structure_id: str | None
    channel: str
    structure_name: str | None = None  # from the directory, when the structure is known


@dataclass
class AdoptionReport:
    period: tuple[str | None, str | None]
    departements: list[DepartementFigures]
    openings_per_month: dict[str, int]
    documents_per_type: dict[str, int]
    documents_per_month: dict[str, int]
    accesses_per_mode: dict[str, int]
    milestones: list[Milestone]
    # month -> opening channel -> records opened (the mix of channels over time)
    channels_per_month: dict[str, dict[str, int]] = field(default_factory=dict)
    # month -> records closed that month (and still closed): with the openings, the records
    # active at the end of each month
    closures_per_month: dict[str, int] = field(default_factory=dict)


def _month(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.strptime(value, "%Y-%m")
    except ValueError:
        raise InvalidInput(f"{name} must be a month written YYYY-MM, not {value!r}") from None
    return f"{parsed.year:04d}-{parsed.month:02d}"


def _with_totals(
    raw: dict[str, dict[str, int]], departements: list[str] | None
) -> dict[str, DepartementFigures]:
    figures = {
        code: DepartementFigures(code, d.name, d.zone, d.population)
        for code, d in geography().departements.items()
        if not departements or code in departements
    }
    for code, totals in raw.items():
        f = figures.get(code)
        if f is not None:
            f.opened_total, f.active = totals["opened_total"], totals["active"]
            f.closed, f.activated = totals["closed"], totals["activated"]
    return figures


def standings(rt: Runtime) -> list[DepartementFigures]:
    """Every département with its totals only (records to date, active, closed, activated):
    what a rank among départements needs, from one small table."""
    with database.snapshot(rt.engine) as conn:
        raw = stats.read_totals(conn, None)
    return sorted(_with_totals(raw, None).values(), key=lambda f: f.code)


def adoption(
    rt: Runtime,
    departements: list[str] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> AdoptionReport:
    """The adoption figures, optionally for some départements and a period of months."""
    geo = geography().departements
    for code in departements or []:
        if code not in geo:
            raise InvalidInput(f"unknown département {code!r}")
    start, end = _month(start, "from"), _month(end, "to")
    if start and end and start > end:
        raise InvalidInput("the period ends before it starts")
    # One snapshot, no write lock: the public page must not hold up the writers.
    with database.snapshot(rt.engine) as conn:
        raw = stats.read_counters(conn, departements, start, end)
        names = directory.structure_names(conn, {m[3] for m in raw["milestones"] if m[3]})
    figures = _with_totals(raw["totals"], departements)
    per_month: dict[str, int] = defaultdict(int)
    mix: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for code, month, channel, kind, n in raw["openings"]:
        mix[month][channel] += n
        f = figures[code]
        f.opened += n
        f.channels[channel] = f.channels.get(channel, 0) + n
        f.structure_kinds[kind] = f.structure_kinds.get(kind, 0) + n
        per_month[month] += n
    closed_months: dict[str, int] = defaultdict(int)
    for _, month, n in raw["closures"]:
        closed_months[month] += n
    doc_types: dict[str, int] = defaultdict(int)
    doc_months: dict[str, int] = defaultdict(int)
    for code, month, type_code, n in raw["documents"]:
        figures[code].documents += n
        doc_types[type_code] += n
        doc_months[month] += n
    modes: dict[str, int] = defaultdict(int)
    for code, _, purpose, n in raw["accesses"]:
        f = figures[code]
        f.accesses[purpose] = f.accesses.get(purpose, 0) + n
        modes[purpose] += n
    reached = [
        Milestone(
            code,
            geo[code].name,
            threshold,
            at,
            structure,
            channel,
            names.get(structure) if structure else None,
        )
        for code, threshold, at, structure, channel in raw["milestones"]
    ]
    return AdoptionReport(
        period=(start, end),
        departements=sorted(figures.values(), key=lambda f: f.code),
        openings_per_month=dict(sorted(per_month.items())),
        documents_per_type=dict(sorted(doc_types.items())),
        documents_per_month=dict(sorted(doc_months.items())),
        accesses_per_mode=dict(sorted(modes.items())),
        milestones=reached,
        channels_per_month={m: dict(sorted(c.items())) for m, c in sorted(mix.items())},
        closures_per_month=dict(sorted(closed_months.items())),
    )


class PublicStatistics:
    """What the public statistics page may do: read the aggregates (small counts are
    suppressed by the renderers)."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def adoption(
        self,
        departements: list[str] | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> AdoptionReport:
        return adoption(self._rt, departements, start, end)

    def standings(self) -> list[DepartementFigures]:
        return standings(self._rt)

    @property
    def page_seconds(self) -> int:
        """How long a rendered public page may be served again (DMP_STATS_PAGE_SECONDS)."""
        return self._rt.settings.stats_page_seconds

    def now(self) -> datetime:
        return self._rt.clock.now()
