"""Settings, read from ``DMP_*`` environment variables, with embedded defaults.

The defaults run the service with nothing installed: SQLite in ``./dmp-data``, a key ring created
there on first start. Production sets ``DMP_DATABASE_URL`` to PostgreSQL and ``DMP_KEYRING`` to a
path on protected storage.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dmp.domain.thresholds import Thresholds
from dmp.errors import ConfigurationError

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _env(name: str, field_name: str, default: Any) -> Any:
    """A field read from ``name`` in the environment (or given as ``field_name``)."""
    return Field(default=default, validation_alias=AliasChoices(field_name, name))


def _whole_number(value: Any, *, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ValueError(f"is out of range: {number}")
    return number


class Settings(BaseSettings):
    """The settings (pydantic-settings): ``DMP_<FIELD>`` environment variables, except where a
    field names its variable; constructor arguments win over the environment."""

    model_config = SettingsConfigDict(
        env_prefix="DMP_", frozen=True, extra="ignore", populate_by_name=True
    )

    data_dir: Path = Path("dmp-data")
    database_url: str = ""
    # The schema owner's URL (PostgreSQL): migrations run as it, and the service as the less
    # privileged role of DMP_DATABASE_URL (no DDL, append-only audit). Empty: one role for both.
    migration_database_url: str = ""
    keyring_path: Path | None = _env("DMP_KEYRING", "keyring_path", None)
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    # Test/demo mode accepts the INS test and demo OIDs (1.2.250.1.213.1.4.10 / .11).
    test_mode: bool = False
    # Lifetime of the bearer tokens the server issues, in seconds.
    token_ttl_seconds: int = _env("DMP_TOKEN_TTL", "token_ttl_seconds", 300)
    # The XDS repository's unique id (the RepositoryUniqueId of ITI-43 and of every
    # DocumentEntry): an OID of this deployment (the default, under 2.25, needs no registration).
    xds_repository_id: str = "2.25.211320093856447093914049125049829735941"
    # Emergency access (bris de glace) window for one professional and patient, in days (AC-8).
    emergency_access_days: int = _env("DMP_EMERGENCY_DAYS", "emergency_access_days", 5)
    # Database connections per server process, and as many request threads: a request that runs
    # never waits for a connection, and no more threads contend for the interpreter than can
    # use the database at once (docs/performance.md).
    db_pool_size: int = 4
    # Server-side prepared statements (psycopg prepares what a connection ran five times); off
    # behind PgBouncer in transaction pooling before 1.21 (Debian 12 ships 1.18).
    db_prepared_statements: bool = True
    # SQLite: a read's audit event is committed with other reads' in one write transaction
    # (group commit), the read itself in a snapshot that takes no write lock; off: each read
    # holds SQLite's write lock for its whole transaction (docs/performance.md, sixth pass).
    db_group_commit: bool = True
    # How often each server process folds pending document and access counts into the
    # statistics counters, in seconds (reads add what is pending: figures are always exact).
    stats_fold_seconds: int = 10
    # How long a rendered public statistics page (/stats, /stats/<code>) is served again before
    # it is drawn anew, in seconds; 0: drawn on every request. /api/stats, the CSV and
    # `dmp stats` are always exact.
    stats_page_seconds: int = 10
    # How long the code printed on an activation letter works, in days (it works once).
    activation_code_days: int = 30
    # How long a recovery code sent to the holder works, in hours (it works once).
    recovery_code_hours: int = 24
    # Portal sessions end after this many idle minutes (and after 12 hours in any case).
    portal_idle_minutes: int = 15
    # Addresses (or CIDR networks) of the reverse proxies whose X-Forwarded-For is believed;
    # comma-separated; empty: none (the peer's address is the client's).
    trusted_proxies: str = ""
    # On SIGTERM, `dmp serve` answers 503 on /health for this many seconds while it goes on
    # serving, so a load balancer takes the node out before it stops; 0: it stops at once.
    drain_seconds: float = Field(default=0.0, ge=0, le=300)
    # Postal letters (a recovery code for a holder with no e-mail or phone) are written here
    # for the mail room; empty: "courrier" in the data directory.
    letters_dir: Path | None = None
    # Notifications (dmp worker). E-mail through SMTP: no host, no e-mail. Security: plain,
    # starttls or tls (implicit TLS); the server certificate is verified (against DMP_SMTP_CA_FILE
    # when set, else the system's CAs).
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_security: str = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "DMP <ne-pas-repondre@dmp.invalid>"
    smtp_ca_file: Path | None = None
    # SMS through an HTTP gateway (a JSON POST {"to", "text"} with a bearer token): no URL, no SMS.
    sms_url: str = ""
    sms_token: str = ""
    # Where the messages send people (never a link to a document: the portal's login page).
    portal_url: str = "http://127.0.0.1:8000/portail"
    # A notice failing this many times goes to the dead-letter state; retries back off from
    # notify_retry_seconds, doubling each time.
    notify_max_attempts: int = 8
    notify_retry_seconds: int = 60
    # How long a worker holds the notices it claimed: a worker that died leaves them to another
    # after this.
    notify_lease_seconds: int = 120
    # The daily digest of new documents is sent from this hour (Paris time).
    digest_hour: int = 8
    # Alerts: an access between these hours (Paris time) is "at night".
    night_start_hour: int = 22
    night_end_hour: int = 6
    # The operator's snooping report (`dmp report snooping`): over this many days, a
    # professional is listed who read at least this many records on a consent they declared
    # themselves, or was refused on at least this many records, or opened at least the
    # minimum of emergency accesses and this many times the mean of their profession.
    snoop_days: int = 30
    snoop_self_declared: int = 30
    snoop_refused: int = 10
    snoop_emergency_min: int = 5
    snoop_emergency_factor: float = 3.0
    # Lifecycle: a closed record is kept this many years, then purged; an explicit deletion
    # request is honoured within this many days; a provisioned person may object for this many
    # days after being informed.
    retention_years: int = 10
    deletion_days: int = 90
    objection_days: int = 42
    # Adoption milestones per département: listed thresholds, then every N ("+N").
    milestones: str = "10000,50000,100000,+100000"
    # Document types accepted for deposit: empty = every type of JDV_J07-XdsTypeCode-CISIS;
    # else a comma-separated subset of it (for example the DMP's JDV_J66 list).
    document_types: str = ""
    # Replacement habilitation matrix (JSON); the packaged default when unset (AC-5).
    matrix_file: Path | None = None
    # Logging in through OpenID Connect providers (docs/portals.md, "Pro Santé Connect and
    # FranceConnect"): a provider is offered when its issuer is set. The redirect address to
    # register there is DMP_PORTAL_URL + /connexion/psc/retour (or /franceconnect/retour).
    # ``*_acr``: the authentication levels asked for and accepted (the ID token's acr).
    psc_issuer: str = ""
    psc_client_id: str = ""
    psc_client_secret: str = ""
    psc_scopes: str = "openid scope_all"
    psc_acr: str = "eidas1"
    fc_issuer: str = ""
    fc_client_id: str = ""
    fc_client_secret: str = ""
    fc_scopes: str = "openid given_name family_name birthdate gender birthplace birthcountry"
    fc_acr: str = "eidas1 eidas2 eidas3"

    @field_validator("smtp_security")
    @classmethod
    def _smtp_security(cls, value: str) -> str:
        if value not in ("plain", "starttls", "tls"):
            raise ValueError("must be plain, starttls or tls")
        return value

    @field_validator("digest_hour", "night_start_hour", "night_end_hour", mode="before")
    @classmethod
    def _hour(cls, value: Any) -> int:
        try:
            hour = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a whole number, not {value!r}") from None
        if not 0 <= hour <= 23:
            raise ValueError(f"is out of range: {hour}")
        return hour

    @field_validator("snoop_days", "snoop_self_declared", "snoop_refused", "snoop_emergency_min")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, not {value}")
        return value

    @field_validator("snoop_emergency_factor")
    @classmethod
    def _factor(cls, value: float) -> float:
        if not 1.0 <= value <= 100.0:
            raise ValueError(f"must be between 1 and 100, not {value}")
        return value

    @field_validator("psc_issuer", "fc_issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        from urllib.parse import urlsplit

        value = value.strip().rstrip("/")
        if not value:
            return value
        parts = urlsplit(value)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        # An identity provider is reached over TLS; plain HTTP only on this machine (tests).
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError("must be an https:// URL (http:// only on loopback)")
        if parts.query or parts.fragment:
            raise ValueError("an issuer has no query or fragment")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        import ipaddress

        for part in value.split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"{part.strip()!r} is not an address or network") from None
        return value

    @property
    def effective_letters_dir(self) -> Path:
        return self.letters_dir or self.data_dir / "courrier"

    @field_validator("keyring_path", "matrix_file", "smtp_ca_file", "letters_dir", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator(
        "port",
        "token_ttl_seconds",
        "emergency_access_days",
        "db_pool_size",
        "stats_fold_seconds",
        "activation_code_days",
        "recovery_code_hours",
        "portal_idle_minutes",
        "smtp_port",
        "notify_max_attempts",
        "notify_retry_seconds",
        "notify_lease_seconds",
        "retention_years",
        "deletion_days",
        "objection_days",
        mode="before",
    )
    @classmethod
    def _positive_whole_number(cls, value: Any) -> int:
        return _whole_number(value, minimum=1)

    @field_validator("stats_page_seconds", mode="before")
    @classmethod
    def _zero_or_more(cls, value: Any) -> int:
        return _whole_number(value, minimum=0)

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if value > 65535:
            raise ValueError(f"is out of range: {value}")
        return value

    @field_validator("test_mode", mode="before")
    @classmethod
    def _boolean(cls, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"must be true or false, not {value!r}")

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> str:
        level = str(value).strip().upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return level

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value

    @field_validator("migration_database_url")
    @classmethod
    def _migration_database_url(cls, value: str) -> str:
        if value and not value.startswith("postgresql"):
            raise ValueError("must be a postgresql+psycopg:// URL (roles need PostgreSQL)")
        return value

    @field_validator("document_types")
    @classmethod
    def _document_types(cls, value: str) -> str:
        from dmp.domain.valuesets import document_types

        unknown = sorted(set(split_codes(value)) - set(document_types().concepts))
        if unknown:
            raise ValueError(f"codes not in JDV_J07-XdsTypeCode-CISIS: {', '.join(unknown)}")
        return value

    @property
    def accepted_document_types(self) -> frozenset[str] | None:
        """The configured subset of JDV_J07, or None for all of it."""
        return frozenset(split_codes(self.document_types)) or None

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, value: str) -> str:
        Thresholds.parse(value)  # a bad list is an error at start, not at a milestone
        return value

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
            "migration_database_url": (
                redact_url(self.migration_database_url) if self.migration_database_url else ""
            ),
            "keyring_path": str(self.effective_keyring_path.resolve()),
            "host": self.host,
            "port": str(self.port),
            "log_level": self.log_level,
            "test_mode": str(self.test_mode).lower(),
            "token_ttl_seconds": str(self.token_ttl_seconds),
            "xds_repository_id": self.xds_repository_id,
            "emergency_access_days": str(self.emergency_access_days),
            "db_pool_size": str(self.db_pool_size),
            "db_prepared_statements": str(self.db_prepared_statements).lower(),
            "db_group_commit": str(self.db_group_commit).lower(),
            "stats_fold_seconds": str(self.stats_fold_seconds),
            "stats_page_seconds": str(self.stats_page_seconds),
            "matrix_file": str(self.matrix_file) if self.matrix_file else "(packaged default)",
            "milestones": self.milestones,
            "document_types": self.document_types or "(all of JDV_J07)",
            "smtp": (
                f"{self.smtp_security}://{self.smtp_host}:{self.smtp_port}"
                if self.smtp_host
                else "(no e-mail)"
            ),
            "smtp_user": self.smtp_user or "(none)",
            "smtp_password": "(set)" if self.smtp_password else "(none)",
            "sms_url": redact_url(self.sms_url) if self.sms_url else "(no SMS)",
            "sms_token": "(set)" if self.sms_token else "(none)",
            "portal_url": self.portal_url,
            "notify_max_attempts": str(self.notify_max_attempts),
            "retention_years": str(self.retention_years),
            "deletion_days": str(self.deletion_days),
            "objection_days": str(self.objection_days),
            "recovery_code_hours": str(self.recovery_code_hours),
            "trusted_proxies": self.trusted_proxies or "(none)",
            "drain_seconds": str(self.drain_seconds),
            "letters_dir": str(self.effective_letters_dir),
            "psc_issuer": self.psc_issuer or "(not offered)",
            "psc_client_id": self.psc_client_id or "(none)",
            "psc_client_secret": "(set)" if self.psc_client_secret else "(none)",
            "psc_acr": self.psc_acr,
            "fc_issuer": self.fc_issuer or "(not offered)",
            "fc_client_id": self.fc_client_id or "(none)",
            "fc_client_secret": "(set)" if self.fc_client_secret else "(none)",
            "fc_acr": self.fc_acr,
        }


def split_codes(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


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


def env_name(field_name: str) -> str:
    """The environment variable of a setting."""
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[-1])
    return f"DMP_{field_name.upper()}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from the environment (``environ`` instead of the process's, for tests);
    a malformed value is a clear error naming its variable."""
    env = os.environ if environ is None else environ
    given = {name: env[env_name(name)] for name in Settings.model_fields if env_name(name) in env}
    try:
        # model_validate, unlike the constructor, reads nothing more from the environment.
        return Settings.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        where = env_name(field) if field in Settings.model_fields else "a setting"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigurationError(f"{where} {message}") from None


ENVIRONMENT_VARIABLES: tuple[tuple[str, str, str], ...] = tuple(
    (env_name(name), name, repr(f.default)) for name, f in Settings.model_fields.items()
)
