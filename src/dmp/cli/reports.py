"""Adoption statistics and the demonstration data."""

from __future__ import annotations

import sys

import click
import orjson

from dmp.cli import cli_settings, friendly_errors, main, operator_session


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
    from dmp.stats.render import report_csv, report_json, report_table

    with operator_session() as operator:
        if rebuild:
            operator.rebuild_counters()
            click.echo("counters rebuilt from the records", err=True)
        if verify:
            problems = operator.verify_counters()
            for p in problems:
                click.echo(f"counters INCONSISTENT: {p}", err=True)
            if problems:
                sys.exit(1)
            click.echo("counters match a full recount", err=True)
        report = operator.adoption(list(departements) or None, start, end)
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
    settings = cli_settings().model_copy(update={"test_mode": True})
    with operator_session(settings) as operator:
        summary = operator.load_demo()
    for line in summary:
        click.echo(line)
    click.echo(
        "demo patients use the INS demonstration OID: run the server with DMP_TEST_MODE=true "
        "to reach them"
    )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the report as a French page to this file.",
)
@friendly_errors
def snooping(as_json: bool, html_path: str | None) -> None:
    """Professionals whose reading pattern looks like snooping (thresholds: DMP_SNOOP_*).

    Over DMP_SNOOP_DAYS days: records read on a consent the professional declared
    themselves, records where they were refused, emergency accesses above their profession's
    mean. The report is itself in the audit trail."""
    import dataclasses
    from pathlib import Path

    with operator_session() as operator:
        patterns, acted, page = operator.snooping(html=html_path is not None)
    if html_path and page is not None:
        Path(html_path).write_text(page, encoding="utf-8")
        click.echo(f"report written to {html_path}", err=True)
    if as_json:
        body = {"professionals_acting": acted, "flagged": [dataclasses.asdict(p) for p in patterns]}
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"{acted} professionals acted; {len(patterns)} above a threshold")
    for p in patterns:
        click.echo(
            f"{p.id_nat_ps}  {p.name}  read {p.read}, self-declared {p.self_declared}, "
            f"refused {p.refused}, emergency {p.emergency}: " + "; ".join(p.reasons)
        )
