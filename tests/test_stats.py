"""Adoption statistics: commune mapping, counters, milestones, suppression, outputs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from lxml import etree

from dmp.app import create_app
from dmp.auth import actors
from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.domain.codes import CreationChannel, PurposeOfUse
from dmp.domain.geo import departement_of_commune, geography
from dmp.domain.thresholds import Thresholds
from dmp.errors import ConfigurationError, InvalidInput
from dmp.runtime import Runtime
from dmp.stats import counters
from dmp.stats import figures as statistics
from dmp.stats.render import SUPPRESSED, publish, report_csv, report_json, with_data
from tests import stats_model
from tests.factories import (
    CARDIOLOGIST,
    GP,
    NURSE,
    T0,
    demographics_for,
    desk,
    ins_for,
    new_document,
    pro,
)

SVG = "{http://www.w3.org/2000/svg}"
MAP_DATA = Path(__file__).resolve().parents[1] / "src/dmp/stats/data/departements-map.json"


@pytest.mark.parametrize(
    ("commune", "departement"),
    [
        ("37003", "37"),  # current commune
        ("01015", "01"),  # delegated commune
        ("01120", "01"),  # associated commune
        ("02285", "59"),  # associated commune whose code does not start with its département
        ("79224", "49"),
        ("75101", "75"),
        ("69381", "69"),
        ("13201", "13"),  # municipal arrondissements
        ("2A004", "2A"),
        ("2B033", "2B"),
        ("2a004", "2A"),  # Corsica
        ("97105", "971"),
        ("97209", "972"),
        ("97302", "973"),
        ("97411", "974"),
        ("97611", "976"),
        ("97502", "975"),
        ("97701", "977"),
        ("98735", "987"),
        ("98812", "988"),
    ],
)
def test_every_commune_code_form(commune: str, departement: str) -> None:
    assert departement_of_commune(commune) == departement


@pytest.mark.parametrize("commune", ["20004", "96001", "99001", "97999x", "2C004", "3700"])
def test_codes_outside_any_departement(commune: str) -> None:
    with pytest.raises(InvalidInput):
        departement_of_commune(commune)


def test_population_data() -> None:
    geo = geography()
    metro = [d for d in geo.departements.values() if d.zone == "metro"]
    drom = sorted(d.code for d in geo.departements.values() if d.zone == "drom")
    assert len(metro) == 96
    assert drom == ["971", "972", "973", "974", "976"]
    assert all(d.population > 0 for d in metro)
    assert 60_000_000 < sum(d.population for d in geo.departements.values()) < 75_000_000
    assert "decoupage-administratif@6.0.0" in geo.source


def test_thresholds() -> None:
    t = Thresholds.parse("10000,50000,100000,+100000")
    assert [n for n in (9999, 10000, 50000, 100000, 150000, 200000, 300000) if n in t] == [
        10000,
        50000,
        100000,
        200000,
        300000,
    ]
    assert 10 not in Thresholds.parse("5")
    for bad in ("", "5,3", "+5", "5,+0", "a", "5,+5,10"):
        with pytest.raises(ConfigurationError):
            Thresholds.parse(bad)


def test_perturbation() -> None:
    """The count plus key mod 10, rounded down to ten; under 10 hidden (docs/statistics.md)."""
    cases = [
        (0, 0, SUPPRESSED), (0, 9, SUPPRESSED), (1, 8, SUPPRESSED), (1, 9, 10), (9, 0, SUPPRESSED),
        (9, 1, 10), (10, 0, 10), (10, 19, 10), (11, 9, 20), (14, 5, 10), (15, 5, 20),
        (619_362, 7, 619_360), (619_362, 8, 619_370), (12, 10**18 + 3, 10),
    ]  # fmt: skip
    for n, key, shown in cases:
        assert publish(n, key) == shown, (n, key)
        assert stats_model.published(n, key) == shown
    # Unbiased over cells: the ten offsets of a count publish it on average.
    for n in (0, 3, 9, 10, 17, 123):
        shown = [publish(n, key) for key in range(10)]
        assert sum(v for v in shown if isinstance(v, int)) == 10 * n


def _open(
    rt: Runtime,
    i: int,
    commune: str = "37003",
    channel: CreationChannel = CreationChannel.PHARMACY,
    actor: object = None,
) -> None:
    who = actor or desk()
    rt.access(who).open_record(  # type: ignore[arg-type]
        ins_for(i),
        demographics_for(ins_for(i), commune, given_names="ALEX", sex="U"),
        channel=channel,
        patient_consent=True,
    )


def _activity(rt: Runtime) -> None:
    """Openings in several départements and channels, documents, accesses, closures."""
    for i in range(12):
        _open(rt, 300 + i)
    for i in range(3):
        _open(rt, 320 + i, "2A004", CreationChannel.INSURER_DESK)
    _open(rt, 330, "97105", CreationChannel.ONLINE, actors.patient_actor(rt, ins_for(330)))
    clock = rt.clock
    assert isinstance(clock, FixedClock)
    clock.advance(timedelta(days=40))
    gp = rt.access(pro(rt, GP))
    for i in range(5):
        gp.declare_consent(ins_for(300 + i))
        gp.deposit_document(ins_for(300 + i), new_document(clock.now()), b"x")
        gp.search_documents(ins_for(300 + i))
    rt.access(pro(rt, CARDIOLOGIST)).deposit_document(
        ins_for(320), new_document(clock.now(), type_code="34112-3"), b"y"
    )
    rt.access(
        pro(rt, NURSE), PurposeOfUse.EMERGENCY, justification="urgence", patient=ins_for(301)
    ).search_documents(ins_for(301))
    rt.access(pro(rt, GP), PurposeOfUse.REGULATION).search_documents(ins_for(302))
    rt.access(actors.patient_actor(rt, ins_for(303))).close_record(ins_for(303), "choix")
    rt.access(actors.patient_actor(rt, ins_for(304))).activate_account(ins_for(304))
    rt.access(actors.patient_actor(rt, ins_for(304))).activate_account(ins_for(304))  # once only


def test_counters_match_a_full_recount(world: Runtime) -> None:
    _activity(world)
    assert counters.verify_counters(world) == []
    report = statistics.adoption(world)
    by_code = {f.code: f for f in report.departements}
    touraine = by_code["37"]
    assert (touraine.opened_total, touraine.active, touraine.closed, touraine.activated) == (
        12,
        11,
        1,
        1,
    )
    assert touraine.channels == {"pharmacy": 12}
    assert touraine.structure_kinds == {"SA33": 12}
    assert touraine.documents == 5
    assert touraine.accesses == {"normal": 5, "bris_de_glace": 1, "centre_15": 1}
    assert by_code["2A"].channels == {"insurer_desk": 3}
    assert by_code["971"].structure_kinds == {"unknown": 1}
    assert report.documents_per_type == {"11488-4": 5, "34112-3": 1}
    # Tampering with a counter is caught by the recount; a rebuild repairs it.
    with world.engine.begin() as conn:
        conn.execute(sa.text("UPDATE stats_departements SET active = active + 1"))
    assert counters.verify_counters(world) != []
    counters.rebuild_counters(world)
    assert counters.verify_counters(world) == []


def _pending_rows(rt: Runtime) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM stats_pending")).scalar_one())


def test_counts_wait_as_pending_rows_and_fold_exactly_once(world: Runtime) -> None:
    """Consultations and deposits write pending rows, not shared counters; the figures count
    them before and after the fold, and a second fold finds nothing to add."""
    _activity(world)
    before = statistics.adoption(world, ["37"]).departements[0]
    assert _pending_rows(world) > 0
    assert counters.verify_counters(world) == []
    folded = counters.fold_pending(world, batch=2)  # several small batches
    assert folded > 0
    assert _pending_rows(world) == 0
    after = statistics.adoption(world, ["37"]).departements[0]
    assert (after.documents, after.accesses) == (before.documents, before.accesses)
    assert (after.documents, after.accesses) == (
        5,
        {"normal": 5, "bris_de_glace": 1, "centre_15": 1},
    )
    assert counters.fold_pending(world) == 0
    assert counters.verify_counters(world) == []


def test_period_and_departement_filters(world: Runtime) -> None:
    _activity(world)
    march = statistics.adoption(world, start="2026-03", end="2026-03")
    assert {f.code: f.opened for f in march.departements if f.opened} == {
        "37": 12,
        "2A": 3,
        "971": 1,
    }
    assert sum(f.documents for f in march.departements) == 0  # deposits were in April
    april = statistics.adoption(world, ["37"], "2026-04", "2026-04")
    assert [f.code for f in april.departements] == ["37"]
    assert april.departements[0].documents == 5
    assert april.departements[0].opened == 0
    with pytest.raises(InvalidInput, match="YYYY-MM"):
        statistics.adoption(world, start="March")
    with pytest.raises(InvalidInput, match="unknown département"):
        statistics.adoption(world, ["20"])


def test_milestones_are_recorded_once(rt: Runtime) -> None:
    from tests.factories import load_directory

    load_directory(rt)
    rt.milestones = Thresholds.parse("3,5,+5")
    for i in range(11):
        _open(rt, 400 + i)
    report = statistics.adoption(rt)
    assert [(m.departement, m.threshold, m.channel) for m in report.milestones] == [
        ("37", 3, "pharmacy"),
        ("37", 5, "pharmacy"),
        ("37", 10, "pharmacy"),
    ]
    assert report.milestones[0].structure_id == desk().structure_id
    assert report.milestones[0].structure_name == f"STRUCTURE {desk().structure_id}"
    from dmp.stats.pages import html_page
    from dmp.stats.render import report_table

    assert "3e dossier de Indre-et-Loire (37)" in report_table(report)
    assert f"par STRUCTURE {desk().structure_id} (pharmacy)" in report_table(report)
    assert "3e dossier en Indre-et-Loire" in html_page(report)


@pytest.mark.postgres
def test_concurrent_openings_reach_each_threshold_exactly_once(rt: Runtime) -> None:
    from tests.factories import load_directory

    load_directory(rt)
    rt.milestones = Thresholds.parse("7,15,+10")
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(8):
                _open(rt, 500 + n * 10 + i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = statistics.adoption(rt, ["37"])
    assert [m.threshold for m in report.milestones] == [7, 15, 25, 35, 45]
    assert report.departements[0].opened_total == 48
    assert counters.verify_counters(rt) == []


def test_outputs_suppress_small_counts(world: Runtime) -> None:
    _activity(world)
    report = statistics.adoption(world)
    data = report_json(report)
    rows = {r["departement"]: r for r in data["departements"]}
    assert set(rows) == {"37", "2A", "971"}
    # 12 opened, 11 active in Touraine; 3 opened in Corse-du-Sud: as the model publishes them.
    assert rows["37"]["records_opened_total"] == stats_model.opened_total(world, "37", 12)
    assert rows["37"]["records_active"] == stats_model.active(world, "37", 11)
    assert rows["2A"]["records_opened_total"] == stats_model.opened_total(world, "2A", 3)
    # The same buckets, the same figure: records opened in a report without a period.
    assert rows["37"]["records_opened"] == rows["37"]["records_opened_total"]
    for row in rows.values():
        for value in _numbers(row):
            assert value % 10 == 0
    if rows["2A"]["records_active"] == SUPPRESSED:
        assert rows["2A"]["penetration_percent"] == SUPPRESSED
    assert "\n37,Indre-et-Loire," in report_csv(report)


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(world)) as c:
        yield c


def test_stats_page(client: TestClient, world: Runtime) -> None:
    _activity(world)
    r = client.get("/stats")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "<script" not in html.lower()  # works without JavaScript
    svg_text = html[html.index("<svg") : html.index("</svg>") + len("</svg>")]
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    svg = etree.fromstring(svg_text.encode(), parser)
    assert svg.tag == f"{SVG}svg"
    shown = {g.get("data-departement"): g.get("data-class") for g in svg.iter(f"{SVG}g")}
    # Every département with an outline (metropolitan, Corsica, the five overseas ones).
    outlined = set(json.loads(MAP_DATA.read_text())["departements"])
    assert set(shown) == outlined and {"2A", "2B", "971", "976"} <= outlined
    assert len(outlined) == 96 + 6  # 94 numbered metropolitan + 2A/2B, 971-976
    # Each class, from a model written from docs/statistics.md: the active count as published
    # (under 10: masked), over the legal population, in fixed 5-point classes to 20 %.
    report = statistics.adoption(world)
    for f in report.departements:
        if f.code not in outlined:
            continue
        active = stats_model.active(world, f.code, f.active)
        if active == SUPPRESSED:
            expected = "masque"
        else:
            assert isinstance(active, int)
            share = 100 * active / f.population
            bounds = [0, 5, 10, 15, 20, 30]
            expected = f"c{max(n for n, low in enumerate(bounds) if share >= low)}"
        assert shown[f.code] == expected, f.code
    assert shown["37"] == "c0" and shown["2B"] == "masque"
    assert "Indre-et-Loire" in svg_text
    assert "<title>Indre-et-Loire (37) : " in svg_text  # name, figure and rank on hover
    assert "rang 1" in svg_text
    assert "http" not in svg_text.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
    r = client.get("/api/stats", params={"departement": "37", "start": "2026-03", "end": "2026-04"})
    assert r.status_code == 200
    assert [d["departement"] for d in r.json()["departements"]] == ["37"]
    assert client.get("/api/stats", params={"start": "2026-13"}).status_code == 422
    assert client.get("/api/stats", params={"departement": "20"}).status_code == 422


def test_stats_command(settings: Settings, tmp_path: object) -> None:
    import os

    env = {**os.environ, "DMP_DATA_DIR": str(settings.data_dir)}
    if settings.database_url:
        env["DMP_DATABASE_URL"] = settings.database_url
    run = [sys.executable, "-m", "dmp.cli"]
    assert subprocess.run([*run, "demo"], env=env, capture_output=True, check=False).returncode == 0
    r = subprocess.run(
        [*run, "stats", "--verify"], env=env, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    assert "Indre-et-Loire" in r.stdout
    assert "counters match" in r.stderr
    r = subprocess.run(
        [*run, "stats", "--json", "--departement", "37"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    # 12 opened: 12 plus an offset of 0 to 9, rounded down to ten.
    assert json.loads(r.stdout)["departements"][0]["records_opened_total"] in (10, 20)
    r = subprocess.run(
        [*run, "stats", "--csv"], env=env, capture_output=True, text=True, check=False
    )
    assert r.stdout.startswith("departement,name,population")
    r = subprocess.run(
        [*run, "stats", "--from", "2026/01"], env=env, capture_output=True, text=True, check=False
    )
    assert r.returncode == 2
    assert "YYYY-MM" in r.stderr


def test_the_page_escapes_what_the_directory_says() -> None:
    """Names come from the public directory extract: the templates escape them (Jinja2
    autoescape), in the table, the milestones and the SVG chart."""
    from datetime import UTC, datetime

    from dmp.stats.figures import AdoptionReport, DepartementFigures, Milestone
    from dmp.stats.pages import html_page

    hostile = '<script>alert("x")</script>'
    figures = DepartementFigures("37", hostile, "metro", 600_000, opened_total=50, active=40)
    report = AdoptionReport(
        period=(None, None),
        departements=[figures],
        openings_per_month={},
        documents_per_type={},
        documents_per_month={},
        accesses_per_mode={},
        milestones=[
            Milestone(
                "37", hostile, 10, datetime(2026, 3, 1, tzinfo=UTC), "S1", "pharmacy", hostile
            )
        ],
    )
    page = html_page(report)
    assert "<script>" not in page
    assert page.count("&lt;script&gt;") >= 3  # table, milestone, chart


# The attacker's model, written from docs/statistics.md, not from the renderer: a published count
# v stands for a true count plus an unknown offset of 0 to 9 in [v, v + 9], so a count in
# [v - 9, v + 9]; "< 10" for [0, 9].
def _interval(value: object) -> tuple[int, int]:
    if value == SUPPRESSED:
        return (0, 9)
    assert isinstance(value, int) and value % 10 == 0, value
    return (max(0, value - 9), value + 9)


def _solve(total: object, parts: list[object], hidden: int) -> tuple[int, int]:
    """What total = sum(parts) tells about parts[hidden], by interval arithmetic."""
    t_lo, t_hi = _interval(total)
    others = [_interval(p) for i, p in enumerate(parts) if i != hidden]
    lo = t_lo - sum(hi for _, hi in others)
    hi = t_hi - sum(lo for lo, _ in others)
    own = _interval(parts[hidden])
    return (max(lo, own[0]), min(hi, own[1]))


def _numbers(value: object) -> Iterator[int]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in ("population", "penetration_percent", "threshold", "period", "milestones"):
                yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, int) and not isinstance(value, bool):
        yield value


def test_no_difference_reveals_a_suppressed_count(world: Runtime) -> None:
    """Small counts hidden in one place cannot be recovered by subtracting published figures,
    within one report or across reports of different periods and départements."""
    clock = world.clock
    assert isinstance(clock, FixedClock)
    n = iter(range(600, 700))
    for _ in range(17):
        _open(world, next(n))
    for _ in range(6):
        _open(world, next(n), channel=CreationChannel.INSURER_DESK)
    for _ in range(14):
        _open(world, next(n), "2A004")
    clock.advance(timedelta(days=31))  # next month
    second = [next(n) for _ in range(8)]
    for i in second:
        _open(world, i)
    for _ in range(3):
        _open(world, next(n), channel=CreationChannel.ONLINE)
    for i in second[:4]:
        world.access(actors.patient_actor(world, ins_for(i))).close_record(ins_for(i), "choix")

    months = (T0.strftime("%Y-%m"), (T0 + timedelta(days=31)).strftime("%Y-%m"))
    queries = [
        ((), None, None),
        (("37",), None, None),
        (("37",), months[0], months[0]),
        (("37",), months[1], months[1]),
        (("37",), months[0], months[1]),
        (("2A",), None, None),
    ]
    # The offsets come from the key ring: the bounds below hold for every ring, but how many
    # terms a ring hides varies, so the same reports are read under several fixed rings (a
    # random one left too few hidden terms to solve in some runs).
    solved = 0
    for n_ring in range(5):
        world.keyring = dataclasses.replace(
            world.keyring, token_secret=hashlib.sha256(b"differencing %d" % n_ring).digest()
        )
        published, hidden_true = [], set()
        for deps, start, end in queries:
            report = statistics.adoption(world, list(deps), start, end)
            data = report_json(report)
            published.append(data)
            for f in with_data(report):
                for value in (f.opened_total, f.active, f.closed, f.opened, *f.channels.values()):
                    if 0 < value < 10:
                        hidden_true.add(value)
                # A share times the population gives back the published count, not the true one.
                row = next(r for r in data["departements"] if r["departement"] == f.code)
                if row["penetration_percent"] != SUPPRESSED:
                    back = row["penetration_percent"] * f.population / 100
                    assert abs(back - row["records_active"]) < 0.5
        assert hidden_true >= {3, 4, 6}, hidden_true  # the population has small counts to hide

        # Every difference of two published counts, wherever they come from.
        figures = sorted({v for data in published for v in _numbers(data)})
        assert len(figures) >= 2  # something to subtract (the offsets may make some equal)
        for a in figures:
            for b in figures:
                assert abs(a - b) not in hidden_true, (a, b)

        # Every additive relation a reader knows, solved for each hidden term.
        relations: list[tuple[object, list[object]]] = []
        by_query = dict(zip(queries, published, strict=True))
        for data in published:
            for row in data["departements"]:
                relations.append(
                    (row["records_opened_total"], [row["records_active"], row["records_closed"]])
                )
                relations.append((row["records_opened"], list(row["channels"].values())))
                relations.append((row["records_opened"], list(row["structure_kinds"].values())))
            relations.append(
                (
                    sum_or_suppressed([r["records_opened"] for r in data["departements"]]),
                    list(data["openings_per_month"].values()),
                )
            )
        whole = by_query[(("37",), months[0], months[1])]["departements"][0]["records_opened"]
        first = by_query[(("37",), months[0], months[0])]["departements"][0]["records_opened"]
        then = by_query[(("37",), months[1], months[1])]["departements"][0]["records_opened"]
        relations.append((whole, [first, then]))
        for total, parts in relations:
            for i, part in enumerate(parts):
                if part == SUPPRESSED:
                    lo, hi = _solve(total, parts, i)
                    solved += 1
                    # Each term is within 9 of its count (an unknown offset), so one relation
                    # never narrows a hidden count below eight values (e.g. 30 = "< 10" + 10
                    # leaves it in 2-9; nearest-ten rounding left 0-9 or 1-9, but told the
                    # count to one who added events: test_an_active_attacker...).
                    assert hi - lo >= 7, (total, parts, lo, hi)
    assert solved >= 3


def sum_or_suppressed(values: list[object]) -> object:
    """A national total known only through the parts: exact when no part is hidden."""
    if any(v == SUPPRESSED for v in values):
        return SUPPRESSED
    return sum(v for v in values if isinstance(v, int))


@pytest.mark.parametrize(
    ("share", "klass"),
    [(0, 0), (4.99, 0), (5, 1), (9.99, 1), (10, 2), (16.1, 3), (19.99, 3), (20, 4), (29.9, 4),
     (30, 5), (80, 5)],
)  # fmt: skip
def test_map_classes_are_fixed_bands(share: float, klass: int) -> None:
    """Classes from docs/statistics.md: 0-5, 5-10, 10-15, 15-20, 20-30 and 30 % and more."""
    from dmp.stats.mapping import class_of

    assert class_of(share) == klass


def test_french_notation() -> None:
    from dmp.domain.french import number_fr, percent_fr

    assert number_fr(619_362) == "619\u202f362"
    assert percent_fr(16.1234) == "16,1\u202f%"
    assert percent_fr(0.00194) == "0,0019\u202f%"  # small shares do not read as zero


def _dots(
    svg: etree._Element, serie: int | None = None
) -> list[tuple[str | None, str | None, str | None]]:
    """(label, value, x label) of every dot of a pygal chart, or of one of its series."""
    out = []
    for g in svg.iter(f"{SVG}g"):
        if serie is not None and f"serie-{serie} " not in f"{g.get('class', '')} ":
            continue
        for dots in g.iter(f"{SVG}g"):
            if dots.get("class") != "dots":
                continue
            descs = {d.get("class", "").strip(): d.text for d in dots.iter(f"{SVG}desc")}
            out.append((descs.get("label"), descs.get("value"), descs.get("x_label")))
        if serie is None:
            break  # the root's descendants: every dot once
    return out


def test_a_departement_page_with_its_trend_and_milestones(
    client: TestClient, world: Runtime
) -> None:
    world.milestones = Thresholds.parse("10,20")
    clock = world.clock
    assert isinstance(clock, FixedClock)
    n = iter(range(700, 800))
    opened: list[int] = []
    for count, channel, closing in ((12, CreationChannel.PHARMACY, 0),
                                    (11, CreationChannel.ONLINE, 6),
                                    (15, CreationChannel.PHARMACY, 0)):  # fmt: skip
        for _ in range(count):
            opened.append(next(n))
            _open(world, opened[-1], channel=channel)
        for i in opened[-closing:] if closing else []:
            world.access(actors.patient_actor(world, ins_for(i))).close_record(ins_for(i), "x")
        clock.advance(timedelta(days=31))
    r = client.get("/stats/37")
    assert r.status_code == 200
    html = r.text
    assert "<script" not in html.lower()
    assert "<h1>Indre-et-Loire (37)</h1>" in html
    # 38 opened, as the model publishes them (the same figure as the curve's last point).
    total = stats_model.opened_total(world, "37", 38)
    assert f'<th scope="row">Dossiers ouverts depuis l&#39;origine</th><td>{total}</td>' in html
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    charts = [
        etree.fromstring(html[i : html.index("</svg>", i) + 6].encode(), parser)
        for i in range(len(html))
        if html.startswith("<svg", i)
    ]
    assert len(charts) == 3  # cumulative with milestones, per month, channel mix
    cumulative = _dots(charts[0], 0) + _dots(charts[0], 2)  # opened to date, milestones
    # The data: the months the statistics say each milestone was reached.
    months = {
        m.threshold: f"{trends_month(m.reached_at)}"
        for m in statistics.adoption(world, ["37"]).milestones
    }
    marked = {label: x for label, _, x in cumulative if label}
    assert marked == {"10e dossier": months[10], "20e dossier": months[20]}
    assert months[10] != months[20]  # the trend crosses them in different months
    # Published figures only: 12, 23, 38 opened to date, each the cell of the buckets of the
    # months before it; active at the end of each month: 12, 23 - 6 closed, 38 - 6.
    openings = stats_model.opening_buckets(world, "37")
    closures = stats_model.closure_buckets(world, "37")
    ends = sorted({b[2] for b in openings})
    assert len(ends) == 3

    def to_date(buckets: list[tuple[str, ...]], end: str) -> list[tuple[str, ...]]:
        return [b for b in buckets if b[2] <= end]

    line = [v for label, v, _ in cumulative if not label]
    assert line == [
        str(stats_model.published(n, stats_model.key_of(world, to_date(openings, end))))
        for n, end in zip((12, 23, 38), ends, strict=True)
    ]
    assert line[-1] == str(total)
    assert [v for _, v, _ in _dots(charts[0], 1)] == [
        str(
            stats_model.published(
                n, stats_model.key_of(world, to_date(openings, end) + to_date(closures, end))
            )
        )
        for n, end in zip((12, 17, 32), ends, strict=True)
    ]
    assert client.get("/stats/20").status_code == 404
    assert client.get("/stats/2a").status_code == 200  # Corsica, written either way


def trends_month(at: object) -> str:
    from dmp.stats.trends import month_fr

    return month_fr(f"{at:%Y-%m}")


def _active_37(html: str) -> str:
    """The "Dossiers actifs" figure of a département page."""
    cell = html.split("Dossiers actifs", 1)[1]
    return cell.split("<td", 1)[1].split(">", 1)[1].split("<", 1)[0].strip()


def test_public_pages_are_kept_for_page_seconds(client: TestClient, world: Runtime) -> None:
    """A drawn page is served again for DMP_STATS_PAGE_SECONDS (10 by default), then drawn
    anew; the JSON API stays exact meanwhile."""
    clock = world.clock
    assert isinstance(clock, FixedClock)
    for i in range(20):
        _open(world, 9000 + i)
    first = client.get("/stats/37").text
    assert _active_37(first) == "20"
    for i in range(20, 40):
        _open(world, 9000 + i)
    assert client.get("/stats/37").text == first  # kept
    api = client.get("/api/stats", params={"departement": "37"}).json()
    assert api["departements"][0]["records_active"] == 40  # exact
    clock.advance(timedelta(seconds=9))
    assert client.get("/stats/37").text == first
    clock.advance(timedelta(seconds=1))
    assert _active_37(client.get("/stats/37").text) == "40"  # drawn anew
    # A chosen view (parameters) is drawn for its request.
    chosen = client.get("/stats", params={"departement": "37"}).text
    for i in range(40, 60):
        _open(world, 9000 + i)
    assert client.get("/stats", params={"departement": "37"}).text != chosen
    # Clients without gzip get the same page, uncompressed.
    plain = client.get("/stats/37", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert plain.text == client.get("/stats/37").text


def test_a_page_is_drawn_once_for_concurrent_requests(
    client: TestClient, world: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dmp.web import stats as web

    drawn: list[int] = []
    original = web.html_page

    def slow(report: statistics.AdoptionReport) -> str:
        drawn.append(1)
        threading.Event().wait(0.3)  # long enough for the other requests to arrive
        return original(report)

    monkeypatch.setattr(web, "html_page", slow)
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda: answers.append(client.get("/stats").status_code))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 4
    assert len(drawn) == 1


def test_page_seconds_zero_draws_every_request(settings: Settings, clock: FixedClock) -> None:
    fresh = settings.model_copy(update={"stats_page_seconds": 0})
    rt = Runtime.start(fresh, clock=clock)
    try:
        from tests.factories import load_directory

        load_directory(rt)
        with TestClient(create_app(rt)) as c:
            for i in range(20):
                _open(rt, 9100 + i)
            assert _active_37(c.get("/stats/37").text) == "20"
            for i in range(20, 40):
                _open(rt, 9100 + i)
            assert _active_37(c.get("/stats/37").text) == "40"
    finally:
        rt.close()


def test_a_code_that_is_no_departement_gets_a_french_page(client: TestClient) -> None:
    r = client.get("/stats/20")  # Corsica is 2A and 2B since 1976
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Département introuvable" in r.text and "« 20 »" in r.text
    hostile = client.get("/stats/<b>x")
    assert hostile.status_code == 404
    assert "<b>" not in hostile.text and "&lt;b&gt;" in hostile.text


def test_closures_are_counted_in_their_month_and_taken_back_on_reopening(
    world: Runtime,
) -> None:
    clock = world.clock
    assert isinstance(clock, FixedClock)
    for i in range(5):
        _open(world, 1200 + i)
    march = f"{clock.now():%Y-%m}"
    for i in range(3):
        world.access(actors.patient_actor(world, ins_for(1200 + i))).close_record(
            ins_for(1200 + i), "x"
        )
    clock.advance(timedelta(days=40))
    april = f"{clock.now():%Y-%m}"
    world.access(actors.patient_actor(world, ins_for(1203))).close_record(ins_for(1203), "x")
    world.access(desk()).reopen_record(ins_for(1200))  # closed in March
    report = statistics.adoption(world)
    assert report.closures_per_month == {march: 2, april: 1}
    assert counters.verify_counters(world) == []  # the same as a recount from the records
    counters.rebuild_counters(world)
    assert statistics.adoption(world).closures_per_month == {march: 2, april: 1}


def test_the_closures_migration_counts_the_records_closed_before_it(world: Runtime) -> None:
    """Revision 0014 fills the closures by month from the records closed before it existed."""
    from alembic import command

    from dmp.records import database

    for i in range(3):
        _open(world, 1300 + i)
    for i in range(2):
        world.access(actors.patient_actor(world, ins_for(1300 + i))).close_record(
            ins_for(1300 + i), "x"
        )
    with database._migration_lock(world.engine) as conn:  # back to before the table
        command.downgrade(database._alembic_config(conn), "0013")
        conn.commit()
    database.upgrade(world.engine)
    assert statistics.adoption(world).closures_per_month == {f"{world.clock.now():%Y-%m}": 2}
    assert counters.verify_counters(world) == []


def test_an_expired_page_is_served_while_it_is_drawn_anew(
    client: TestClient, world: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one request draws an expired page, the others get the last drawing at once:
    they do not hold a request thread waiting for it."""
    from dmp.web import stats as web

    clock = world.clock
    assert isinstance(clock, FixedClock)
    for i in range(20):
        _open(world, 9200 + i)
    old = client.get("/stats/37").text
    assert _active_37(old) == "20"
    for i in range(20, 40):
        _open(world, 9200 + i)
    clock.advance(timedelta(seconds=10))  # expired
    drawing, finish = threading.Event(), threading.Event()
    original = web.departement_page

    def held(*args: Any) -> str:
        drawing.set()
        finish.wait(10)
        return original(*args)

    monkeypatch.setattr(web, "departement_page", held)
    answers: list[str] = []
    drawer = threading.Thread(target=lambda: answers.append(client.get("/stats/37").text))
    drawer.start()
    assert drawing.wait(10)
    assert client.get("/stats/37").text == old  # served at once, the drawing still held
    assert not finish.is_set() and drawer.is_alive()
    finish.set()
    drawer.join(10)
    assert _active_37(answers[0]) == "40"
    assert _active_37(client.get("/stats/37").text) == "40"


def _old_rounding(n: int) -> int | str:
    """The former publication (nearest ten, "< 10" under 10), the attacker's check."""
    return SUPPRESSED if n < 10 else (n + 5) // 10 * 10


def _candidates(observed: list[object], offsets: range) -> set[int]:
    """The attacker's inference, from docs/statistics.md and what they added, without the key:
    the hidden counts h (0 to 9) for which some offset makes every observation right (the
    k-th observation was taken after k events of their own)."""
    return {
        h
        for h in range(10)
        if any(
            all(stats_model.published(h + k, o) == seen for k, seen in enumerate(observed))
            for o in offsets
        )
    }


def test_an_active_attacker_recovers_no_small_count(world: Runtime) -> None:
    """Issue 22's attacker: add events one at a time to a cell showing "< 10" and watch it
    until it shows a number (and past its next step). Under nearest-ten rounding this gave the
    hidden count in 3 cases of 3; with cell keys it leaves at least two counts possible."""
    # A ring of fixed secret, so that the offsets are the same in every run (with a random
    # ring the four calibration offsets below agree by chance once in a thousand runs).
    world.keyring = dataclasses.replace(
        world.keyring, token_secret=hashlib.sha256(b"statistics attacker test").digest()
    )
    nurse = pro(world, NURSE)
    n = iter(range(900, 1000))
    # The hidden counts: openings in Corse-du-Sud and in Guadeloupe, emergency consultations
    # in Touraine.
    hidden = {"2A": 3, "971": 7, "emergency-37": 2}
    targets = {"2A": "2A004", "971": "97105"}
    for dep, commune in targets.items():
        for _ in range(hidden[dep]):
            _open(world, next(n), commune)
    patient = ins_for(999)
    _open(world, 999)  # a Touraine record the nurse reads in an emergency

    def emergency() -> None:
        world.access(
            nurse, PurposeOfUse.EMERGENCY, justification="urgence", patient=patient
        ).search_documents(patient)

    for _ in range(hidden["emergency-37"]):
        emergency()

    def _rows() -> dict[str, Any]:
        data = report_json(statistics.adoption(world))
        return {r["departement"]: r for r in data["departements"]}

    def shown(cell: str) -> object:
        rows = _rows()
        if cell == "emergency-37":
            return rows["37"]["accesses_bris_de_glace"]
        # A département without any record is not listed: as good as "< 10".
        return rows[cell]["records_opened"] if cell in rows else SUPPRESSED

    def add(cell: str) -> None:
        if cell == "emergency-37":
            emergency()
        else:
            _open(world, next(n), targets[cell])

    # First the attacker calibrates on cells they fill alone (empty départements: they know
    # the count), to learn an offset they might reuse elsewhere.
    learnt = set()
    for commune in ("48095", "23096", "90010", "05061"):
        dep = departement_of_commune(commune)
        k = 0
        while shown(dep) == SUPPRESSED:
            _open(world, next(n), commune)
            k += 1
        learnt.add(10 - k)  # count k + offset reached 10
    # An offset that transfers would be one all the cells share: the attacker uses it.
    offsets = range(next(iter(learnt)), next(iter(learnt)) + 1) if len(learnt) == 1 else range(10)

    for cell, h in hidden.items():
        observed = [shown(cell)]
        steps = 0
        while observed[-1] == SUPPRESSED or steps < 12:
            if observed[-1] != SUPPRESSED:
                steps += 1
            add(cell)
            observed.append(shown(cell))
            assert len(observed) < 40
        assert observed[-1] != SUPPRESSED  # it was watched past the threshold
        possible = _candidates(observed, offsets)
        assert h in possible, (cell, observed)
        assert len(possible) >= 2, (cell, h, observed, possible)
        # The same watch under nearest-ten rounding names the count: the attack is real.
        former = [_old_rounding(h + k) for k in range(len(observed))]
        assert {
            g for g in range(10) if [_old_rounding(g + k) for k in range(len(former))] == former
        } == {h}
