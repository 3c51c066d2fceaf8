"""The worker killed mid-batch (SIGKILL) and restarted, twice: every notice is delivered, and a
message is repeated only if it was in flight at a kill (at most one per kill; it carries the
same Message-ID, by which a receiver recognises it). Counted at the SMTP server.

And on PostgreSQL, four workers at once: each notice delivered exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.jobs import notify
from dmp.runtime import Runtime
from tests.factories import ins_for, load_directory, open_record
from tests.mail import SmtpServer
from tests.notify_helpers import with_account

N = 60


def _population(settings: Settings, smtp: SmtpServer, n: int, start: int) -> Runtime:
    """``n`` records whose holders have an account: ``n`` opening notices, due now."""
    rt = Runtime.start(
        settings.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_security": "plain"}
        ),
        clock=FixedClock(datetime.now(UTC)),
    )
    load_directory(rt)
    for i in range(start, start + n):
        ins = ins_for(i)
        open_record(rt, ins)
        with_account(rt, ins)
    return rt


def _worker(settings: Settings, smtp: SmtpServer) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DMP_DATA_DIR": str(settings.data_dir),
        "DMP_SMTP_HOST": "127.0.0.1",
        "DMP_SMTP_PORT": str(smtp.port),
        "DMP_SMTP_SECURITY": "plain",
        "DMP_NOTIFY_LEASE_SECONDS": "2",
        "DMP_LOG_LEVEL": "WARNING",
    }
    if settings.database_url:
        env["DMP_DATABASE_URL"] = settings.database_url
    return subprocess.Popen(
        [sys.executable, "-m", "dmp.cli", "worker", "--interval", "0.2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _wait(smtp: SmtpServer, at_least: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while len(set(smtp.inbox.ids())) < at_least:
        assert time.monotonic() < deadline, f"only {len(set(smtp.inbox.ids()))} delivered"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_worker_killed_mid_batch_delivers_every_notice_once_restarted(
    settings: Settings,
) -> None:
    with SmtpServer(delay=0.03) as smtp:
        rt = _population(settings, smtp, N, 100)
        rt.close()
        kills = 0
        for target in (N // 4, N // 2):
            worker = _worker(settings, smtp)
            _wait(smtp, target)
            worker.send_signal(signal.SIGKILL)  # mid-batch: the server is still receiving
            worker.wait(timeout=10)
            kills += 1
        worker = _worker(settings, smtp)
        try:
            _wait(smtp, N)
            time.sleep(0.5)  # nothing more should come
        finally:
            worker.terminate()
            worker.wait(timeout=10)
        ids = smtp.inbox.ids()
        counts = Counter(ids)
        assert len(counts) == N  # every notice arrived
        repeated = sum(c - 1 for c in counts.values())
        assert repeated <= kills, counts.most_common(3)
        rt = Runtime.start(settings)
        try:
            from dmp.jobs.operator import Operator

            states = Operator(rt).notification_counts()
        finally:
            rt.close()
        assert states == {"sent": N}


@pytest.mark.postgres
def test_concurrent_workers_deliver_each_notice_once(settings: Settings) -> None:
    with SmtpServer() as smtp:
        rt = _population(settings, smtp, 80, 300)
        try:
            barrier = threading.Barrier(4)
            reports: list[Any] = []

            def run(i: int) -> None:
                barrier.wait()
                reports.append(notify.deliver_due(rt, f"worker-{i}"))

            threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sum(r.sent for r in reports) == 80
            assert sum(1 for r in reports if r.sent) >= 2  # the work was shared
            counts = Counter(smtp.inbox.ids())
            assert len(counts) == 80 and set(counts.values()) == {1}
        finally:
            rt.close()
