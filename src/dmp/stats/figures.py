"""Adoption statistics per département, read from the counters (never from patient rows).

Counts are aggregates. Each figure also carries its *cell key* (the ABS cell-key method): every
finest counter bucket (a département, month and channel and kind of structure for openings; a
département, month and document type for deposits; ...) gets a keyed pseudo-random 64-bit
number, and a figure's key is the XOR of the keys of the non-empty buckets it adds up. The same
data always gives the same key, whatever the query that adds it up; the presentation layer
perturbs and suppresses each count with its key (``dmp.stats.render.publish``, see
docs/statistics.md) so that no figure singles out a person, even to one who adds events.
"""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dmp.domain.geo import geography
from dmp.errors import InvalidInput
from dmp.records import database, directory, stats
from dmp.runtime import Runtime


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
    # Each figure's cell key, by field name ("opened", "active", "channels:pharmacy",
    # "structure_kinds:SA33", "accesses:normal", ...); a missing key is 0.
    keys: dict[str, int] = field(default_factory=dict)

    def key(self, name: str) -> int:
        return self.keys.get(name, 0)

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
    # The cell key of each value of the series above, by series name then by value name
    # ("openings_per_month" -> "2026-03" -> key; "channels_per_month" -> "2026-03|pharmacy").
    keys: dict[str, dict[str, int]] = field(default_factory=dict)

    def key(self, series: str, name: str) -> int:
        return self.keys.get(series, {}).get(name, 0)


def cell_secret(token_secret: bytes) -> bytes:
    """The key of the cell keys, derived from the key ring's secret: without the ring nobody,
    the operator reading the database included, can tell a cell's perturbation."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"dmp statistics cell keys"
    ).derive(token_secret)


class CellKeys:
    """The keys of the finest counter buckets: keyed BLAKE2b (an 8-byte digest) of the
    bucket's name, its parts joined by "|", read as a big-endian number. One per key-ring
    secret and process (``_cells``), remembering the keys it computed: a bucket's key never
    changes, and a page drawn again reuses them."""

    def __init__(self, secret: bytes) -> None:
        self._keyed = hashlib.blake2b(key=secret, digest_size=8)
        self._memo: dict[str, int] = {}

    def bucket(self, *parts: str) -> int:
        name = "|".join(parts)
        key = self._memo.get(name)
        if key is None:
            h = self._keyed.copy()
            h.update(name.encode())
            key = self._memo[name] = int.from_bytes(h.digest(), "big")
        return key


def _xor(into: dict[str, int], name: str, key: int) -> None:
    into[name] = into.get(name, 0) ^ key


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


def _total_keys(
    figures: dict[str, DepartementFigures],
    buckets: tuple[list[tuple[str, str, str, str]], list[tuple[str, str]]],
    cells: CellKeys,
) -> None:
    """The totals add up the buckets of all time: records opened to date are the opening
    buckets (the same key as the openings of a report without a period, and as the last point
    of the curve from the origin), closed records the closure buckets, active records both.
    Accounts activated have no finer bucket: one of their own."""
    openings, closures = buckets
    opened: dict[str, int] = {}
    closed: dict[str, int] = {}
    for code, month, channel, kind in openings:
        opened[code] = opened.get(code, 0) ^ cells.bucket("opening", code, month, channel, kind)
    for code, month in closures:
        closed[code] = closed.get(code, 0) ^ cells.bucket("closure", code, month)
    _set_total_keys(figures, opened, closed, cells)


def _set_total_keys(
    figures: dict[str, DepartementFigures],
    opened: dict[str, int],
    closed: dict[str, int],
    cells: CellKeys,
) -> None:
    for code, f in figures.items():
        o, c = opened.get(code, 0), closed.get(code, 0)
        f.keys.update(
            opened_total=o, closed=c, active=o ^ c, activated=cells.bucket("activated", code)
        )


def _cells(rt: Runtime) -> CellKeys:
    return _cells_for(rt.token_secret)


@functools.lru_cache(maxsize=4)
def _cells_for(token_secret: bytes) -> CellKeys:
    return CellKeys(cell_secret(token_secret))


def standings(rt: Runtime) -> list[DepartementFigures]:
    """Every département with its totals only (records to date, active, closed, activated):
    what a rank among départements needs, from one small table."""
    with database.snapshot(rt.engine) as conn:
        raw = stats.read_totals(conn, None)
        buckets = stats.total_buckets(conn, None)
    figures = _with_totals(raw, None)
    _total_keys(figures, buckets, _cells(rt))
    return sorted(figures.values(), key=lambda f: f.code)


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
        whole = start is None and end is None  # every month: the totals' buckets are read
        buckets = None if whole else stats.total_buckets(conn, departements)
        names = directory.structure_names(conn, {m[3] for m in raw["milestones"] if m[3]})
    cells = _cells(rt)
    bucket = cells.bucket
    figures = _with_totals(raw["totals"], departements)
    per_month: dict[str, int] = defaultdict(int)
    mix: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    opening_keys: dict[str, int] = {}  # month -> key, and so on below
    mix_keys: dict[str, int] = {}
    for code, month, channel, kind, n in raw["openings"]:
        if not n:
            continue  # an empty bucket adds nothing, not even its key
        k = bucket("opening", code, month, channel, kind)
        mix[month][channel] += n
        f = figures[code]
        f.opened += n
        f.channels[channel] = f.channels.get(channel, 0) + n
        f.structure_kinds[kind] = f.structure_kinds.get(kind, 0) + n
        per_month[month] += n
        fk = f.keys
        fk["opened"] = fk.get("opened", 0) ^ k
        name = "channels:" + channel
        fk[name] = fk.get(name, 0) ^ k
        name = "structure_kinds:" + kind
        fk[name] = fk.get(name, 0) ^ k
        opening_keys[month] = opening_keys.get(month, 0) ^ k
        name = month + "|" + channel
        mix_keys[name] = mix_keys.get(name, 0) ^ k
    closed_months: dict[str, int] = defaultdict(int)
    closure_keys: dict[str, int] = {}
    closed_by_dep: dict[str, int] = {}
    for code, month, n in raw["closures"]:
        if not n:
            continue
        k = bucket("closure", code, month)
        closed_months[month] += n
        closure_keys[month] = closure_keys.get(month, 0) ^ k
        closed_by_dep[code] = closed_by_dep.get(code, 0) ^ k
    if buckets is None:
        opened_by_dep = {code: f.keys.get("opened", 0) for code, f in figures.items()}
        _set_total_keys(figures, opened_by_dep, closed_by_dep, cells)
    else:
        _total_keys(figures, buckets, cells)
    keys: dict[str, dict[str, int]] = defaultdict(dict)
    keys["openings_per_month"] = opening_keys
    keys["channels_per_month"] = mix_keys
    keys["closures_per_month"] = closure_keys
    doc_types: dict[str, int] = defaultdict(int)
    doc_months: dict[str, int] = defaultdict(int)
    for code, month, type_code, n in raw["documents"]:
        if not n:
            continue  # an empty bucket adds nothing, not even its key
        k = bucket("document", code, month, type_code)
        figures[code].documents += n
        doc_types[type_code] += n
        doc_months[month] += n
        _xor(figures[code].keys, "documents", k)
        _xor(keys["documents_per_type"], type_code, k)
        _xor(keys["documents_per_month"], month, k)
    modes: dict[str, int] = defaultdict(int)
    for code, month, purpose, n in raw["accesses"]:
        if not n:
            continue  # an empty bucket adds nothing, not even its key
        k = bucket("access", code, month, purpose)
        f = figures[code]
        f.accesses[purpose] = f.accesses.get(purpose, 0) + n
        modes[purpose] += n
        _xor(f.keys, f"accesses:{purpose}", k)
        _xor(keys["accesses_per_mode"], purpose, k)
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
        keys=dict(keys),
    )


class PublicStatistics:
    """What the public statistics page may do: read the aggregates with their cell keys (the
    renderers perturb and suppress every count with its key)."""

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
