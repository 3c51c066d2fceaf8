"""The timed rules, run by ``dmp worker`` (continuously) or ``dmp jobs run`` (once, for cron).

Each rule takes a lease by name before it runs (``job_leases``), so several workers on one
database run each rule once at a time; on SQLite, run a single worker. The notices' own timed
rules (two weeks, one month, an emergency window's end, the daily digest) are due dates in the
outbox, delivered by the ``outbox`` rule.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from dmp.domain.ins import PatientKey
from dmp.identity.actor import system_actor
from dmp.jobs import notify
from dmp.records import lifecycle, outbox
from dmp.runtime import Runtime

log = logging.getLogger("dmp.jobs")

LEASE = timedelta(minutes=10)


@dataclass
class RunReport:
    ran: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # another worker held the lease
    notices: notify.Report = field(default_factory=notify.Report)
    lines: list[str] = field(default_factory=list)


def _outbox(rt: Runtime, worker: str, report: RunReport) -> None:
    report.notices.add(notify.deliver_due(rt, worker))


def _purge(rt: Runtime, worker: str, report: RunReport) -> None:
    """Records whose purge is due (closure + retention, or a deletion request's deadline)."""
    gate = rt.access(system_actor("purge"))
    purged = 0
    while True:
        with rt.engine.connect() as conn:
            due = lifecycle.due_purges(conn, rt.clock.now(), 100)
        if not due:
            break
        for patient_id in due:
            gate.purge_record(PatientKey(patient_id))
            purged += 1
    if purged:
        report.lines.append(f"purged: {purged} records")


def _provisioning(rt: Runtime, worker: str, report: RunReport) -> None:
    """Opt-out provisioning: open the records whose objection period ended."""
    from dmp.jobs.provisioning import Provisioning  # loaded by the runs that need it

    opened = Provisioning(rt).open_due()
    if opened:
        report.lines.append(f"opened after the objection period: {opened} records")


Rule = Callable[[Runtime, str, RunReport], None]
# Rules any number of workers run at once (each notice is leased on its own)...
SHARED: dict[str, Rule] = {"outbox": _outbox}
# ...and rules one worker runs at a time (a job lease by name; a worker that dies holds it
# until the lease ends).
EXCLUSIVE: dict[str, Rule] = {"purge": _purge, "provisioning": _provisioning}


def run_once(rt: Runtime, worker: str) -> RunReport:
    """Every rule once (an exclusive rule another worker is running is left to it)."""
    report = RunReport()
    for name, rule in SHARED.items():
        rule(rt, worker, report)
        report.ran.append(name)
    for name, rule in EXCLUSIVE.items():
        now = rt.clock.now()
        with rt.engine.begin() as conn:
            mine = outbox.take_lease(conn, name, worker=worker, now=now, until=now + LEASE)
        if not mine:
            report.held.append(name)
            continue
        try:
            rule(rt, worker, report)
            report.ran.append(name)
        finally:
            with rt.engine.begin() as conn:
                outbox.release_lease(conn, name, worker=worker, ran_at=rt.clock.now())
    return report


def run_forever(rt: Runtime, worker: str, stop: threading.Event, interval: float) -> None:
    """``dmp worker``: the rules again and again until stopped; an outage is logged and the
    next round retries."""
    while not stop.is_set():
        try:
            report = run_once(rt, worker)
            if report.notices.sent or report.notices.failed:
                log.info(
                    "round",
                    extra={
                        "sent": report.notices.sent,
                        "failed": report.notices.failed,
                        "dead": report.notices.dead,
                    },
                )
        except Exception:
            log.warning("a worker round failed", exc_info=True)
        stop.wait(interval)
