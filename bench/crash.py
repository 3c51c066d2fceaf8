#!/usr/bin/env python3
"""Crash safety: `kill -9` of the server during concurrent ITI-65 publications, many times.

    .venv/bin/python bench/crash.py --cycles 100                       # SQLite, the long form
    .venv/bin/python bench/crash.py --cycles 100 --database-url postgresql+psycopg://u:p@h/db
    (tests/test_crash.py runs the short form, 3 cycles, in CI on both engines)

Each cycle starts `dmp serve` on the same database, lets several clients publish ITI-65
bundles (a 30 KB to 300 KB CDA each, every one different) for a random while, then kills the
server's whole process group with SIGKILL. A publication is *acknowledged* when its client read
a 200 transaction-response. After the last cycle:

- every acknowledged document is present, and its content byte-identical to what was sent;
- no document is partial: every sent document that is present (acknowledged or not) is whole;
- no document is stored twice, and every submission set holds its document;
- `dmp audit verify` passes, and the statistics counters match a full recount.

The result is printed and, with --out, written as JSON (docs/reliability.md keeps the last
long-form result).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import population  # noqa: E402
from bench.load import free_port, iti65_bundle  # noqa: E402

from dmp.auth import actors  # noqa: E402
from dmp.config import Settings  # noqa: E402
from dmp.domain.ins import OID_TEST, Ins  # noqa: E402
from dmp.identity.tokens import issue_token  # noqa: E402
from dmp.jobs import maintenance  # noqa: E402
from dmp.runtime import Runtime  # noqa: E402
from dmp.stats import counters  # noqa: E402

SCOPES = frozenset({"user/DocumentReference.cruds", "user/Binary.r", "user/List.cs"})


@dataclass
class Sent:
    ins: str
    author: str
    content: bytes
    acknowledged: bool = False


@dataclass
class CrashResult:
    engine: str
    cycles: int
    clients: int
    sent: int = 0
    acknowledged: int = 0
    acknowledged_found: int = 0
    unacknowledged_found: int = 0
    partial: int = 0
    duplicates: int = 0
    audit_events: int = 0
    audit_intact: bool = False
    counters_match: bool = False
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and self.acknowledged_found == self.acknowledged
            and self.partial == 0
            and self.duplicates == 0
            and self.audit_intact
            and self.counters_match
        )


def _content(ins: str, uid: str, rng: random.Random) -> bytes:
    body = population.cda(ins, rng.choice((30, 100, 300)) * 1024)
    return body.replace(b"Document fictif.", f"Document fictif {uid}.".encode(), 1)


def _publisher(
    base: str,
    token: str,
    ins: str,
    author: str,
    sent: dict[str, Sent],
    lock: threading.Lock,
    stop: threading.Event,
    seed: int,
    problems: list[str],
) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        uid = str(uuid.uuid4().int)
        content = _content(ins, uid, rng)
        body = json.dumps(iti65_bundle(ins, author, content)).replace("__UID__", uid)
        with lock:
            sent[uid] = Sent(ins, author, content)
        request = urllib.request.Request(
            f"{base}/fhir",
            data=body.encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                if answer.status == 200:
                    with lock:
                        sent[uid].acknowledged = True
        except urllib.error.HTTPError as refused:
            if refused.code < 500:  # a refusal is a bug of this harness or of the server
                with lock:
                    problems.append(
                        f"publication refused ({refused.code}): {refused.read()[:300]!r}"
                    )
                return
            time.sleep(0.05)  # 503 while the database recovers: not acknowledged, go on
        except OSError:
            time.sleep(0.05)  # the server is gone (killed) or not up yet


def _serve(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DMP_DATA_DIR": str(settings.data_dir),
        "DMP_TEST_MODE": "true",
        "DMP_LOG_LEVEL": "WARNING",
    }
    if settings.database_url:
        env["DMP_DATABASE_URL"] = settings.database_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmp.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start") from None
            time.sleep(0.1)


def _prepare(settings: Settings, publishers: int) -> list[tuple[str, str, str]]:
    """A small population; (INS value, author idNatPS, token) per publisher."""
    rt = Runtime.start(settings)
    try:
        manifest = population.build(rt, 200, mean_documents=0.5, processes=1)
        chosen = manifest.publications[:publishers]
        out = []
        for i, ps in chosen:
            token = issue_token(
                actors.professional_actor(rt, ps),
                rt.token_secret,
                now=rt.clock.now(),
                ttl_seconds=24 * 3600,
                scopes=SCOPES,
            )
            out.append((population.ins_value(i), ps, token))
        return out
    finally:
        rt.close()


def _check(settings: Settings, sent: dict[str, Sent], result: CrashResult) -> None:
    rt = Runtime.start(settings)
    try:
        with rt.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT unique_id, logical_id FROM documents WHERE unique_id LIKE :p"),
                {"p": "urn:oid:2.25.%"},
            ).all()
            sets = conn.execute(
                sa.text(
                    "SELECT count(*) FROM document_lists "
                    "WHERE kind = 'submissionset' AND unique_id LIKE :p"
                ),
                {"p": "urn:oid:2.25.%"},
            ).scalar_one()
        stored: dict[str, list[str]] = {}
        for unique_id, logical_id in rows:
            uid = unique_id.removeprefix("urn:oid:2.25.")[:-1]
            stored.setdefault(uid, []).append(logical_id)
        result.duplicates = sum(len(v) - 1 for v in stored.values())
        for uid, item in sent.items():
            if uid not in stored:
                if item.acknowledged:
                    result.problems.append(f"acknowledged document {uid} is missing")
                continue
            gate = rt.access(actors.professional_actor(rt, item.author))
            _, content = gate.read_content(Ins(OID_TEST, item.ins), stored[uid][0])
            if content != item.content:
                result.partial += 1
                result.problems.append(f"document {uid}: content differs from what was sent")
            if item.acknowledged:
                result.acknowledged_found += 1
            else:
                result.unacknowledged_found += 1
        unknown = set(stored) - set(sent)
        if unknown:
            result.problems.append(f"{len(unknown)} stored documents were never sent")
        if sets != len(stored):
            result.problems.append(f"{len(stored)} documents but {sets} submission sets")
        audit = maintenance.verify_audit(rt)
        result.audit_events, result.audit_intact = audit.events, audit.ok
        if not audit.ok:
            result.problems.append(f"audit trail broken at {audit.fault}")
        counters.fold_pending(rt)
        mismatches = counters.verify_counters(rt)
        result.counters_match = not mismatches
        if mismatches:
            result.problems.append(f"statistics counters differ: {mismatches[:3]}")
    finally:
        rt.close()


def run(
    settings: Settings,
    *,
    cycles: int,
    clients: int = 4,
    min_seconds: float = 0.5,
    max_seconds: float = 2.5,
    seed: int = 65,
) -> CrashResult:
    """Publish under `kill -9` for ``cycles`` cycles; check what the database holds."""
    t0 = time.monotonic()
    rng = random.Random(seed)
    engine = "postgresql" if settings.database_url.startswith("postgresql") else "sqlite"
    result = CrashResult(engine, cycles, clients)
    publishers = _prepare(settings, clients)
    sent: dict[str, Sent] = {}
    lock = threading.Lock()
    for cycle in range(cycles):
        port = free_port()
        proc = _serve(settings, port)
        stop = threading.Event()
        base = f"http://127.0.0.1:{port}"
        threads = [
            threading.Thread(
                target=_publisher,
                args=(base, tok, ins, ps, sent, lock, stop, seed + cycle * 97 + n, result.problems),
                daemon=True,
            )
            for n, (ins, ps, tok) in enumerate(publishers)
        ]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(min_seconds, max_seconds))
        os.killpg(proc.pid, signal.SIGKILL)  # mid-request: no shutdown, no flush
        proc.wait()
        stop.set()
        for t in threads:
            t.join(60)
    result.sent = len(sent)
    result.acknowledged = sum(1 for s in sent.values() if s.acknowledged)
    _check(settings, sent, result)
    result.seconds = round(time.monotonic() - t0, 1)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--database-url", default="", help="PostgreSQL URL (an empty database)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = ap.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="dmp-crash-"))
    settings = Settings(data_dir=data_dir, database_url=args.database_url, test_mode=True)
    result = run(settings, cycles=args.cycles, clients=args.clients)
    summary = {**asdict(result), "ok": result.ok}
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
