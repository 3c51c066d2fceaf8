"""Commands for API clients and bearer tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from dmp.cli import friendly_errors, main, operator_session
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import OID_NIR, Ins


@main.group()
def client() -> None:
    """API clients: the software of hospitals, labs and pharmacies (SMART Backend Services)."""


@client.command("add")
@click.option("--name", required=True, help="The software's name.")
@click.option("--structure", required=True, help="idNatStruct of the structure it acts for.")
@click.option(
    "--jwks",
    "jwks_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file with its public key(s): a JWK or a JWK Set (SMART Backend Services).",
)
@click.option(
    "--certificate",
    "cert_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM file with the structure's certificate, which signs its VIHF assertions (XDS.b); "
    "its key also signs SMART client assertions.",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="A SMART scope it may be granted (repeatable; default user/*.cruds).",
)
@friendly_errors
def client_add(
    name: str,
    structure: str,
    jwks_file: Path | None,
    cert_file: Path | None,
    scopes: tuple[str, ...],
) -> None:
    """Register a client with its public keys or its certificate; prints the client id."""
    if jwks_file is None and cert_file is None:
        raise click.UsageError("give --jwks, --certificate, or both")
    jwks: dict[str, Any] = {"keys": []}
    if jwks_file is not None:
        try:
            doc = orjson.loads(jwks_file.read_bytes())
        except orjson.JSONDecodeError:
            raise click.UsageError("the key file is not JSON") from None
        jwks = doc if isinstance(doc, dict) and "keys" in doc else {"keys": [doc]}
    if cert_file is not None:
        from dmp.auth.vihf import certificate_jwk

        jwks = {"keys": [*jwks.get("keys", []), certificate_jwk(cert_file.read_bytes())]}
    with operator_session() as operator:
        client_id = operator.register_client(
            name=name, structure_id=structure, jwks=jwks, scopes=frozenset(scopes) or None
        )
    click.echo(client_id)


@main.group()
def app() -> None:
    """The catalogue of apps a holder may allow to read their record (SMART App Launch)."""


@app.command("add")
@click.option("--name", required=True, help="The app's name, as the consent page shows it.")
@click.option("--publisher", required=True, help="Who publishes it.")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    required=True,
    help="An exact redirect address (https://, http:// on loopback, or a private scheme; "
    "repeatable).",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="A patient/ scope it may ask, read or search only, or offline_access (repeatable; "
    "default patient/*.rs offline_access launch/patient).",
)
@friendly_errors
def app_add(
    name: str, publisher: str, redirect_uris: tuple[str, ...], scopes: tuple[str, ...]
) -> None:
    """Add an app to the catalogue; prints its client id (a public client: no secret)."""
    wanted = " ".join(scopes) or "patient/*.rs offline_access launch/patient"
    with operator_session() as operator:
        client_id = operator.register_app(
            name=name, publisher=publisher, redirect_uris=list(redirect_uris), scopes=wanted
        )
    click.echo(client_id)


@app.command("list")
@friendly_errors
def app_list() -> None:
    """The catalogue, one app a line (JSON)."""
    with operator_session() as operator:
        for found in operator.apps():
            click.echo(orjson.dumps(found).decode())


@app.command("withdraw")
@click.option("--client-id", required=True, help="The app's client id.")
@friendly_errors
def app_withdraw(client_id: str) -> None:
    """Take an app out of the catalogue: no new authorization, no new token."""
    with operator_session() as operator:
        if not operator.withdraw_app(client_id):
            raise click.ClickException("no app of the catalogue has this client id")
    click.echo(f"withdrawn: {client_id}")


@main.group()
def token() -> None:
    """Issue bearer tokens (operator and integration testing)."""


@token.command("issue")
@click.option("--professional", "id_nat_ps", help="idNatPS of a professional in the directory.")
@click.option("--structure", help="Structure the professional or desk agent acts for.")
@click.option("--patient", "patient_ins", help="INS of a patient acting on their own record.")
@click.option("--oid", default=OID_NIR, show_default=True)
@click.option("--desk-agent", help="Identifier of a registration-desk agent (needs --structure).")
@click.option("--ttl", type=click.IntRange(30, 86400), default=None, help="Lifetime in seconds.")
@click.option(
    "--purpose",
    type=click.Choice([p.value for p in PurposeOfUse]),
    default=PurposeOfUse.NORMAL.value,
    show_default=True,
    help="Access mode of a professional's token (bris_de_glace: emergency, centre_15).",
)
@click.option("--justification", help="Why emergency access is needed (bris_de_glace).")
@click.option(
    "--for-patient", "for_patient", help="INS the token is bound to (required for bris_de_glace)."
)
@friendly_errors
def token_issue(
    id_nat_ps: str | None,
    structure: str | None,
    patient_ins: str | None,
    oid: str,
    desk_agent: str | None,
    ttl: int | None,
    purpose: str,
    justification: str | None,
    for_patient: str | None,
) -> None:
    """Print a signed bearer token for one actor."""
    chosen = [x for x in (id_nat_ps, patient_ins, desk_agent) if x]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --professional, --patient, --desk-agent")
    if desk_agent and not structure:
        raise click.UsageError("--desk-agent needs --structure")
    with operator_session() as operator:
        click.echo(
            operator.issue_token(
                professional=id_nat_ps,
                structure=structure,
                patient=Ins(oid, patient_ins) if patient_ins else None,
                desk_agent=desk_agent,
                ttl=ttl,
                purpose=PurposeOfUse(purpose),
                justification=justification,
                bound_to=Ins(oid, for_patient) if for_patient else None,
            )
        )
