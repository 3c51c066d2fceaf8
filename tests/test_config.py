from __future__ import annotations

from pathlib import Path

import pytest

from dmp.config import load_settings, redact_url
from dmp.errors import ConfigurationError


def test_defaults() -> None:
    s = load_settings({})
    assert s.data_dir == Path("dmp-data")
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.effective_database_url.endswith("dmp-data/dmp.sqlite3")
    assert s.effective_keyring_path == Path("dmp-data/keyring.json")
    assert (s.host, s.port, s.test_mode) == ("127.0.0.1", 8000, False)


def test_environment_overrides() -> None:
    s = load_settings(
        {
            "DMP_DATA_DIR": "/srv/dmp",
            "DMP_PORT": "9000",
            "DMP_TEST_MODE": "yes",
            "DMP_LOG_LEVEL": "debug",
            "DMP_KEYRING": "/etc/dmp/ring.json",
            "DMP_DATABASE_URL": "postgresql+psycopg://a:b@h/d",
        }
    )
    assert s.port == 9000
    assert s.test_mode is True
    assert s.log_level == "DEBUG"
    assert s.effective_keyring_path == Path("/etc/dmp/ring.json")
    assert s.describe()["database_url"] == "postgresql+psycopg://a:***@h/d"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DMP_PORT": "0"}, "out of range"),
        ({"DMP_PORT": "x"}, "whole number"),
        ({"DMP_TEST_MODE": "maybe"}, "true or false"),
        ({"DMP_LOG_LEVEL": "loud"}, "one of"),
        ({"DMP_DATABASE_URL": "mysql://x"}, "sqlite"),
    ],
)
def test_bad_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(env)


def test_redact_url() -> None:
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert redact_url("postgresql://user@host/db") == "postgresql://user@host/db"
    assert redact_url("postgresql://user:p%40ss@host/db") == "postgresql://user:***@host/db"
    # A password with an unencoded "@" is shown nowhere, not even in part.
    assert "ss" not in redact_url("postgresql://user:p@ss@host/db")
