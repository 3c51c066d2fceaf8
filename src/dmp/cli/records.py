"""Operator commands on records and the directory: open, close, show, representatives, import."""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import click

from dmp.access.views import Demographics
from dmp.cli import friendly_errors, ins_option, main, operator_session
from dmp.domain.codes import IDENTITY_DOCUMENTS, TRUSTED_THIRD_PARTY, CreationChannel
from dmp.domain.ins import Ins
from dmp.identity.actor import system_actor


@main.group()
def professional() -> None:
    """The directory of health professionals."""


@professional.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@friendly_errors
def professional_import(file: Path) -> None:
    """Load a directory extract (PS_LibreAcces_Personne_activite format); idempotent."""
    with (
        operator_session() as operator,
        click.progressbar(length=file.stat().st_size, label="importing", file=sys.stderr) as bar,
    ):
        summary = operator.import_professionals(file, progress=bar.update)
    click.echo(
        f"{summary.loaded} rows loaded ({summary.professionals} professionals, "
        f"{summary.structures} structures), {summary.rejected} rejected"
    )
    for reason, n in summary.reasons.most_common():
        click.echo(f"  rejected {n}: {reason}")
    for line_no, reason in summary.examples[:5]:
        click.echo(f"  e.g. line {line_no}: {reason}")


@main.group()
def record() -> None:
    """Open, close and show records (operator actions, audited)."""


@record.command("open")
@ins_option
@click.option("--family-name", required=True, help="Birth family name.")
@click.option("--given-names", required=True)
@click.option("--sex", type=click.Choice(["M", "F", "U"]), required=True)
@click.option("--birth-date", type=click.DateTime(formats=["%Y-%m-%d"]), required=True)
@click.option("--commune", required=True, help="INSEE code of the residence commune.")
@click.option(
    "--channel",
    type=click.Choice([c.value for c in CreationChannel]),
    default=CreationChannel.INSURER_DESK.value,
    show_default=True,
)
@click.option("--structure", help="idNatStruct of the desk opening the record.")
@click.option(
    "--identity-document",
    type=click.Choice(sorted(k for k in IDENTITY_DOCUMENTS if k != TRUSTED_THIRD_PARTY)),
    help="The identity document checked (CN, PA, CS, CE, IE qualify the identity; with "
    "--structure).",
)
@click.option(
    "--patient-consent",
    is_flag=True,
    required=True,
    help="Confirm the patient was informed and agrees.",
)
@friendly_errors
def record_open(
    ins_value: str,
    oid: str,
    family_name: str,
    given_names: str,
    sex: str,
    birth_date: Any,
    commune: str,
    channel: str,
    structure: str | None,
    identity_document: str | None,
    patient_consent: bool,
) -> None:
    """Open a record for a patient (the identity must agree with what the INS encodes)."""
    with operator_session() as operator:
        actor = (
            operator.desk_actor(f"operator:{getpass.getuser()}", structure)
            if structure
            else system_actor("cli-record-open")
        )
        view = operator.gate_as(actor).open_record(
            Ins(oid, ins_value),
            Demographics(
                family_name,
                given_names,
                sex,
                date.fromisoformat(birth_date.date().isoformat()),
                commune.upper(),
            ),
            channel=CreationChannel(channel),
            patient_consent=patient_consent,
            identity_document=identity_document,
        )
    click.echo(
        f"record opened ({view.status}), département {view.departement}, "
        f"identity {view.identity_status}"
    )


@record.command("close")
@ins_option
@click.option("--reason", required=True, help="Why the record is closed.")
@friendly_errors
def record_close(ins_value: str, oid: str, reason: str) -> None:
    """Close a record (on the holder's request)."""
    with operator_session() as operator:
        operator.gate("cli-record-close").close_record(Ins(oid, ins_value), reason)
    click.echo("record closed")


@record.command("show")
@ins_option
@friendly_errors
def record_show(ins_value: str, oid: str) -> None:
    """Show a record's status (the access is audited)."""
    with operator_session() as operator:
        access = operator.gate("cli-record-show")
        view = access.read_record(Ins(oid, ins_value))
        docs = access.search_documents(Ins(oid, ins_value), statuses=None, limit=1)
    d = view.demographics
    click.echo(
        f"patient     {d.given_names} {d.used_name or d.birth_family_name} "
        f"({d.sex}, {d.birth_date})"
    )
    click.echo(
        f"status      {view.status}"
        + (f" since {view.closed_at:%Y-%m-%d}: {view.closure_reason}" if view.closed_at else "")
    )
    click.echo(f"opened      {view.opened_at:%Y-%m-%d} via {view.channel}")
    click.echo(f"département {view.departement}")
    click.echo(f"documents   {docs.total}")


@record.command("representative")
@ins_option
@click.option("--id", "rep_id", required=True, help="Identifier of the legal representative.")
@click.option("--name", required=True, help="Their name, as shown to the holder.")
@click.option(
    "--relationship", default="representant_legal", show_default=True, help="Parent, guardian..."
)
@click.option("--minor", is_flag=True, help="The holder is a minor.")
@friendly_errors
def record_representative(
    ins_value: str, oid: str, rep_id: str, name: str, relationship: str, minor: bool
) -> None:
    """Register a legal representative (on proof of parental authority or guardianship)."""
    with operator_session() as operator:
        operator.gate("cli-representative").add_representative(
            Ins(oid, ins_value), rep_id, name, relationship, minor=minor
        )
    click.echo("representative registered")


@record.command("reopen")
@ins_option
@friendly_errors
def record_reopen(ins_value: str, oid: str) -> None:
    """Reopen a closed record (not one closed by the holder's death)."""
    with operator_session() as operator:
        operator.gate("cli-record-reopen").reopen_record(Ins(oid, ins_value))
    click.echo("record reopened")


@record.command("death")
@ins_option
@click.option("--date", "died_on", required=True, help="Date of death (YYYY-MM-DD).")
@friendly_errors
def record_death(ins_value: str, oid: str, died_on: str) -> None:
    """Record the holder's death (death register): the record closes for good."""
    try:
        day = datetime.combine(date.fromisoformat(died_on), time(12), UTC)
    except ValueError:
        raise click.UsageError("--date must be YYYY-MM-DD") from None
    with operator_session() as operator:
        operator.gate("death-register").declare_death(Ins(oid, ins_value), day)
    click.echo("record closed (death)")


@record.command("delete")
@ins_option
@friendly_errors
def record_delete(ins_value: str, oid: str) -> None:
    """The holder's explicit deletion request, received by the operator: the record closes and
    is purged within DMP_DELETION_DAYS (by `dmp worker` or `dmp jobs run`)."""
    with operator_session() as operator:
        due = operator.gate("cli-deletion-request").request_deletion(Ins(oid, ins_value))
    click.echo(f"record closed; purge due by {due.date().isoformat()}")
