#!/usr/bin/env python3
"""CPU per request, in process: a quieter yardstick than throughput for comparing two versions.

    .venv/bin/python bench/cpu_per_request.py --database-url postgresql+psycopg://u:p@127.0.0.1/db \
        --data-dir /tmp/dmp-10k [--workload W1|W3|bare] [--requests 3000] [--no-lane] [--rounds 3]

On a 2-core machine shared by the server, PostgreSQL and wrk, a load run's throughput moves by
5-10 % from run to run, so a lever worth 5 % needs many paired runs to be seen. What a lever
changes is the server's CPU per request: this script sends the requests of a population that
``bench/load.py`` loaded (its data directory and database, ``--reuse``) straight to the ASGI
application in this process, one at a time, through the whole stack but the socket (middleware,
routing or the hot lane, grant, gate, SQL, mapping, JSON), and divides the process's CPU time
(every thread: the request threads too) by the number of requests. PostgreSQL's own CPU is not
counted. ``bare`` sends the bare consultation shape's requests to ``bench/baselines.py``'s app.
Each round starts a fresh process state (the patient index cold, as in a load run); the median
of the rounds is printed. Compare versions by alternating them (``--no-lane`` against the
default, or two checkouts), never against a figure of another day.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _one_round(args: argparse.Namespace) -> float:
    """Run in a child process: the CPU milliseconds per request of one round."""
    sys.path.insert(0, str(ROOT / "bench"))
    import load
    import population

    from dmp.app import create_app
    from dmp.config import Settings
    from dmp.runtime import Runtime

    settings = Settings(
        data_dir=args.data_dir,
        database_url=args.database_url,
        test_mode=True,
        token_ttl_seconds=load.TOKEN_TTL,
    )
    manifest = population.Manifest.load(args.data_dir / "bench-manifest.json")
    kinds = argparse.Namespace(publishers=1, history_patients=1)
    wanted = args.workload + "\t"
    lines = [x for x in load.request_lines(settings, manifest, kinds) if x.startswith(wanted)]
    if not lines:
        raise SystemExit(f"no {args.workload} request in this population")
    app: Any
    if args.workload == "bare":
        import baselines

        os.environ["BENCH_BARE_DSN"] = args.database_url.replace("+psycopg", "")
        app = baselines.bare()
    else:
        app = create_app(Runtime.start(settings), hot_lane=not args.no_lane)
    requests = []
    for line in lines:
        _, method, target, token, body = line.split("\t", 4)
        path, _, query = target.partition("?")
        requests.append((method, path, query.encode(), token.encode(), body.encode()))

    async def send_one(method: str, path: str, query: bytes, token: bytes, body: bytes) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"authorization", b"Bearer " + token),
                (b"accept", args.accept.encode()),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 80),
        }
        sent = False
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if not status or status[0] >= 300:
            raise SystemExit(f"{method} {path}: status {status}")

    async def run() -> float:
        for r in requests[:200]:  # warm: statements compiled, connections open
            await send_one(*r)
        started = time.process_time()
        for i in range(args.requests):
            await send_one(*requests[(200 + i) % len(requests)])
        return (time.process_time() - started) / args.requests * 1000

    return asyncio.run(run())


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--data-dir", type=Path, required=True, help="bench/load.py's data directory")
    ap.add_argument("--workload", default="W1", choices=["W1", "W3", "bare"])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument(
        "--accept",
        default="application/fhir+json",
        help="W3: */* for the raw content (ITI-68) instead of a FHIR Binary",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-lane", action="store_true", help="every route through the router")
    ap.add_argument(
        "--alternate", action="store_true", help="rounds with and without the lane, alternating"
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(f"{_one_round(args):.4f}")
        return 0
    given = [a for a in sys.argv[1:] if a not in ("--alternate", "--no-lane")]
    shapes = {"": given} if args.workload == "bare" else {}
    if args.workload != "bare":
        if args.alternate or not args.no_lane:
            shapes[""] = given
        if args.alternate or args.no_lane:
            shapes[" (no lane)"] = [*given, "--no-lane"]
    figures: dict[str, list[float]] = {name: [] for name in shapes}
    for _ in range(args.rounds):
        for name, argv in shapes.items():
            child = [sys.executable, __file__, "--child", *argv]
            out = subprocess.run(child, check=True, capture_output=True, text=True, cwd=ROOT)
            figures[name].append(float(out.stdout.strip().splitlines()[-1]))
    for name, values in figures.items():
        print(
            f"{args.workload}{name}: {statistics.median(values):.3f} ms CPU per request "
            f"(median of {len(values)} rounds: {', '.join(f'{f:.3f}' for f in values)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
