"""High availability on a real engine: a pg_auto_failover monitor, a primary and a synchronous
standby on loopback; the service connects with a multi-host URL (target_session_attrs=read-write).
The primary is stopped (immediate shutdown, as a crash) during ITI-65 publications: the monitor
promotes the standby, the service reconnects by itself and publishes again, and every
acknowledged document is on the new primary, byte for byte, with every audit chain intact.

Runs in the PostgreSQL pass (it starts its own three servers). Needs Debian's
``postgresql-15-auto-failover``; .ci/run installs it and fails if this test was skipped."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
import sqlalchemy as sa
from bench import crash, nodes

from dmp.config import Settings
from tests.conftest import POSTGRES_ONLY
from tests.mail import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
NEEDS_AUTOCTL = (
    "PostgreSQL-only test: needs pg_auto_failover "
    "(apt-get install postgresql-15-auto-failover pg-auto-failover-cli)"
)
# The monitor's failure detection, shortened from its defaults (tens of seconds) for a test.
MONITOR_SETTINGS = {
    "pgautofailover.health_check_period": 1000,
    "pgautofailover.health_check_timeout": 1000,
    "pgautofailover.health_check_max_retries": 1,
    "pgautofailover.health_check_retry_delay": 500,
    "pgautofailover.node_considered_unhealthy_timeout": 3000,
    "pgautofailover.primary_demote_timeout": 3000,
}


@dataclass
class Cluster:
    root: Path
    ports: dict[str, int]
    user: str | None  # run pg_autoctl as this user (root may not run PostgreSQL)
    procs: list[subprocess.Popen[bytes]]
    logs: list[IO[bytes]]

    def autoctl(self, *args: str, background: bool = False, log: str = "") -> None:
        command = ["pg_autoctl", *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        env = {**os.environ, "PATH": f"{PG_BIN}:{os.environ['PATH']}", "PG_CONFIG": ""}
        out = (self.root / (log or "autoctl.log")).open("ab")
        self.logs.append(out)
        if background:
            self.procs.append(
                subprocess.Popen(
                    command, env=env, stdout=out, stderr=out, start_new_session=True, cwd="/"
                )
            )
        else:
            done = subprocess.run(command, env=env, stdout=out, stderr=out, cwd="/", timeout=180)
            if done.returncode != 0:
                raise AssertionError(f"pg_autoctl {args[0]} failed: see {self.root}/{log}")

    def url(self, node: str, user: str = "postgres", db: str = "dmp") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.ports[node]}/{db}"

    def query(self, node: str, sql: str, db: str = "dmp") -> list[tuple[object, ...]]:
        engine = sa.create_engine(self.url(node, db=db), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                result = conn.exec_driver_sql(sql)
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def states(self) -> dict[str, tuple[str, str]]:
        rows = self.query(
            "monitor",
            "SELECT nodeport, reportedstate, goalstate FROM pgautofailover.node",
            db="pg_auto_failover",
        )
        by_port = {v: k for k, v in self.ports.items()}
        return {by_port[int(str(p))]: (str(r), str(g)) for p, r, g in rows}

    def wait(self, what: str, ok: object, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(sa.exc.OperationalError, KeyError):
                if ok():  # type: ignore[operator]
                    return
            # A new standby's base backup waits for a checkpoint on the primary: hurry it.
            with contextlib.suppress(sa.exc.OperationalError, KeyError):
                self.query("node1", "CHECKPOINT")
            time.sleep(1)
        raise AssertionError(f"timed out waiting for {what}: {self.safe_states()}")

    def safe_states(self) -> object:
        try:
            return self.states()
        except Exception as exc:
            return exc


def _runner() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip(f"{NEEDS_AUTOCTL}; running as root needs a 'postgres' system user")
    return "postgres"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not os.environ.get("DMP_TEST_DATABASE_URL", "").startswith("postgresql"):
        pytest.skip(POSTGRES_ONLY)
    if shutil.which("pg_autoctl") is None or not (PG_BIN / "pg_ctl").exists():
        pytest.skip(NEEDS_AUTOCTL)
    user = _runner()
    root = Path(tempfile.mkdtemp(prefix="dmp-ha-"))
    if user:
        shutil.chown(root, user)
    ports = {"monitor": free_port(), "node1": free_port(), "node2": free_port()}
    c = Cluster(root, ports, user, [], [])
    common = ["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"]
    try:
        c.autoctl("create", "monitor", "--pgdata", str(root / "monitor"),
                  "--pgport", str(ports["monitor"]), *common, log="monitor.log")  # fmt: skip
        c.autoctl("run", "--pgdata", str(root / "monitor"), background=True, log="monitor.log")
        monitor = (
            f"postgres://autoctl_node@127.0.0.1:{ports['monitor']}/pg_auto_failover?sslmode=disable"
        )
        c.wait("the monitor", lambda: c.query("monitor", "SELECT 1", db="pg_auto_failover"))
        for name, value in MONITOR_SETTINGS.items():
            c.query("monitor", f"ALTER SYSTEM SET {name} = {value}", db="pg_auto_failover")
        c.query("monitor", "SELECT pg_reload_conf()", db="pg_auto_failover")
        for node in ("node1", "node2"):
            c.autoctl("create", "postgres", "--pgdata", str(root / node),
                      "--pgport", str(ports[node]), "--dbname", "dmp", "--monitor", monitor,
                      *common, "--run", background=True, log=f"{node}.log")  # fmt: skip
            if node == "node1":
                c.wait("the first primary", lambda: c.states()["node1"][0] == "single")
        c.wait(
            "a primary and a synchronous standby",
            lambda: c.states() == {"node1": ("primary",) * 2, "node2": ("secondary",) * 2},
        )
        sync = c.query("node1", "SHOW synchronous_standby_names")[0][0]
        assert "pgautofailover_standby" in str(sync), sync
        c.query("node1", "CREATE ROLE dmp LOGIN PASSWORD 'dmp'")
        c.query("node1", "ALTER DATABASE dmp OWNER TO dmp")
        c.query("node1", "ALTER SCHEMA public OWNER TO dmp")
        yield c
    finally:
        for node in ("node2", "node1", "monitor"):
            with contextlib.suppress(Exception):
                c.autoctl("stop", "--pgdata", str(root / node), "--immediate")
        for proc in c.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for log in c.logs:
            log.close()
        shutil.rmtree(root, ignore_errors=True)


def test_the_standby_takes_over_and_no_acknowledged_write_is_lost(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Three ``dmp serve`` nodes and a worker behind HAProxy (bench/nodes.py), publishers and
    readers running; the primary crashes. Requests fail for a bounded time (measured: from the
    first failed attempt to the last), then succeed again without restarting anything."""
    if shutil.which("haproxy") is None:
        pytest.skip(nodes.NEEDS_HAPROXY)
    p = cluster.ports
    url = (
        "postgresql+psycopg://dmp:dmp@/dmp"
        f"?host=127.0.0.1:{p['node1']}&host=127.0.0.1:{p['node2']}"
        "&target_session_attrs=read-write"
    )
    settings = Settings(data_dir=tmp_path / "data", database_url=url, test_mode=True)
    root = tmp_path / "nodes"
    root.mkdir()
    with nodes.running(settings, root, workers=1) as lb:
        publishers = crash._prepare(settings, 3)
        # Clients that keep sending what failed, 0.2 s apart, for up to two minutes.
        load = nodes.Load(lb.url, publishers, retries=600)
        load.start()
        try:
            load.wait_requests(60)
            assert not load.result.problems, load.result.problems
            # The primary goes down as in a crash (immediate shutdown), under load.
            with load.lock:
                before = load.result.publications
            cluster.autoctl("stop", "--pgdata", str(cluster.root / "node1"), "--immediate")
            failed_at = load.at()
            cluster.wait(
                "the standby's promotion",
                lambda: cluster.states()["node2"][0] in ("wait_primary", "primary"),
            )
            promoted_in = load.at() - failed_at
            # The nodes reconnect by themselves: answers again, publications included.
            load.wait_requests(100, seconds=120)
        finally:
            result = load.finish()
    assert cluster.query("node2", "SELECT pg_is_in_recovery()")[0][0] is False
    assert result.problems == [] and result.retries_failed == []
    failed = [t for t in result.failed_attempts if t >= failed_at]
    window = (max(failed) - failed_at) if failed else 0.0
    assert window < 60, window  # bounded: the monitor's detection, the promotion, reconnects
    checked = crash.CrashResult("postgresql", 1, len(publishers))
    checked.sent = len(load.sent)
    checked.acknowledged = sum(1 for s in load.sent.values() if s.acknowledged)
    assert checked.acknowledged > before
    crash._check(settings, load.sent, checked)  # through the multi-host URL: the new primary
    assert checked.problems == []
    assert checked.acknowledged_found == checked.acknowledged
    assert checked.partial == 0 and checked.duplicates == 0
    assert checked.audit_intact and checked.counters_match
    print(
        f"failover under load: {checked.acknowledged} publications acknowledged ({before} before "
        f"the primary stopped), all found; {result.consultations} consultations; standby "
        f"promoted in {promoted_in:.1f} s; failed attempts for {window:.1f} s after the crash "
        f"({len(failed)} attempts, {len(result.failures)} requests, each retried until it "
        "succeeded)"
    )
