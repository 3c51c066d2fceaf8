"""`dmp backup` and `dmp restore`: the database only; the key ring is backed up apart."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dmp.cli import cli_settings, friendly_errors, main
from dmp.jobs import backup as backups
from dmp.logs import configure


@main.command("backup")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@friendly_errors
def backup_command(out: Path) -> None:
    """Copy the database to OUT while the service runs (SQLite online backup, pg_dump)."""
    settings = cli_settings()
    configure("WARNING")
    report = backups.backup(settings, out)
    click.echo(
        f"backup of the {report.dialect} database (revision {report.revision}) written to "
        f"{report.path} ({report.size} bytes), its manifest beside it"
    )
    click.echo(
        f"the key ring is not in it: back up {settings.effective_keyring_path} apart, and keep "
        "the two copies in different places",
        err=True,
    )


@main.command("restore")
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False))
@friendly_errors
def restore_command(source: Path) -> None:
    """Load the backup SOURCE into an empty database, then check the key ring and every audit
    chain (exit 1 if either fails)."""
    settings = cli_settings()
    configure("WARNING")
    report = backups.restore(settings, source)
    click.echo(
        f"{source} restored into the {report.dialect} database; every table as its manifest "
        + ("says (MAC checked with the key ring)" if report.authenticated else "says")
    )
    if not report.keys.ok:
        missing = sorted(report.keys.keks_missing | report.keys.audit_keys_missing)
        click.echo(
            f"the key ring at {report.keys.ring_path} does not open the restored data "
            f"(missing: {', '.join(missing) or 'the ring file'}): put back the key ring backed "
            "up with this database, then run `dmp audit verify`",
            err=True,
        )
        sys.exit(1)
    assert report.audit is not None
    if not report.audit.ok:
        click.echo(f"audit trail BROKEN at {report.audit.fault}", err=True)
        sys.exit(1)
    click.echo(
        f"database at revision {report.revision}; key ring holds every key; audit trail "
        f"intact: {report.audit.events} events in {report.audit.chains} chains"
    )
