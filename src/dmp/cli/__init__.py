"""The ``dmp`` command."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import click

from dmp.config import Settings, load_settings
from dmp.domain.ins import OID_NIR
from dmp.errors import DmpError
from dmp.jobs.operator import Operator
from dmp.logs import configure

F = TypeVar("F", bound=Callable[..., Any])


def cli_settings() -> Settings:
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
def operator_session(settings: Settings | None = None) -> Iterator[Operator]:
    """The narrow object every command works through (never the runtime)."""
    settings = settings or cli_settings()
    configure(settings.log_level if settings.log_level != "INFO" else "WARNING")
    with Operator.start(settings) as operator:
        yield operator


def ins_option(fn: F) -> F:
    fn = click.option(
        "--oid", default=OID_NIR, show_default=True, help="INS assigning authority OID."
    )(fn)
    return click.option(
        "--ins", "ins_value", required=True, help="The patient's INS (15 characters)."
    )(fn)


class DmpGroup(click.Group):
    """Usage errors print like every other error (README): ``error: …`` on stderr, a hint
    to ``--help``, exit status 2; never a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            where = exc.ctx.command_path if exc.ctx else "dmp"
            click.echo(f"(see `{where} --help`)", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=DmpGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dmp")
def main() -> None:
    """dmp: the shared medical record (Dossier Médical Partagé) service.

    Settings come from DMP_* environment variables (see `dmp config show`).
    """


# The commands, one module per area, register themselves on ``main``.
from dmp.cli import (  # noqa: E402, F401
    backups,
    clients,
    jobs,
    keys,
    portal,
    provision,
    records,
    reports,
    service,
)
