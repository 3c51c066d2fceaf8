#!/usr/bin/env python3
"""What each request costs the database: WAL bytes and database growth per ITI-65
publication (of a given size) and per ITI-67 consultation, over HTTP on a real ``dmp serve``.

    .venv/bin/python bench/sizing.py --database-url postgresql+psycopg://u:p@h/db \\
        --out bench/results/sizing-postgresql.json

The figures feed the sizing for France in docs/operations.md (documents a day -> WAL a day,
database growth, disk writes). PostgreSQL only (WAL positions and database sizes are its own).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import crash, population  # noqa: E402
from bench.load import free_port, iti65_bundle  # noqa: E402

from dmp.config import Settings  # noqa: E402
from dmp.domain.ins import OID_TEST  # noqa: E402


def _position(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, "
            "pg_database_size(current_database())"
        ).one()
    return {"wal": int(row[0]), "size": int(row[1])}


def _measure(engine: sa.Engine, count: int, send: Any) -> dict[str, float]:
    before = _position(engine)
    t0 = time.monotonic()
    for n in range(count):
        send(n)
    seconds = time.monotonic() - t0
    after = _position(engine)
    return {
        "requests": count,
        "seconds": round(seconds, 2),
        "wal_bytes_each": round((after["wal"] - before["wal"]) / count),
        "db_growth_bytes_each": round((after["size"] - before["size"]) / count),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--database-url", required=True, help="PostgreSQL URL (an empty database)")
    ap.add_argument("--count", type=int, default=400, help="requests per measurement")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="dmp-sizing-"))
    settings = Settings(data_dir=data_dir, database_url=args.database_url, test_mode=True)
    publishers = crash._prepare(settings, 4)
    engine = sa.create_engine(args.database_url)
    port = free_port()
    server = crash._serve(settings, port)
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "count": args.count}
    try:
        for kb in (30, 300):
            contents = {
                ins: population.cda(ins, kb * 1024) for ins, _, _ in publishers
            }  # one per patient; a new uniqueId each time

            def publish(n: int, kb: int = kb, contents: dict[str, bytes] = contents) -> None:
                ins, author, token = publishers[n % len(publishers)]
                uid = str(uuid.uuid4().int)
                content = contents[ins].replace(b"Document fictif.", f"Doc {uid}.".encode(), 1)
                body = json.dumps(iti65_bundle(ins, author, content)).replace("__UID__", uid)
                request = urllib.request.Request(
                    f"{base}/fhir",
                    data=body.encode(),
                    method="POST",
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/fhir+json",
                    },
                )
                with urllib.request.urlopen(request, timeout=60) as answer:
                    assert answer.status == 200

            result[f"publication_{kb}kb"] = _measure(engine, args.count, publish)

        def consult(n: int) -> None:
            ins, _, token = publishers[n % len(publishers)]
            query = f"patient.identifier=urn:oid:{OID_TEST}%7C{ins}&status=current&_count=20"
            request = urllib.request.Request(
                f"{base}/fhir/DocumentReference?{query}",
                headers={"Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=60) as answer:
                assert answer.status == 200

        result["consultation"] = _measure(engine, args.count, consult)
    finally:
        server.terminate()
        server.wait(30)
        engine.dispose()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
