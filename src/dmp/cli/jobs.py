"""The worker, the timed jobs and the notification outbox (operators)."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import click

from dmp.cli import friendly_errors, main, operator_session


@main.command("worker")
@click.option(
    "--interval", default=5.0, show_default=True, help="Seconds between two rounds of the rules."
)
@friendly_errors
def worker(interval: float) -> None:
    """Deliver notifications and run the timed rules until stopped (SIGTERM or Ctrl-C).

    Several workers may run on one PostgreSQL database (each rule and each notice is leased to
    one); on SQLite run one."""
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with operator_session() as operator:
        click.echo("worker started", err=True)
        operator.run_worker(stop, interval)
    click.echo("worker stopped", err=True)


@main.group()
def jobs() -> None:
    """Timed jobs."""


@jobs.command("run")
@friendly_errors
def jobs_run() -> None:
    """Every due timed rule once (for cron). Exit status 1 if a notice failed."""
    with operator_session() as operator:
        report = operator.run_jobs()
    n = report.notices
    for name in report.ran:
        click.echo(f"ran: {name}")
    for name in report.held:
        click.echo(f"left to another worker: {name}")
    for line in report.lines:
        click.echo(line)
    click.echo(
        f"notifications: {n.sent} sent, {n.skipped} skipped, {n.postponed} postponed, "
        f"{n.failed} failed ({n.dead} now dead)"
    )
    for error in sorted(set(n.errors))[:10]:
        click.echo(f"  error: {error}", err=True)
    if n.failed:
        sys.exit(1)


@main.group()
def notifications() -> None:
    """The notification outbox."""


@notifications.command("list")
@click.option("--failed", is_flag=True, help="Only those that failed too often (dead letters).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@friendly_errors
def notifications_list(failed: bool, limit: int) -> None:
    """Notices, newest due first: id, kind, recipient, due, status, attempts, last error."""
    with operator_session() as operator:
        rows = operator.notifications(failed=failed, limit=limit)
        counts = operator.notification_counts()
    click.echo("counts: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    for n in rows:
        error = f"  {n.last_error}" if n.last_error else ""
        click.echo(
            f"{n.id}  {n.kind:<30} {n.recipient_kind:<16} {n.due_at.isoformat(timespec='minutes')}"
            f"  {n.status:<8} attempts {n.attempts}{error}"
        )


@notifications.command("retry")
@click.argument("notice_id")
@friendly_errors
def notifications_retry(notice_id: str) -> None:
    """Put a dead (or skipped) notice back in the queue, due now."""
    with operator_session() as operator:
        done = operator.retry_notification(notice_id.strip())
    if not done:
        click.echo(f"error: no dead or skipped notice {notice_id}", err=True)
        sys.exit(2)
    click.echo(f"notice {notice_id} queued again")
