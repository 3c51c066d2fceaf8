"""Settings, read from ``DMP_*`` environment variables, with embedded defaults.

The defaults run the service with nothing installed: SQLite in ``./dmp-data``, a key ring created
there on first start. Production sets ``DMP_DATABASE_URL`` to PostgreSQL and ``DMP_KEYRING`` to a
path on protected storage.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dmp.domain.thresholds import Thresholds
from dmp.errors import ConfigurationError

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default=Path("dmp-data"), metadata={"env": "DMP_DATA_DIR"})
    database_url: str = field(default="", metadata={"env": "DMP_DATABASE_URL", "secret": True})
    keyring_path: Path | None = field(default=None, metadata={"env": "DMP_KEYRING"})
    host: str = field(default="127.0.0.1", metadata={"env": "DMP_HOST"})
    port: int = field(default=8000, metadata={"env": "DMP_PORT"})
    log_level: str = field(default="INFO", metadata={"env": "DMP_LOG_LEVEL"})
    # Test/demo mode accepts the INS test and demo OIDs (1.2.250.1.213.1.4.10 / .11).
    test_mode: bool = field(default=False, metadata={"env": "DMP_TEST_MODE"})
    # Lifetime of the bearer tokens the server issues, in seconds.
    token_ttl_seconds: int = field(default=300, metadata={"env": "DMP_TOKEN_TTL"})
    # Emergency access (bris de glace) window for one professional and patient, in days (AC-8).
    emergency_access_days: int = field(default=5, metadata={"env": "DMP_EMERGENCY_DAYS"})
    # Default search window over service dates, in days (AC-15: two years).
    search_window_days: int = field(default=730, metadata={"env": "DMP_SEARCH_WINDOW_DAYS"})
    # Adoption milestones per département: listed thresholds, then every N ("+N").
    milestones: str = field(
        default="10000,50000,100000,+100000", metadata={"env": "DMP_MILESTONES"}
    )
    # Replacement habilitation matrix (JSON); the packaged default when unset (AC-5).
    matrix_file: Path | None = field(default=None, metadata={"env": "DMP_MATRIX_FILE"})

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'dmp.sqlite3').resolve()}"

    @property
    def effective_keyring_path(self) -> Path:
        return self.keyring_path or self.data_dir / "keyring.json"

    def describe(self) -> dict[str, str]:
        """The effective settings, with any password in the database URL hidden."""
        return {
            "data_dir": str(self.data_dir.resolve()),
            "database_url": redact_url(self.effective_database_url),
            "keyring_path": str(self.effective_keyring_path.resolve()),
            "host": self.host,
            "port": str(self.port),
            "log_level": self.log_level,
            "test_mode": str(self.test_mode).lower(),
            "token_ttl_seconds": str(self.token_ttl_seconds),
            "emergency_access_days": str(self.emergency_access_days),
            "search_window_days": str(self.search_window_days),
            "matrix_file": str(self.matrix_file) if self.matrix_file else "(packaged default)",
            "milestones": self.milestones,
        }


def redact_url(url: str) -> str:
    """Hide the password of a URL such as ``postgresql+psycopg://user:secret@host/db``
    (SQLAlchemy's own rendering)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(not a database URL)"
    if "@" in (parsed.host or ""):
        # An unencoded "@" in the password (it must be written %40): show none of it.
        return f"{parsed.drivername}://***"
    return parsed.render_as_string(hide_password=True)


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"{name} must be true or false, not {raw!r}")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment; a malformed value is a clear error."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        name = f.metadata["env"]
        if name not in env:
            continue
        raw = env[name]
        if f.name in ("data_dir",):
            values[f.name] = Path(raw)
        elif f.name in ("keyring_path", "matrix_file"):
            values[f.name] = Path(raw) if raw else None
        elif f.name in ("port", "token_ttl_seconds", "emergency_access_days", "search_window_days"):
            try:
                number = int(raw)
            except ValueError:
                raise ConfigurationError(f"{name} must be a whole number, not {raw!r}") from None
            if number <= 0 or (f.name == "port" and number > 65535):
                raise ConfigurationError(f"{name} is out of range: {number}")
            values[f.name] = number
        elif f.name == "test_mode":
            values[f.name] = _parse_bool(name, raw)
        elif f.name == "log_level":
            level = raw.strip().upper()
            if level not in _LOG_LEVELS:
                raise ConfigurationError(f"{name} must be one of {', '.join(_LOG_LEVELS)}")
            values[f.name] = level
        else:
            values[f.name] = raw
    url = str(values.get("database_url", ""))
    if url and not url.startswith(("sqlite", "postgresql")):
        raise ConfigurationError(
            "DMP_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL"
        )
    settings = Settings(**values)  # type: ignore[arg-type]
    Thresholds.parse(settings.milestones)  # a bad list is an error at start, not at a milestone
    return settings


ENVIRONMENT_VARIABLES: tuple[tuple[str, str, str], ...] = tuple(
    (f.metadata["env"], f.name, repr(f.default)) for f in fields(Settings)
)
