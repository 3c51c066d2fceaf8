"""Portal accounts: invite a professional, a registration-desk agent or a legal representative
(the account is activated with the one-time code printed here)."""

from __future__ import annotations

import click

from dmp.cli import friendly_errors, main, operator_session
from dmp.domain.ins import OID_NIR, Ins
from dmp.identity.actor import ActorKind


@main.group()
def portal() -> None:
    """Web portal accounts (patients get theirs from the activation letter a desk prints)."""


@portal.command("invite")
@click.option("--professional", "id_nat_ps", help="idNatPS of a professional in the directory.")
@click.option("--desk-agent", "agent", help="Identifier of a registration-desk agent.")
@click.option("--representative", "representative", help="Identifier of a legal representative.")
@click.option("--structure", help="Structure the professional or desk agent works for.")
@click.option("--ins", "ins_value", help="The record a representative acts on (INS).")
@click.option("--oid", default=OID_NIR, show_default=True, help="INS assigning authority OID.")
@friendly_errors
def invite(
    id_nat_ps: str | None,
    agent: str | None,
    representative: str | None,
    structure: str | None,
    ins_value: str | None,
    oid: str,
) -> None:
    """Create (or reset) a portal account and print its one-time activation code."""
    chosen = [v for v in (id_nat_ps, agent, representative) if v]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --professional, --desk-agent, --representative")
    if representative and not ins_value:
        raise click.UsageError("a representative's account needs the record's --ins")
    if agent and not structure:
        raise click.UsageError("a desk agent's account needs --structure")
    kind = (
        ActorKind.PROFESSIONAL
        if id_nat_ps
        else ActorKind.DESK_AGENT
        if agent
        else ActorKind.REPRESENTATIVE
    )
    with operator_session() as operator:
        code, expires = operator.invite(
            kind=kind,
            login=chosen[0],
            structure_id=structure,
            ins=Ins(oid, ins_value) if ins_value else None,
        )
    click.echo(f"login: {chosen[0]}")
    click.echo(f"activation code: {code} (works once, until {expires.date().isoformat()})")
    click.echo("activate at /portail/activation")
