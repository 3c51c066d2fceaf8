"""Commands that run the service and manage its configuration and schema."""

from __future__ import annotations

import errno

import click
import orjson

from dmp.cli import cli_settings, friendly_errors, main
from dmp.config import ENVIRONMENT_VARIABLES
from dmp.jobs import maintenance
from dmp.jobs.operator import Operator
from dmp.logs import configure


@main.command()
@click.option("--host", default=None, help="Listen address (default: DMP_HOST).")
@click.option("--port", type=int, default=None, help="Listen port (default: DMP_PORT).")
@click.option(
    "--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes."
)
@friendly_errors
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the HTTP service; applies pending migrations first (under a lock)."""
    from dmp import server

    settings = cli_settings()
    configure(settings.log_level)
    with Operator.start(settings):  # create the key ring and migrate once, before workers
        pass
    host, port = host or settings.host, port or settings.port
    try:
        server.run("dmp.app:app_from_env", host=host, port=port, workers=workers)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"{host}:{port} is already in use (is another `dmp serve` running? stop it "
                "first, or choose another port with --port or DMP_PORT)"
            ) from None
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    except KeyboardInterrupt:
        pass  # Ctrl-C: the server stopped cleanly (uvicorn re-raises the signal after)
    click.echo("dmp: stopped", err=True)


@main.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@friendly_errors
def db_upgrade() -> None:
    """Apply pending migrations (safe to run while another process does the same)."""
    settings = cli_settings()
    revision = maintenance.upgrade_database(settings)
    click.echo(f"database at revision {revision}")


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly_errors
def config_show(as_json: bool) -> None:
    """Print the effective settings (passwords hidden, keys never printed)."""
    values = cli_settings().describe()
    if as_json:
        click.echo(orjson.dumps(values, option=orjson.OPT_INDENT_2).decode())
        return
    env_names = {name: env for env, name, _ in ENVIRONMENT_VARIABLES}
    for key, value in values.items():
        click.echo(f"{key:<18} {value:<60} ({env_names.get(key, '')})")
