"""`dmp audit verify` on a bulk-loaded trail: events checked per second, by one process and by
several (issue 26: 13.2 million events must verify in under ten minutes).

    .venv/bin/python bench/audit_verify.py --patients 50000 \
        [--database-url postgresql+psycopg://USER:PW@127.0.0.1/EMPTY_DB] [--workers 1,2] \
        [--out bench/results/audit-verify-postgresql-50000.json]

The population is bench/population.py's (a real MACed chain per patient, about thirteen events
each). Each run is timed end to end as the command does it: the snapshot, the keyset scans, the
MACs, the processes' start. The result says how long 13.2 million events would take at the
measured rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from dmp.access import audit
from dmp.config import Settings
from dmp.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import population  # noqa: E402

NATIONAL_EVENTS = 13_155_552  # the 1,000,000-patient trail of docs/performance.md


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=50_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="dmp-audit-bench-"))
    settings = Settings(data_dir=data_dir, database_url=args.database_url, test_mode=True)
    rt = Runtime.start(settings)
    try:
        started = time.monotonic()
        population.build(rt, args.patients)
        load_seconds = time.monotonic() - started
        keys = rt.audit_keys()
        runs = []
        for workers in (int(w) for w in args.workers.split(",")):
            for _ in range(args.repeat):
                started = time.monotonic()
                report = audit.verify(rt.engine, keys, workers=workers, parallel_from=0)
                seconds = time.monotonic() - started
                if not report.ok:
                    print(f"trail BROKEN: {report.fault}", file=sys.stderr)
                    return 1
                rate = report.events / seconds
                runs.append(
                    {
                        "workers": workers,
                        "events": report.events,
                        "chains": report.chains,
                        "seconds": round(seconds, 2),
                        "events_per_second": round(rate),
                        "national_minutes": round(NATIONAL_EVENTS / rate / 60, 1),
                    }
                )
                print(json.dumps(runs[-1]))
        result = {
            "engine": rt.engine.dialect.name,
            "patients": args.patients,
            "load_seconds": round(load_seconds, 1),
            "runs": runs,
        }
    finally:
        rt.close()
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
