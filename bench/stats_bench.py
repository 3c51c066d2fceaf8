#!/usr/bin/env python3
"""Benchmark: adoption statistics on N records (default 1,000,000).

    .venv/bin/python bench/stats_bench.py                      # SQLite in a temp directory
    .venv/bin/python bench/stats_bench.py --database-url postgresql+psycopg://u:p@127.0.0.1/db
    .venv/bin/python bench/stats_bench.py --records 20000 --max-seconds 1   # CI's short form

The records are bulk-loaded with SQL (loading a million records through the gate would measure
the gate, not the statistics); the counters are then rebuilt from them, and the statistics are
read from the counters exactly as `dmp stats` does. A separate step opens records through the
gate to measure what the counters cost on the write path. With --max-seconds, exits 1 when
`dmp stats` takes longer. Results go to bench/results/ as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics as pystats
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from dmp.access.views import Demographics
from dmp.app import create_app
from dmp.auth import actors
from dmp.config import Settings
from dmp.domain.codes import CreationChannel
from dmp.domain.geo import geography
from dmp.domain.ins import OID_TEST, Ins, make_ins_value
from dmp.domain.thresholds import Thresholds
from dmp.runtime import Runtime
from dmp.stats import counters
from dmp.stats import figures as stats

CHANNELS = [
    "pharmacy",
    "online",
    "insurer_desk",
    "health_facility",
    "professional",
    "insurer_provisioning",
]
CHANNEL_WEIGHTS = [39, 39, 18, 2, 1, 1]  # 2018 channel mix (domain reference §8)


# The story this project started from: Indre-et-Loire's 100,000th record, 16 % of its
# inhabitants. The population gives it that share (about 105,000 of a million records, past
# the 100,000 milestone); the other départements share the rest by legal population.
STORY = "37"
STORY_FRACTION = 0.105


def load(engine: sa.Engine, n: int, seed: int = 37) -> None:
    """n records opened from 2021 to 2026, and the milestones they reached (a bulk load has
    no history of its own: the thresholds of the default DMP_MILESTONES are set from the
    records' opening times, as the service would have recorded them)."""
    rng = random.Random(seed)
    geo = geography().departements
    deps = [d for d in geo.values() if d.population > 0 and d.code != STORY]
    weights = [d.population for d in deps]
    opened: dict[str, list[tuple[datetime, str]]] = {}
    start = datetime(2021, 1, 1, tzinfo=UTC)
    md = sa.MetaData()
    patients = sa.Table("patients", md, autoload_with=engine)
    records = sa.Table("records", md, autoload_with=engine)
    batch = 20_000
    for offset in range(0, n, batch):
        ps, rs = [], []
        for i in range(offset, min(n, offset + batch)):
            d = geo[STORY] if rng.random() < STORY_FRACTION else rng.choices(deps, weights)[0]
            pid = uuid.uuid4().hex
            at = start + timedelta(seconds=rng.randrange(0, 6 * 365 * 86400))
            commune = d.code + "001" if len(d.code) == 2 else d.code + "01"
            ps.append(
                {
                    "id": pid,
                    "ins_oid": OID_TEST,
                    "ins_value": f"B{i:014d}",
                    "birth_family_name": "BENCH",
                    "used_name": None,
                    "given_names": "X",
                    "sex": "U",
                    "birth_date": date(1980, 1, 1),
                    "birth_place_code": None,
                    "residence_commune": commune,
                    "departement": d.code,
                    "created_at": at,
                }
            )
            closed = rng.random() < 0.02
            channel = rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0]
            opened.setdefault(d.code, []).append((at, channel))
            rs.append(
                {
                    "patient_id": pid,
                    "status": "closed" if closed else "active",
                    "channel": channel,
                    "opened_at": at,
                    "opened_by_kind": "system",
                    "opened_by": "bench",
                    "opened_by_structure": None,
                    "initial_consent_at": at,
                    "initial_consent_collected_by": "bench",
                    "closed_at": at if closed else None,
                    "closure_reason": None,
                    "closed_by": None,
                    "oppose_bris_de_glace": False,
                    "oppose_centre_15": False,
                    "mask_all": False,
                    "medecin_traitant": None,
                    "is_minor": False,
                    "activated_at": at if rng.random() < 0.35 else None,
                }
            )
        with engine.begin() as conn:
            conn.execute(patients.insert(), ps)
            conn.execute(records.insert(), rs)
    thresholds = Thresholds.parse(Settings.model_fields["milestones"].default)
    reached = [
        {"departement": code, "threshold": k, "reached_at": at, "structure_id": None, "channel": ch}
        for code, rows in opened.items()
        for k, (at, ch) in enumerate(sorted(rows), start=1)
        if k in thresholds
    ]
    if reached:
        milestones = sa.Table("milestones", md, autoload_with=engine)  # before the write lock
        with engine.begin() as conn:
            conn.execute(milestones.insert(), reached)


def timed(fn, repeat: int = 5) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _empty_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            tables = (
                conn.execute(
                    sa.text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                        "AND tablename <> 'alembic_version'"
                    )
                )
                .scalars()
                .all()
            )
            if tables:
                conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} CASCADE"))
    finally:
        engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--openings", type=int, default=2000, help="records opened through the gate")
    ap.add_argument("--max-seconds", type=float, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=args.database_url, test_mode=True)
        if args.database_url.startswith("postgresql"):
            # Start from an empty database: the bench makes a new key ring, and the service
            # refuses to start over data sealed with another one.
            _empty_postgres(args.database_url)
        rt = Runtime.start(settings)
        engine_name = rt.engine.dialect.name
        t0 = time.perf_counter()
        load(rt.engine, args.records)
        load_s = time.perf_counter() - t0
        if engine_name == "postgresql":
            with rt.engine.begin() as conn:
                conn.execute(sa.text("ANALYZE"))
        t0 = time.perf_counter()
        counters.rebuild_counters(rt)
        rebuild_s = time.perf_counter() - t0
        read = timed(lambda: stats.adoption(rt))
        env = {**os.environ, "DMP_DATA_DIR": tmp, "DMP_TEST_MODE": "true"}
        if args.database_url:
            env["DMP_DATABASE_URL"] = args.database_url
        cli = timed(
            lambda: subprocess.run(
                [sys.executable, "-m", "dmp.cli", "stats", "--json"],
                env=env,
                check=True,
                capture_output=True,
            ),
            repeat=3,
        )
        # The public pages as a browser gets them (the map, the trends, the page of 37): as
        # served (kept for DMP_STATS_PAGE_SECONDS), and as drawn (the first request of a
        # fresh application, whose page cache is empty).
        page_cold, dept_cold = [], []
        for _ in range(3):
            with TestClient(create_app(rt)) as client:
                page_cold += timed(lambda: client.get("/stats").raise_for_status(), repeat=1)
                dept_cold += timed(lambda: client.get("/stats/37").raise_for_status(), repeat=1)
                page = timed(lambda: client.get("/stats").raise_for_status(), repeat=7)
                dept = timed(lambda: client.get("/stats/37").raise_for_status(), repeat=7)
        desk = actors.desk_actor("bench-desk", "bench")
        t0 = time.perf_counter()
        for i in range(args.openings):
            rt.access(desk).open_record(
                Ins(OID_TEST, make_ins_value(f"1800137{i:06d}")),
                Demographics("BENCH", "Y", "U", date(1980, 1, 1), "37003"),
                channel=CreationChannel.PHARMACY,
                patient_consent=True,
            )
        open_s = time.perf_counter() - t0
        consistent = counters.verify_counters(rt) == []
        rt.close()

    result = {
        "benchmark": "stats",
        "engine": engine_name,
        "records": args.records,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores",
        "bulk_load_seconds": round(load_s, 1),
        "full_recount_rebuild_seconds": round(rebuild_s, 2),
        "adoption_read_ms_median": round(1000 * pystats.median(read), 2),
        "dmp_stats_command_seconds_median": round(pystats.median(cli), 3),
        "stats_page_ms_median": round(1000 * pystats.median(page), 1),
        "departement_page_ms_median": round(1000 * pystats.median(dept), 1),
        "stats_page_drawn_ms_median": round(1000 * pystats.median(page_cold), 1),
        "departement_page_drawn_ms_median": round(1000 * pystats.median(dept_cold), 1),
        "openings_through_gate_per_second": round(args.openings / open_s, 1),
        "counters_consistent_after_openings": consistent,
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).with_name("results") / f"stats-{engine_name}-{args.records}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if not consistent:
        print("FAIL: counters differ from a full recount", file=sys.stderr)
        return 1
    if (
        args.max_seconds is not None
        and result["dmp_stats_command_seconds_median"] > args.max_seconds
    ):
        print(f"FAIL: dmp stats took more than {args.max_seconds} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
