"""The ``dmp`` command."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from dmp.access import admin
from dmp.access.runtime import Runtime
from dmp.access.views import Demographics
from dmp.config import ENVIRONMENT_VARIABLES, Settings, load_settings
from dmp.domain.codes import CreationChannel, PurposeOfUse
from dmp.domain.ins import OID_NIR, Ins
from dmp.errors import DmpError
from dmp.identity.actor import system_actor
from dmp.logs import configure

F = TypeVar("F", bound=Callable[..., Any])


def _settings() -> Settings:
    return load_settings()


def friendly_errors(fn: F) -> F:
    """Turn a DmpError into a readable message and exit status 2 (no traceback)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DmpError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@contextmanager
def _runtime() -> Iterator[Runtime]:
    settings = _settings()
    configure(settings.log_level if settings.log_level != "INFO" else "WARNING")
    rt = Runtime.start(settings)
    try:
        yield rt
    finally:
        rt.close()


def _ins_option(fn: F) -> F:
    fn = click.option(
        "--oid", default=OID_NIR, show_default=True, help="INS assigning authority OID."
    )(fn)
    return click.option(
        "--ins", "ins_value", required=True, help="The patient's INS (15 characters)."
    )(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dmp")
def main() -> None:
    """dmp: the shared medical record (Dossier Médical Partagé) service.

    Settings come from DMP_* environment variables (see `dmp config show`).
    """


@main.command()
@click.option("--host", default=None, help="Listen address (default: DMP_HOST).")
@click.option("--port", type=int, default=None, help="Listen port (default: DMP_PORT).")
@click.option(
    "--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes."
)
@friendly_errors
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the HTTP service; applies pending migrations first (under a lock)."""
    import uvicorn

    settings = _settings()
    configure(settings.log_level)
    Runtime.start(settings).close()  # create the key ring and migrate once, before workers
    uvicorn.run(
        "dmp.app:app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        access_log=False,
        log_config=None,
    )


@main.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@friendly_errors
def db_upgrade() -> None:
    """Apply pending migrations (safe to run while another process does the same)."""
    settings = _settings()
    revision = admin.upgrade_database(settings)
    click.echo(f"database at revision {revision}")


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly_errors
def config_show(as_json: bool) -> None:
    """Print the effective settings (passwords hidden, keys never printed)."""
    values = _settings().describe()
    if as_json:
        click.echo(orjson.dumps(values, option=orjson.OPT_INDENT_2).decode())
        return
    env_names = {name: env for env, name, _ in ENVIRONMENT_VARIABLES}
    for key, value in values.items():
        click.echo(f"{key:<18} {value:<60} ({env_names.get(key, '')})")


@main.group()
def audit() -> None:
    """The audit trail."""


@audit.command("verify")
@friendly_errors
def audit_verify() -> None:
    """Check every hash chain; exit 1 naming the first bad event."""
    with _runtime() as rt:
        report = admin.verify_audit(rt)
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
    report = admin.check_keys_offline(_settings())
    click.echo(f"key ring: {report.ring_path} ({'found' if report.ring_found else 'MISSING'})")
    for label, needed, missing in (
        ("key-encryption keys", report.keks_needed, report.keks_missing),
        ("audit keys", report.audit_keys_needed, report.audit_keys_missing),
    ):
        listed = ", ".join(f"{k}{' (missing)' if k in missing else ''}" for k in sorted(needed))
        click.echo(f"{label} the database needs: {listed or 'none'}")
    if not report.ok:
        click.echo("the key ring does not open this database: restore it from its backup", err=True)
        sys.exit(1)
    click.echo("the key ring holds every key the database needs")


@keys.command("rotate")
@friendly_errors
def keys_rotate() -> None:
    """Add a new key-encryption key and re-wrap every patient data key with it."""
    with _runtime() as rt:
        kek_id, count = admin.rotate_keys(rt)
    click.echo(f"new key-encryption key {kek_id} is active; {count} data keys re-wrapped")
    click.echo("back up the key ring file now: old backups of it lack the new key", err=True)


@main.group()
def professional() -> None:
    """The directory of health professionals."""


@professional.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@friendly_errors
def professional_import(file: Path) -> None:
    """Load a directory extract (PS_LibreAcces_Personne_activite format); idempotent."""
    with (
        _runtime() as rt,
        click.progressbar(length=file.stat().st_size, label="importing", file=sys.stderr) as bar,
    ):
        summary = admin.import_professionals(rt, file, progress=bar.update)
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
@_ins_option
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
    patient_consent: bool,
) -> None:
    """Open a record for a patient."""
    with _runtime() as rt:
        actor = (
            admin.desk_actor(f"operator:{getpass.getuser()}", structure)
            if structure
            else system_actor("cli-record-open")
        )
        view = rt.access(actor).open_record(
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
        )
    click.echo(f"record opened ({view.status}), département {view.departement}")


@record.command("close")
@_ins_option
@click.option("--reason", required=True, help="Why the record is closed.")
@friendly_errors
def record_close(ins_value: str, oid: str, reason: str) -> None:
    """Close a record (on the holder's request)."""
    with _runtime() as rt:
        rt.access(system_actor("cli-record-close")).close_record(Ins(oid, ins_value), reason)
    click.echo("record closed")


@record.command("show")
@_ins_option
@friendly_errors
def record_show(ins_value: str, oid: str) -> None:
    """Show a record's status (the access is audited)."""
    with _runtime() as rt:
        access = rt.access(system_actor("cli-record-show"))
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
    required=True,
    help="JSON file with its public key(s): a JWK or a JWK Set.",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="A SMART scope it may be granted (repeatable; default user/*.cruds).",
)
@friendly_errors
def client_add(name: str, structure: str, jwks_file: Path, scopes: tuple[str, ...]) -> None:
    """Register a client with its public keys; prints the client id."""
    from dmp.access import smart

    try:
        doc = orjson.loads(jwks_file.read_bytes())
    except orjson.JSONDecodeError:
        raise click.UsageError("the key file is not JSON") from None
    jwks = doc if isinstance(doc, dict) and "keys" in doc else {"keys": [doc]}
    with _runtime() as rt:
        client_id = smart.register_client(
            rt, name=name, structure_id=structure, jwks=jwks, scopes=frozenset(scopes) or None
        )
    click.echo(client_id)


@record.command("representative")
@_ins_option
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
    with _runtime() as rt:
        rt.access(system_actor("cli-representative")).add_representative(
            Ins(oid, ins_value), rep_id, name, relationship, minor=minor
        )
    click.echo("representative registered")


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
    with _runtime() as rt:
        if id_nat_ps:
            actor = admin.professional_actor(rt, id_nat_ps, structure)
        elif patient_ins:
            actor = admin.patient_actor(rt, Ins(oid, patient_ins))
        else:
            if not structure:
                raise click.UsageError("--desk-agent needs --structure")
            actor = admin.desk_actor(str(desk_agent), structure)
        bound = Ins(oid, for_patient) if for_patient else None
        click.echo(
            admin.token_for(
                rt,
                actor,
                ttl,
                purpose=PurposeOfUse(purpose),
                justification=justification,
                patient=bound,
            )
        )


@main.command()
@click.option(
    "--departement", "departements", multiple=True, help="Only this département (repeatable)."
)
@click.option("--from", "start", help="First month, YYYY-MM.")
@click.option("--to", "end", help="Last month, YYYY-MM.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.option("--verify", is_flag=True, help="Check the counters against a full recount.")
@click.option("--rebuild", is_flag=True, help="Recompute the counters from the records.")
@friendly_errors
def stats(
    departements: tuple[str, ...],
    start: str | None,
    end: str | None,
    as_json: bool,
    as_csv: bool,
    verify: bool,
    rebuild: bool,
) -> None:
    """Adoption statistics per département (counts under 10 shown as "< 10")."""
    from dmp.access import statistics
    from dmp.stats.render import report_csv, report_json, report_table

    with _runtime() as rt:
        if rebuild:
            statistics.rebuild_counters(rt)
            click.echo("counters rebuilt from the records", err=True)
        if verify:
            problems = statistics.verify_counters(rt)
            for p in problems:
                click.echo(f"counters INCONSISTENT: {p}", err=True)
            if problems:
                sys.exit(1)
            click.echo("counters match a full recount", err=True)
        report = statistics.adoption(rt, list(departements) or None, start, end)
    if as_json:
        click.echo(orjson.dumps(report_json(report), option=orjson.OPT_INDENT_2).decode())
    elif as_csv:
        click.echo(report_csv(report), nl=False)
    else:
        click.echo(report_table(report))


@main.command()
@friendly_errors
def demo() -> None:
    """Load fictional demo data (Amboise, Indre-et-Loire): records, professionals, documents."""
    from dmp.access.demo import load_demo

    settings = _settings()
    configure("WARNING")
    import dataclasses

    rt = Runtime.start(dataclasses.replace(settings, test_mode=True))
    try:
        summary = load_demo(rt)
    finally:
        rt.close()
    for line in summary:
        click.echo(line)
    click.echo(
        "demo patients use the INS demonstration OID: run the server with DMP_TEST_MODE=true "
        "to reach them"
    )


if __name__ == "__main__":
    main()
