#!/usr/bin/env python3
"""Load benchmark: the consultation, publication, retrieval, mixed and history workloads over
HTTP, with every rule and every audit event on, beside the baselines of the same machine.

    .venv/bin/python bench/load.py                                  # SQLite, 10,000 patients
    .venv/bin/python bench/load.py --database-url postgresql+psycopg://u:p@127.0.0.1/db \
        --patients 1000000                                          # the national-scale table
    .venv/bin/python bench/load.py --smoke --database-url ...       # CI: ~60 s, fails on errors

Steps: bulk-load a synthetic population (bench/population.py; reused when the data directory
already holds one, --reuse), start `dmp serve` on it, then for each workload and concurrency
run wrk (Debian package ``wrk``) from a separate process: throughput, p50/p95/p99, errors, and
the server's and the database's CPU and memory sampled from /proc. Baselines in the same run:
a hello-world and the bare consultation shape on the same HTTP stack (bench/baselines.py), and
pgbench (TPC-B-like and select-only) on PostgreSQL. Results: bench/results/load-*.json; plots
and the table in docs/performance.md come from bench/report.py.

Workloads (each request by a random sampled patient):
  W1 consultation  ITI-67 search, up to 20 DocumentReferences, by the patient's GP
  W2 publication   ITI-65 transaction, one 30 KB CDA document, by the patient's GP
  W3 retrieval     ITI-68 Binary read of a 30 KB document, by the patient's GP
  W4 mixed         70 % W1, 20 % W2, 10 % W3
  W5 history       the patient's own access history (AuditEvent search), by the patient
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import population  # noqa: E402

from dmp.auth import actors  # noqa: E402
from dmp.config import Settings  # noqa: E402
from dmp.domain.ins import OID_TEST, Ins  # noqa: E402
from dmp.identity.tokens import issue_token  # noqa: E402
from dmp.runtime import Runtime  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LUA = ROOT / "bench" / "wrk" / "workload.lua"
MIXES = {
    "W1": "W1=1",
    "W2": "W2=1",
    "W3": "W3=1",
    "W4": "W1=70 W2=20 W3=10",
    "W5": "W5=1",
    "hello": "hello=1",
    "bare": "bare=1",
    "bare_publication": "bare_publication=1",
    "bare_retrieval": "bare_retrieval=1",
}
# The bare shape of each workload (bench/baselines.py), served by the one bare app.
BARE_OF = {"W1": "bare", "W2": "bare_publication", "W3": "bare_retrieval"}
SCOPES = frozenset(
    {
        "user/DocumentReference.cruds",
        "user/Binary.r",
        "user/List.cs",
        "user/Patient.rs",
    }
)
TOKEN_TTL = 24 * 3600


# -- the population and the request files ------------------------------------------------


def _warn_if_grown(rt: Runtime, manifest: population.Manifest) -> None:
    """Every W2 run adds its publications to the population: records grow, and figures drift
    away from those of a fresh population (issue 26 measured on one grown 2.5 times)."""
    with rt.engine.connect() as conn:
        now = conn.execute(sa.text("SELECT count(*) FROM documents")).scalar_one()
    if now > manifest.documents * 1.1:
        print(
            f"warning: the population has grown from {manifest.documents:,} to {now:,} "
            "documents since it was loaded (publications of earlier runs): compare with runs "
            "on the same database only, or load a fresh one"
        )


def prepare(settings: Settings, args: argparse.Namespace) -> population.Manifest:
    path = settings.data_dir / "bench-manifest.json"
    rt = Runtime.start(settings)
    try:
        with rt.engine.connect() as conn:
            loaded = conn.execute(sa.text("SELECT count(*) FROM patients")).scalar_one()
        if loaded and path.exists() and args.reuse:
            manifest = population.Manifest.load(path)
            if manifest.patients == args.patients:
                print(f"reusing the population in {settings.data_dir} ({loaded:,} patients)")
                _warn_if_grown(rt, manifest)
                return manifest
        if loaded:
            raise SystemExit(
                f"the database already holds {loaded:,} patients and no matching population "
                "manifest: give an empty database (or --reuse with the same --patients)"
            )
        manifest = population.build(rt, args.patients, mean_documents=args.mean_documents)
        manifest.save(path)
        print(
            f"loaded {manifest.patients:,} patients and {manifest.documents:,} documents "
            f"in {manifest.seconds:,.0f} s"
        )
        return manifest
    finally:
        rt.close()


def iti65_bundle(ins: str, author: str, content: bytes) -> dict[str, Any]:
    """A fictional ITI-65 Provide Document Bundle: a SubmissionSet, a DocumentReference and its
    Binary. ``__UID__`` marks where each request puts its unique id."""
    subject = {"reference": f"Patient?identifier=urn:oid:{OID_TEST}|{ins}"}
    when = "2026-11-01T10:00:00+01:00"
    author_ref = [{"reference": "#author"}]
    contained = [
        {
            "resourceType": "Practitioner",
            "id": "author",
            "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": author}],
        }
    ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b0b0b0b-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "List",
                    "contained": contained,
                    "extension": [
                        {
                            "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"
                            "ihe-sourceId",
                            "valueIdentifier": {"value": "urn:oid:1.2.250.1.999.7"},
                        }
                    ],
                    "identifier": [
                        {
                            "use": "usual",
                            "system": "urn:ietf:rfc:3986",
                            "value": "urn:oid:2.25.__UID__1",
                        }
                    ],
                    "status": "current",
                    "mode": "working",
                    "code": {
                        "coding": [
                            {
                                "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/"
                                "MHDlistTypes",
                                "code": "submissionset",
                            }
                        ]
                    },
                    "subject": subject,
                    "date": when,
                    "source": author_ref[0],
                    "entry": [
                        {"item": {"reference": "urn:uuid:0b0b0b0b-0000-4000-8000-000000000002"}}
                    ],
                },
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": "urn:uuid:0b0b0b0b-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "DocumentReference",
                    "contained": contained,
                    "masterIdentifier": {
                        "system": "urn:ietf:rfc:3986",
                        "value": "urn:oid:2.25.__UID__2",
                    },
                    "status": "current",
                    "type": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]},
                    "subject": subject,
                    "date": when,
                    "author": author_ref,
                    "securityLabel": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "v3-Confidentiality",
                                    "code": "N",
                                }
                            ]
                        }
                    ],
                    "content": [
                        {
                            "attachment": {
                                "contentType": "text/xml",
                                "language": "fr-FR",
                                "url": "urn:uuid:0b0b0b0b-0000-4000-8000-000000000003",
                                "size": len(content),
                                "hash": base64.b64encode(
                                    hashlib.sha1(content).digest()  # noqa: S324 - XDS hash
                                ).decode(),
                                "title": "Compte rendu d'examens biologiques",
                                "creation": when,
                            },
                            "format": {
                                "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/"
                                "formatcode",
                                "code": population.CDA_FORMAT,
                            },
                        }
                    ],
                    "context": {"period": {"start": when}},
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": "urn:uuid:0b0b0b0b-0000-4000-8000-000000000003",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "text/xml",
                    "data": base64.b64encode(content).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }


def request_lines(
    settings: Settings, manifest: population.Manifest, args: argparse.Namespace
) -> list[str]:
    """The requests the workloads draw from, one per line (see bench/wrk/workload.lua)."""
    rt = Runtime.start(settings)
    try:
        tokens: dict[str, str] = {}

        def token(ps: str) -> str:
            if ps not in tokens:
                actor = actors.professional_actor(rt, ps)
                tokens[ps] = issue_token(
                    actor,
                    rt.token_secret,
                    now=rt.clock.now(),
                    ttl_seconds=TOKEN_TTL,
                    scopes=SCOPES,
                )
            return tokens[ps]

        lines: list[str] = []
        ident = "patient.identifier=urn:oid:" + OID_TEST + "%7C"
        for i, ps in manifest.consultations:
            ins = population.ins_value(i)
            lines.append(
                f"W1\tGET\t/fhir/DocumentReference?{ident}{ins}&status=current&_count=20"
                f"\t{token(ps)}\t"
            )
        for _, ps, fhir_id in manifest.retrievals:
            lines.append(f"W3\tGET\t/fhir/Binary/{fhir_id}\t{token(ps)}\t")
        for i, ps in manifest.publications[: args.publishers]:
            ins = population.ins_value(i)
            body = json.dumps(
                iti65_bundle(ins, ps, population.cda(ins, 30 * 1024)), separators=(",", ":")
            )
            lines.append(f"W2\tPOST\t/fhir\t{token(ps)}\t{body}")
        for i, _ in manifest.consultations[: args.history_patients]:
            ins = Ins(OID_TEST, population.ins_value(i))
            tok = issue_token(
                actors.patient_actor(rt, ins),
                rt.token_secret,
                now=rt.clock.now(),
                ttl_seconds=TOKEN_TTL,
            )
            lines.append(
                f"W5\tGET\t/fhir/AuditEvent?patient=urn:oid:{OID_TEST}%7C{ins.value}"
                f"&_count=20\t{tok}\t"
            )
        first_ps = manifest.consultations[0][1]
        for i, ps in manifest.consultations[:2000]:
            lines.append(
                f"bare\tGET\t/bare?oid={OID_TEST}&ins={population.ins_value(i)}&ps={ps}\tx\t"
            )
        for i, ps in manifest.publications[: args.publishers]:
            ins = population.ins_value(i)
            body = json.dumps(
                iti65_bundle(ins, ps, population.cda(ins, 30 * 1024)), separators=(",", ":")
            )
            lines.append(
                f"bare_publication\tPOST\t/bare/publish?oid={OID_TEST}&ins={ins}&ps={ps}\tx\t{body}"
            )
        for _, ps, fhir_id in manifest.retrievals:
            lines.append(f"bare_retrieval\tGET\t/bare/content?doc={fhir_id}&ps={ps}\tx\t")
        lines.append(f"hello\tGET\t/hello\t{token(first_ps)}\t")
        return lines
    finally:
        rt.close()


# -- processes and measurements ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(cmd: list[str], env: dict[str, str], port: int, probe: str) -> Iterator[int]:
    """Run a server process until the block ends; yields its pid once ``probe`` answers."""
    with tempfile.TemporaryFile() as log:
        yield from _serve(cmd, env, port, probe, log)


def _serve(cmd: list[str], env: dict[str, str], port: int, probe: str, log: Any) -> Iterator[int]:
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=2):
                    break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(
                        f"server did not start ({exc}):\n{log.read().decode()[-3000:]}"
                    ) from None
                time.sleep(0.2)
        yield proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _tree(pid: int) -> list[int]:
    out = [pid]
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            out.extend(_tree(int(child)))
    return out


def _postgres_pids() -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                if p.joinpath("comm").read_text().strip() == "postgres":
                    pids.append(int(p.name))
    return pids


def _cpu_rss(pids: list[int]) -> tuple[float, float]:
    ticks = rss = 0.0
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
    return ticks / os.sysconf("SC_CLK_TCK"), rss


@dataclass
class Sampler:
    """CPU (cores busy) and memory (RSS) of the server's process tree and of PostgreSQL."""

    server_pid: int
    interval: float = 1.0
    samples: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        t0 = time.monotonic()
        last = None
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            server = _cpu_rss(_tree(self.server_pid))
            db = _cpu_rss(_postgres_pids())
            if last is not None:
                dt = now - last[0]
                self.samples.append(
                    {
                        "t": round(now - t0, 1),
                        "server_cpu": (server[0] - last[1]) / dt,
                        "db_cpu": (db[0] - last[2]) / dt,
                        "server_rss_mb": server[1] / 2**20,
                        "db_rss_mb": db[1] / 2**20,
                    }
                )
            last = (now, server[0], db[0])

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        n = len(self.samples)
        return {
            "server_cpu": round(sum(s["server_cpu"] for s in self.samples) / n, 2),
            "db_cpu": round(sum(s["db_cpu"] for s in self.samples) / n, 2),
            "server_rss_mb": round(max(s["server_rss_mb"] for s in self.samples), 1),
        }


def wrk(url: str, requests: Path, mix: str, concurrency: int, seconds: int) -> dict[str, Any]:
    threads = min(2, concurrency)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        str(requests),
        *mix.split(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    match = re.search(r"^RESULT (\{.*\})$", out.stdout, re.M)
    if out.returncode != 0 or match is None:
        raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")
    raw = json.loads(match.group(1))
    secs = raw["duration_us"] / 1e6
    errors = sum(raw["errors"].values())
    return {
        "concurrency": concurrency,
        "seconds": round(secs, 1),
        "requests": raw["requests"],
        "rps": round(raw["requests"] / secs, 1),
        "errors": errors,
        "error_detail": raw["errors"],
        **{k: round(v / 1000, 2) for k, v in raw["latency_us"].items()},  # ms
    }


def check_once(base: str, line: str) -> None:
    """One request of a kind, checked before the load: a misconfigured workload fails here with
    the server's answer, not as thousands of anonymous errors."""
    kind, method, path, token, body = line.split("\t", 4)
    data = body.replace("__UID__", str(time.time_ns())).encode() if body else None
    req = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{kind} {method} {path[:80]}: {exc.code} {exc.read()[:500]!r}") from None


def pgbench(url: sa.URL, clients: int, seconds: int) -> dict[str, float]:
    """pgbench TPC-B-like and select-only on the same server (its own tables, scale 10)."""
    exe = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    conn = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or ""]
    db = url.database or ""
    subprocess.run(
        [exe, "-i", "-q", "-s", "10", *conn, db],
        env=env,
        check=True,
        capture_output=True,
    )
    out: dict[str, float] = {}
    for name, extra in (("tpcb", []), ("select_only", ["-S"])):
        run = subprocess.run(
            [exe, *extra, "-c", str(clients), "-j", "2", "-T", str(seconds), *conn, db],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", run.stdout)
        out[name] = float(m.group(1)) if m else 0.0
    subprocess.run(
        [exe, "-i", "-I", "d", *conn, db],
        env=env,
        check=True,
        capture_output=True,
    )
    return out


# -- the run -------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--database-url", default="", help="PostgreSQL URL (default: SQLite)")
    ap.add_argument("--data-dir", type=Path, default=None, help="default: a temporary directory")
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--mean-documents", type=float, default=10.0)
    ap.add_argument("--reuse", action="store_true", help="reuse a population already loaded")
    ap.add_argument("--workloads", default="W1,W2,W3,W4,W5")
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--seconds", type=int, default=20, help="per workload and concurrency")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes")
    ap.add_argument("--publishers", type=int, default=300, help="patients W2 publishes to")
    ap.add_argument("--history-patients", type=int, default=2000)
    ap.add_argument("--soak", type=int, default=0, help="then W4 for this many seconds (memory)")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="CI: small, short; fails on any error")
    ap.add_argument("--label", default="", help="added to the result file's name")
    args = ap.parse_args()
    if args.smoke:
        args.patients = min(args.patients, 2000)
        args.concurrency, args.seconds, args.publishers = "8", 5, 50
        args.history_patients = 200
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (Debian: apt-get install wrk)")
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="dmp-bench-")
        args.data_dir = Path(tmp.name)
    settings = Settings(
        data_dir=args.data_dir,
        database_url=args.database_url,
        test_mode=True,
        token_ttl_seconds=TOKEN_TTL,
    )
    engine_name = "postgresql" if args.database_url.startswith("postgresql") else "sqlite"
    manifest = prepare(settings, args)
    requests = args.data_dir / "bench-requests.tsv"
    lines = request_lines(settings, manifest, args)
    requests.write_text("\n".join(lines) + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DMP_DATA_DIR": str(args.data_dir),
        "DMP_DATABASE_URL": args.database_url,
        "DMP_TEST_MODE": "true",
        "DMP_LOG_LEVEL": "WARNING",
        "DMP_TOKEN_TTL": str(TOKEN_TTL),
        "PYTHONPATH": str(ROOT),
    }
    serve = [
        sys.executable,
        "-c",
        "from dmp.cli import main; main()",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
    ]
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "engine": engine_name,
        "patients": manifest.patients,
        "documents": manifest.documents,
        "load_seconds": manifest.seconds,
        "workers": args.workers,
        "smoke": args.smoke,
        "workloads": {},
        "baselines": {},
    }
    levels = [int(c) for c in args.concurrency.split(",")]
    failures = 0
    with serving(serve, env, port, "/health") as pid:
        for w in args.workloads.split(","):
            check_once(base, next(x for x in lines if x.startswith(w.replace("W4", "W1") + "\t")))
            runs = []
            for c in levels:
                with Sampler(pid) as sampler:
                    run = wrk(base, requests, MIXES[w], c, args.seconds)
                run.update(sampler.summary())
                runs.append(run)
                failures += run["errors"]
                print(
                    f"{w} c={c:<3} {run['rps']:>8.1f} req/s  p50 {run['p50']:>7.2f} ms  "
                    f"p99 {run['p99']:>8.2f} ms  errors {run['errors']}  "
                    f"server {run.get('server_cpu', 0):.2f} cores, db "
                    f"{run.get('db_cpu', 0):.2f}",
                    flush=True,
                )
            result["workloads"][w] = runs
        if args.soak:
            with Sampler(pid, interval=5) as sampler:
                run = wrk(base, requests, MIXES["W4"], 32, args.soak)
            rss = [s["server_rss_mb"] for s in sampler.samples]
            head = rss[: max(1, len(rss) // 10)]
            run["rss_first_mb"] = round(max(head), 1)
            run["rss_last_mb"] = round(rss[-1], 1)
            run["rss_growth"] = round(rss[-1] / max(head) - 1, 3)
            run["samples"] = sampler.samples
            failures += run["errors"]
            result["soak"] = run
            print(
                f"soak W4 {args.soak}s: {run['rps']} req/s, RSS {run['rss_first_mb']} -> "
                f"{run['rss_last_mb']} MB ({run['rss_growth']:+.1%})"
            )
    if not args.no_baselines:
        result["baselines"] = baselines(args, env, requests, lines, levels, engine_name)
    # The smoke form's figures mean nothing (seconds on a tiny population): kept out of the
    # repository's results, beside its data.
    folder = args.data_dir if args.smoke else RESULTS
    folder.mkdir(exist_ok=True)
    name = f"load-{engine_name}-{manifest.patients}{'-smoke' if args.smoke else ''}{args.label}"
    out = folder / f"{name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"results: {out}")
    if tmp is not None:
        tmp.cleanup()
    if failures:
        print(f"FAILED: {failures} request(s) failed", file=sys.stderr)
        return 1
    return 0


def baselines(
    args: argparse.Namespace,
    env: dict[str, str],
    requests: Path,
    lines: list[str],
    levels: list[int],
    engine_name: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    apps = [("hello", "bench.baselines:hello")]
    if engine_name == "postgresql":
        # The bare shape of each workload measured, of those run (W4 mixes W1 to W3).
        run = set(args.workloads.split(","))
        wanted = {BARE_OF[w] for w in run if w in BARE_OF}
        if "W4" in run:
            wanted |= set(BARE_OF.values())
        apps += [(name, "bench.baselines:bare") for name in sorted(wanted)]
    for name, app in apps:
        port = free_port()
        url = sa.make_url(args.database_url) if args.database_url else None
        app_env = dict(env)
        if url is not None:
            app_env["BENCH_BARE_DSN"] = url.set(drivername="postgresql").render_as_string(
                hide_password=False
            )
        cmd = [
            sys.executable,
            "-c",
            f"from dmp import server; server.run({app!r}, host='127.0.0.1', port={port}, "
            f"workers={args.workers})",
        ]
        probe = (
            "/hello"
            if name == "hello"
            else next(x for x in lines if x.startswith("bare\t")).split("\t")[2]
        )
        with serving(cmd, app_env, port, probe) as pid:
            runs = []
            for c in levels:
                with Sampler(pid) as sampler:
                    run = wrk(f"http://127.0.0.1:{port}", requests, MIXES[name], c, args.seconds)
                run.update(sampler.summary())
                runs.append(run)
                print(
                    f"{name} c={c:<3} {run['rps']:>8.1f} req/s  p99 {run['p99']:>7.2f} ms  "
                    f"errors {run['errors']}",
                    flush=True,
                )
            out[name] = runs
    if engine_name == "postgresql":
        url = sa.make_url(args.database_url)
        out["pgbench"] = {str(c): pgbench(url, c, args.seconds) for c in levels}
        print(f"pgbench: {out['pgbench']}")
    return out


if __name__ == "__main__":
    sys.exit(main())
