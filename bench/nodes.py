#!/usr/bin/env python3
"""Several nodes behind Debian's HAProxy, on one PostgreSQL, with faults under load.

    .venv/bin/python bench/nodes.py --database-url postgresql+psycopg://u:p@h/db --seconds 60
    (tests/test_nodes.py runs the short form in CI; docs/reliability.md keeps the long form's
    result)

The cluster: three ``dmp serve`` nodes (``DMP_DRAIN_SECONDS`` set, ``DMP_TRUSTED_PROXIES`` the
balancer's own source address) and two ``dmp worker`` processes, behind HAProxy on loopback
(round robin, a health check on ``/health`` every 200 ms, the client's own address in
``X-Forwarded-For``: a header the client sent is dropped). Every response names the node that
served it (``X-Dmp-Node``).

Under a mixed load from several clients (ITI-65 publications of 30-300 KB CDA documents; ITI-67
consultations, every other one followed by the ITI-68 read of a document it found), faults one
after the other:

- a rolling restart: each node in turn gets SIGTERM, drains, stops, starts again and is back in
  the pool before the next one; no request may fail;
- a node killed with SIGKILL: only the requests it had in flight may fail, and each failed
  request, sent again (a publication with the same uniqueId: a 409 then says it was stored),
  succeeds;
- then every acknowledged document is in the database, whole, once; the audit trail verifies;
  the statistics counters match a recount.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import crash  # noqa: E402
from bench.load import free_port, iti65_bundle  # noqa: E402

from dmp.config import Settings  # noqa: E402
from dmp.domain.ins import OID_TEST  # noqa: E402
from dmp.runtime import Runtime  # noqa: E402

# The balancer connects to the nodes from this address (127/8 is all loopback on Linux): the
# nodes believe X-Forwarded-For from it only, and a client on 127.0.0.1 is not trusted.
BALANCER_SOURCE = "127.0.0.2"
NEEDS_HAPROXY = "Multi-node test: needs HAProxy (apt-get install haproxy)"


def haproxy_config(port: int, nodes: dict[str, int], socket_path: Path) -> str:
    servers = "\n".join(
        f"    server {name} 127.0.0.1:{p} check" for name, p in sorted(nodes.items())
    )
    return f"""global
    maxconn 4096
    stats socket {socket_path} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    timeout http-request 10s
    # A connection refused, or a node that closed without answering: the request goes to
    # another node (HAProxy retries these only where nothing may have been done twice).
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response

frontend dmp
    bind 127.0.0.1:{port}
    # The client's own address, and only it: a header the client sent is not passed on.
    http-request del-header X-Forwarded-For
    option forwardfor
    default_backend nodes

backend nodes
    balance roundrobin
    source {BALANCER_SOURCE}
    option httpchk GET /health
    http-check expect status 200
    default-server inter 200ms fastinter 200ms downinter 500ms fall 2 rise 2
    http-response set-header X-Dmp-Node %[srv_name]
{servers}
"""


@dataclass
class Process:
    name: str
    command: list[str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None


class Cluster:
    """HAProxy, ``nodes`` serving nodes and ``workers`` workers on one database."""

    def __init__(
        self,
        settings: Settings,
        root: Path,
        *,
        nodes: int = 3,
        workers: int = 2,
        drain_seconds: float = 2.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.root = root
        self.env = {
            **os.environ,
            "DMP_DATA_DIR": str(settings.data_dir),
            "DMP_DATABASE_URL": settings.database_url,
            "DMP_TEST_MODE": "true",
            "DMP_LOG_LEVEL": "WARNING",
            "DMP_DRAIN_SECONDS": str(drain_seconds),
            "DMP_TRUSTED_PROXIES": BALANCER_SOURCE,
            **(env or {}),
        }
        cli = [sys.executable, "-m", "dmp.cli"]
        self.nodes = {f"n{i + 1}": Process(f"n{i + 1}", [], port=free_port()) for i in range(nodes)}
        for node in self.nodes.values():
            node.command = [*cli, "serve", "--port", str(node.port)]
        self.workers = [
            Process(f"w{i + 1}", [*cli, "worker", "--interval", "0.5"]) for i in range(workers)
        ]
        self.port = free_port()
        self.socket = root / "haproxy.sock"
        self.haproxy: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, process: Process) -> None:
        log = (self.root / f"{process.name}.log").open("ab")
        self._logs.append(log)
        process.proc = subprocess.Popen(
            process.command, env=self.env, stdout=log, stderr=log, start_new_session=True
        )

    def start(self) -> None:
        # The key ring and the schema first, once (the nodes share the data directory).
        Runtime.start(self.settings).close()
        config = self.root / "haproxy.cfg"
        ports = {name: node.port for name, node in self.nodes.items()}
        config.write_text(haproxy_config(self.port, ports, self.socket))
        for node in self.nodes.values():
            self._start(node)
        for worker in self.workers:
            self._start(worker)
        log = (self.root / "haproxy.log").open("ab")
        self._logs.append(log)
        self.haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)], stdout=log, stderr=log, start_new_session=True
        )
        for name in self.nodes:
            self.wait_state(name, "UP", 90)

    def states(self) -> dict[str, str]:
        """Each node's state as HAProxy sees it (UP, DOWN, ...), from its stats socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        status = header.index("status")
        found = {}
        for line in lines[1:]:
            cells = line.split(",")
            if len(cells) > status and cells[0] == "nodes" and cells[1] in self.nodes:
                found[cells[1]] = cells[status].split(" ")[0]
        return found

    def wait_state(self, name: str, state: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        last: dict[str, str] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, IndexError, ValueError):
                last = self.states()
                if last.get(name) == state:
                    return
            node = self.nodes[name].proc
            if state == "UP" and node is not None and node.poll() is not None:
                raise RuntimeError(f"node {name} exited: see {self.root}/{name}.log")
            time.sleep(0.05)
        raise RuntimeError(f"node {name} not {state} after {seconds} s: {last}")

    def restart(self, name: str) -> float:
        """SIGTERM (the node drains, then stops), start again, back in the pool: seconds."""
        node = self.nodes[name]
        assert node.proc is not None
        t0 = time.monotonic()
        os.killpg(node.proc.pid, signal.SIGTERM)
        node.proc.wait(60)
        self._start(node)
        self.wait_state(name, "UP", 90)
        return time.monotonic() - t0

    def kill(self, name: str) -> None:
        """SIGKILL: no drain, no goodbye; then started again."""
        node = self.nodes[name]
        assert node.proc is not None
        os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait(30)

    def start_node(self, name: str) -> None:
        self._start(self.nodes[name])
        self.wait_state(name, "UP", 90)

    def close(self) -> None:
        processes = [*self.nodes.values(), *self.workers]
        for p in processes:
            if p.proc is not None and p.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGKILL)
                p.proc.wait()
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.kill()
            self.haproxy.wait()
        for log in self._logs:
            log.close()


@contextlib.contextmanager
def running(
    settings: Settings,
    root: Path,
    *,
    workers: int = 2,
    env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    cluster = Cluster(settings, root, workers=workers, env=env)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


# -- the load ---------------------------------------------------------------------------------


@dataclass
class Failure:
    at: float  # seconds since the load began
    what: str  # "GET ..." or "POST ..."
    reason: str


@dataclass
class LoadResult:
    requests: int = 0
    publications: int = 0
    consultations: int = 0
    retrievals: int = 0
    failures: list[Failure] = field(default_factory=list)  # first attempts that failed
    failed_attempts: list[float] = field(default_factory=list)  # when any attempt failed
    retried_ok: int = 0  # ...and succeeded when sent again
    retries_failed: list[str] = field(default_factory=list)
    stored_on_retry: int = 0  # publications whose retry said "already stored" (409)
    served_by: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class Load:
    """Publishers and readers (consultations, and retrievals of what they find) through the
    balancer, until stopped."""

    def __init__(
        self,
        base: str,
        publishers: list[tuple[str, str, str]],
        readers_per_publisher: int = 1,
        retries: int = 5,
    ) -> None:
        self.base = base
        self.publishers = publishers
        self.readers = readers_per_publisher
        self.retries = retries
        self.sent: dict[str, crash.Sent] = {}
        self.result = LoadResult()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self._threads: list[threading.Thread] = []

    def _send(self, request: urllib.request.Request) -> tuple[int, bytes, str]:
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, answer.read(), answer.headers.get("x-dmp-node", "")
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read(), refused.headers.get("x-dmp-node", "")

    def _attempt(
        self, make: Callable[[], urllib.request.Request], what: str
    ) -> tuple[int, bytes] | None:
        """Send; on a failure, note it and send again (``retries`` times, 0.2 s apart)."""
        for attempt in range(self.retries + 1):
            request = make()
            try:
                status, body, node = self._send(request)
                reason = "" if status < 500 else f"{status} {body[:200]!r}"
            except (OSError, http.client.HTTPException) as exc:
                # A node killed while answering cuts the body (IncompleteRead): a failed
                # request of that node, like a refused connection.
                status, body, node, reason = 0, b"", "", f"{type(exc).__name__}: {exc}"
            with self.lock:
                self.result.requests += 1
                if node:
                    self.result.served_by[node] = self.result.served_by.get(node, 0) + 1
                if not reason:
                    if attempt:
                        self.result.retried_ok += 1
                    return status, body
                at = round(time.monotonic() - self.t0, 3)
                self.result.failed_attempts.append(at)
                if attempt == 0:
                    self.result.failures.append(Failure(at, what, reason))
            time.sleep(0.2)
        with self.lock:
            self.result.retries_failed.append(f"{what}: {reason}")
        return None

    def _publisher(self, token: str, ins: str, author: str, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            uid = str(uuid.uuid4().int)
            content = crash._content(ins, uid, rng)
            body = json.dumps(iti65_bundle(ins, author, content)).replace("__UID__", uid).encode()
            with self.lock:
                self.sent[uid] = crash.Sent(ins, author, content)

            def make(body: bytes = body) -> urllib.request.Request:
                return urllib.request.Request(
                    f"{self.base}/fhir",
                    data=body,
                    method="POST",
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/fhir+json",
                    },
                )

            answer = self._attempt(make, f"POST /fhir ({uid[:8]})")
            if answer is None:
                continue
            status, text = answer
            with self.lock:
                self.result.publications += 1
                if status == 200:
                    self.sent[uid].acknowledged = True
                elif status == 409 and b"already exists" in text:
                    # A retry of a publication the killed node had stored: stored once.
                    self.sent[uid].acknowledged = True
                    self.result.stored_on_retry += 1
                else:
                    self.result.problems.append(f"publication refused ({status}): {text[:300]!r}")
                    self.stop.set()

    def _reader(self, token: str, ins: str) -> None:
        query = f"patient.identifier=urn:oid:{OID_TEST}%7C{ins}&status=current&_count=20"

        def make() -> urllib.request.Request:
            return urllib.request.Request(
                f"{self.base}/fhir/DocumentReference?{query}",
                headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
            )

        rng = random.Random(ins)
        while not self.stop.is_set():
            answer = self._attempt(make, "GET /fhir/DocumentReference")
            if answer is None:
                continue
            status, text = answer
            with self.lock:
                self.result.consultations += 1
                if status != 200:
                    self.result.problems.append(f"consultation refused ({status}): {text[:300]!r}")
                    self.stop.set()
                    return
            # Every other consultation, one of the documents found is read (ITI-68).
            urls = [
                e["resource"]["content"][0]["attachment"]["url"]
                for e in json.loads(text).get("entry", [])
            ]
            if not urls or rng.random() < 0.5:
                continue
            url = rng.choice(urls)

            def read(url: str = url) -> urllib.request.Request:
                return urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})

            got = self._attempt(read, "GET /fhir/Binary")
            if got is None:
                continue
            with self.lock:
                self.result.retrievals += 1
                if got[0] != 200:
                    self.result.problems.append(f"retrieval refused ({got[0]}): {got[1][:300]!r}")
                    self.stop.set()

    def start(self) -> None:
        self.t0 = time.monotonic()
        for n, (ins, ps, token) in enumerate(self.publishers):
            self._threads.append(
                threading.Thread(target=self._publisher, args=(token, ins, ps, n), daemon=True)
            )
            for _ in range(self.readers):
                self._threads.append(
                    threading.Thread(target=self._reader, args=(token, ins), daemon=True)
                )
        for t in self._threads:
            t.start()

    def at(self) -> float:
        return time.monotonic() - self.t0

    def _answered(self) -> int:
        return self.result.publications + self.result.consultations + self.result.retrievals

    def wait_requests(self, more: int, seconds: float = 60) -> None:
        """Until ``more`` requests more have been answered."""
        with self.lock:
            target = self._answered() + more
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                if self._answered() >= target or self.result.problems:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the load had fewer than {more} answers in {seconds} s")

    def finish(self) -> LoadResult:
        self.stop.set()
        for t in self._threads:
            t.join(120)
        return self.result

    @property
    def clients(self) -> int:
        return len(self._threads)


# -- the faults -------------------------------------------------------------------------------


@dataclass
class FaultReport:
    nodes: int
    clients: int
    seconds: float = 0.0
    requests: int = 0
    publications: int = 0
    consultations: int = 0
    retrievals: int = 0
    served_by: dict[str, int] = field(default_factory=dict)
    restart_seconds: list[float] = field(default_factory=list)
    failed_during_restarts: int = 0
    killed_node: str = ""
    failed_after_kill: int = 0  # first attempts that failed once the node was killed
    failed_after_kill_within: float = 0.0  # seconds from the kill to the last such failure
    failures_after_kill: list[str] = field(default_factory=list)  # which, and why
    retried_ok: int = 0
    retries_failed: int = 0
    stored_on_retry: int = 0
    # What the database holds afterwards, checked as the crash test checks it.
    stored: crash.CrashResult = field(default_factory=lambda: crash.CrashResult("postgresql", 1, 0))
    problems: list[str] = field(default_factory=list)


def faults_under_load(
    settings: Settings,
    cluster: Cluster,
    *,
    clients: int = 3,
    seconds_between: float = 2.0,
    restarts: int = 1,
) -> FaultReport:
    """Rolling restarts, then a SIGKILL, under load; then what the database holds."""
    t0 = time.monotonic()
    publishers = crash._prepare(settings, clients)
    load = Load(cluster.url, publishers)
    report = FaultReport(len(cluster.nodes), 0)
    load.start()
    report.clients = load.clients
    try:
        load.wait_requests(50)
        for _ in range(restarts):
            for name in cluster.nodes:
                report.restart_seconds.append(round(cluster.restart(name), 2))
                load.wait_requests(20)
        with load.lock:
            report.failed_during_restarts = len(load.result.failures)
        time.sleep(seconds_between)
        victim = random.Random(27).choice(sorted(cluster.nodes))
        report.killed_node = victim
        killed_at = load.at()
        cluster.kill(victim)
        time.sleep(seconds_between)
        cluster.start_node(victim)
        load.wait_requests(50)
    finally:
        result = load.finish()
    after = [f for f in result.failures if f.at >= killed_at]
    report.failed_after_kill = len(after)
    report.failures_after_kill = [f"{f.what}: {f.reason[:80]}" for f in after]
    report.failed_after_kill_within = round(max((f.at - killed_at for f in after), default=0), 3)
    report.requests, report.served_by = result.requests, dict(sorted(result.served_by.items()))
    report.publications, report.consultations = result.publications, result.consultations
    report.retrievals = result.retrievals
    report.retried_ok, report.retries_failed = result.retried_ok, len(result.retries_failed)
    report.stored_on_retry = result.stored_on_retry
    report.problems += result.problems + result.retries_failed[:5]
    report.problems += [
        f"failed during the restarts: {f}" for f in result.failures[:5] if f.at < killed_at
    ]
    checked = report.stored
    checked.clients, checked.sent = len(publishers), len(load.sent)
    checked.acknowledged = sum(1 for s in load.sent.values() if s.acknowledged)
    crash._check(settings, load.sent, checked)
    report.problems += checked.problems
    report.seconds = round(time.monotonic() - t0, 1)
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--database-url", required=True, help="PostgreSQL URL (an empty database)")
    ap.add_argument("--clients", type=int, default=4, help="publishers (each with a reader)")
    ap.add_argument("--restarts", type=int, default=3, help="rolling restarts of every node")
    ap.add_argument("--seconds-between", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dmp-nodes-"))
    settings = Settings(data_dir=root / "data", database_url=args.database_url, test_mode=True)
    with running(settings, root) as cluster:
        report = faults_under_load(
            settings,
            cluster,
            clients=args.clients,
            seconds_between=args.seconds_between,
            restarts=args.restarts,
        )
    text = json.dumps(asdict(report), indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
