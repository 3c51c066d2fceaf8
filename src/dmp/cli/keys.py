"""Commands for the audit trail and the encryption keys."""

from __future__ import annotations

import sys

import click

from dmp.cli import cli_settings, friendly_errors, main, operator_session
from dmp.jobs import maintenance


@main.group()
def audit() -> None:
    """The audit trail."""


@audit.command("verify")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes that check ranges of chains at once (default: one per core; a trail "
    "under 200,000 events is checked in one).",
)
@friendly_errors
def audit_verify(workers: int | None) -> None:
    """Check every hash chain; exit 1 naming the first bad event."""
    with operator_session() as operator:
        report = operator.verify_audit(workers)
    if report.fault is not None:
        click.echo(f"audit trail BROKEN at {report.fault}", err=True)
        sys.exit(1)
    click.echo(f"audit trail intact: {report.events} events in {report.chains} chains")


@main.group()
def keys() -> None:
    """Encryption keys."""


@keys.command("check")
@friendly_errors
def keys_check() -> None:
    """Which key ids the database needs and whether the key ring holds them (exit 1 if not)."""
    report = maintenance.check_keys_offline(cli_settings())
    click.echo(f"key ring: {report.ring_path} ({'found' if report.ring_found else 'MISSING'})")
    for label, needed, missing in (
        ("key-encryption keys", report.keks_needed, report.keks_missing),
        ("audit keys", report.audit_keys_needed, report.audit_keys_missing),
    ):
        listed = ", ".join(f"{k}{' (missing)' if k in missing else ''}" for k in sorted(needed))
        click.echo(f"{label} the database needs: {listed or 'none'}")
    if report.sealed_by_ring is False:
        click.echo("the database was sealed by another key ring than this one", err=True)
    if not report.ok:
        click.echo("the key ring does not open this database: restore it from its backup", err=True)
        sys.exit(1)
    click.echo("the key ring holds every key the database needs")


@keys.command("rotate")
@friendly_errors
def keys_rotate() -> None:
    """Add a new key-encryption key and re-wrap every patient data key with it."""
    with operator_session() as operator:
        kek_id, count = operator.rotate_keys()
    click.echo(f"new key-encryption key {kek_id} is active; {count} data keys re-wrapped")
    click.echo("back up the key ring file now: old backups of it lack the new key", err=True)
