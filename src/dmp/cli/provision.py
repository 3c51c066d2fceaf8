"""Opt-out provisioning: import the insurer's beneficiaries, record objections."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import click

from dmp.cli import friendly_errors, ins_option, main, operator_session
from dmp.domain.ins import Ins


@main.group(invoke_without_command=False)
def provision() -> None:
    """Records opened unless the person objects within six weeks (DMP_OBJECTION_DAYS)."""


@provision.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@friendly_errors
def provision_import(file: Path) -> None:
    """Import beneficiaries (CSV: ins,nom,prenoms,sexe,naissance,commune,informe_le[,oid]).
    Valid lines are imported; each bad line is reported; exit status 1 if any was bad."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise click.UsageError("the file is not UTF-8 text") from None
    with operator_session() as operator:
        report = operator.provisioning().import_csv(text)
    click.echo(
        f"read {report.read} lines: {report.added} added, {report.already} already listed, "
        f"{len(report.errors)} refused"
    )
    for error in report.errors[:50]:
        click.echo(f"  {error}", err=True)
    if report.errors:
        sys.exit(1)


@provision.command("object")
@ins_option
@click.option("--birth-date", required=True, help="The person's date of birth (YYYY-MM-DD).")
@friendly_errors
def provision_object(ins_value: str, oid: str, birth_date: str) -> None:
    """Record a person's objection (received by post or at a desk)."""
    try:
        born = date.fromisoformat(birth_date)
    except ValueError:
        raise click.UsageError("--birth-date must be YYYY-MM-DD") from None
    with operator_session() as operator:
        answer = operator.provisioning().object(Ins(oid, ins_value), born, "operator")
    click.echo(answer)


@provision.command("status")
@friendly_errors
def provision_status() -> None:
    """How many people are pending, objected, opened."""
    with operator_session() as operator:
        counts = operator.provisioning().counts()
    for state in ("pending", "objected", "opened"):
        click.echo(f"{state}: {counts.get(state, 0)}")
