"""The `dmp` command, run as a user would (a subprocess with DMP_* variables)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.factories import EXAMPLES, ins_for, lift_audit_protection

RPPS_SAMPLE = EXAMPLES / "rpps" / "PS_LibreAcces_Personne_activite_sample.txt"


def dmp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dmp.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(settings: object, tmp_path: Path) -> dict[str, str]:
    from dmp.config import Settings

    assert isinstance(settings, Settings)
    out = {**os.environ, "DMP_DATA_DIR": str(settings.data_dir)}
    out.pop("DMP_TEST_MODE", None)
    if settings.database_url:
        out["DMP_DATABASE_URL"] = settings.database_url
    else:
        out.pop("DMP_DATABASE_URL", None)
    return out


def _url(env: dict[str, str]) -> str:
    return env.get("DMP_DATABASE_URL") or f"sqlite:///{Path(env['DMP_DATA_DIR']) / 'dmp.sqlite3'}"


def test_demo_then_verify_then_tamper(env: dict[str, str]) -> None:
    r = dmp(env, "demo")
    assert r.returncode == 0, r.stderr
    assert "12 records opened" in r.stdout
    r = dmp(env, "audit", "verify")
    assert r.returncode == 0, r.stderr
    assert "intact" in r.stdout
    engine = sa.create_engine(_url(env))
    lift_audit_protection(engine)  # as the database owner could
    with engine.begin() as conn:
        chain, seq = conn.execute(
            sa.text(
                "SELECT chain_id, seq FROM audit_events ORDER BY chain_id, seq LIMIT 1 OFFSET 3"
            )
        ).one()
        conn.execute(
            sa.text(
                # Always a real change: the outcome of the event is flipped.
                "UPDATE audit_events SET outcome = CASE outcome WHEN 'success' THEN 'denied' "
                "ELSE 'success' END WHERE chain_id = :c AND seq = :s"
            ),
            {"c": chain, "s": seq},
        )
    engine.dispose()
    r = dmp(env, "audit", "verify")
    assert r.returncode == 1
    assert f"chain {chain}, event #{seq}" in r.stderr


def test_demo_twice_is_harmless(env: dict[str, str]) -> None:
    assert dmp(env, "demo").returncode == 0
    r = dmp(env, "demo")
    assert r.returncode == 0, r.stderr
    assert "0 records opened" in r.stdout
    assert dmp(env, "audit", "verify").returncode == 0


def test_professional_import(env: dict[str, str], tmp_path: Path) -> None:
    r = dmp(env, "professional", "import", str(RPPS_SAMPLE))
    assert r.returncode == 0, r.stderr
    lines = [x for x in RPPS_SAMPLE.read_text(encoding="utf-8").splitlines()[1:] if x.strip()]
    assert f"{len(lines)} rows loaded" in r.stdout
    assert "0 rejected" in r.stdout
    # Idempotent, and bad rows are reported with their reason.
    broken = tmp_path / "extract.txt"
    header, first, *_ = RPPS_SAMPLE.read_text(encoding="utf-8").splitlines()
    bad_id = first.split("|")
    bad_id[2] = "ABC"
    broken.write_text(
        "\n".join([header, first, "|".join(bad_id), "only|three|columns"]) + "\n", encoding="utf-8"
    )
    r = dmp(env, "professional", "import", str(broken))
    assert r.returncode == 0, r.stderr
    assert "1 rows loaded" in r.stdout
    assert "2 rejected" in r.stdout
    assert "invalid national identifier" in r.stdout
    assert "expected 52 columns" in r.stdout
    engine = sa.create_engine(_url(env))
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM professionals")).scalar_one()
    engine.dispose()
    assert n == len({line.split("|")[2] for line in lines})


def test_import_refuses_a_file_that_is_not_an_extract(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    r = dmp(env, "professional", "import", str(f))
    assert r.returncode == 2
    assert "error: not a directory extract" in r.stderr


def test_record_open_show_close(env: dict[str, str]) -> None:
    ins = ins_for(3)
    test_env = {**env, "DMP_TEST_MODE": "true"}
    args = ["--ins", ins.value, "--oid", ins.oid]
    r = dmp(
        test_env,
        "record",
        "open",
        *args,
        "--family-name",
        "EXEMPLE",
        "--given-names",
        "ALEX",
        "--sex",
        "U",
        "--birth-date",
        "1983-04-03",  # as ins_for(3) encodes it
        "--commune",
        "2A004",
        "--patient-consent",
    )
    assert r.returncode == 0, r.stderr
    assert "département 2A" in r.stdout
    r = dmp(test_env, "record", "show", *args)
    assert r.returncode == 0, r.stderr
    assert "active" in r.stdout
    r = dmp(
        test_env, "record", "representative", *args, "--id", "rep-1", "--name", "PARENT", "--minor"
    )
    assert r.returncode == 0, r.stderr
    r = dmp(test_env, "record", "representative", *args, "--id", "rep-1", "--name", "PARENT")
    assert r.returncode == 2
    assert "already registered" in r.stderr
    assert (
        dmp(test_env, "record", "close", *args, "--reason", "demande du titulaire").returncode == 0
    )
    r = dmp(test_env, "record", "show", *args)
    assert "closed since" in r.stdout
    # Outside test mode the test OID is refused with a readable message.
    r = dmp(env, "record", "show", *args)
    assert r.returncode == 2
    assert "test or demo mode" in r.stderr


def test_keys_rotate_and_config_show(env: dict[str, str]) -> None:
    assert dmp(env, "demo").returncode == 0
    r = dmp(env, "keys", "rotate")
    assert r.returncode == 0, r.stderr
    assert "re-wrapped" in r.stdout
    assert dmp(env, "audit", "verify").returncode == 0
    shown = dmp(
        {**env, "DMP_DATABASE_URL": "postgresql+psycopg://u:s3cret@127.0.0.1/db"}, "config", "show"
    )
    assert shown.returncode == 0
    assert "s3cret" not in shown.stdout
    assert "u:***@127.0.0.1/db" in shown.stdout


def test_bad_setting_is_a_readable_error(env: dict[str, str]) -> None:
    r = dmp({**env, "DMP_PORT": "eighty"}, "config", "show")
    assert r.returncode == 2
    assert "DMP_PORT must be a whole number" in r.stderr


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["db", "upgrade"],
        ["demo"],
        ["record", "open"],
        ["record", "close"],
        ["record", "show"],
        ["record", "representative"],
        ["client", "add"],
        ["stats"],
        ["audit", "verify"],
        ["professional", "import"],
        ["keys", "rotate"],
        ["config", "show"],
        ["token", "issue"],
    ],
)
def test_help(command: list[str], env: dict[str, str]) -> None:
    r = dmp(env, *command, "--help")
    assert r.returncode == 0
    assert "Usage:" in r.stdout


def test_portal_invitations_print_a_code_that_activates(env: dict[str, str]) -> None:
    r = dmp(env, "demo")
    assert r.returncode == 0, r.stderr
    assert "tuteur-demo / " in r.stdout and "820000000026 / " in r.stdout
    r = dmp(env, "portal", "invite", "--professional", "820000000034")
    assert r.returncode == 0, r.stderr
    code = r.stdout.split("activation code: ")[1].split()[0]
    assert len(code) == 14
    # The code activates that account (through the portal's own service).
    from dmp.auth.portal import Portal
    from dmp.config import Settings
    from dmp.runtime import Runtime

    rt = Runtime.start(
        Settings(data_dir=Path(env["DMP_DATA_DIR"]), database_url=env.get("DMP_DATABASE_URL", ""))
    )
    try:
        assert Portal(rt).start_activation("820000000034", code, "127.0.0.1").stage == "activate"
    finally:
        rt.close()
    refused = dmp(env, "portal", "invite", "--professional", "899999999999")
    assert refused.returncode == 2 and "not in the directory" in refused.stderr
    usage = dmp(env, "portal", "invite", "--desk-agent", "agent-1")
    assert usage.returncode == 2 and "--structure" in usage.stderr


def test_jobs_run_and_the_outbox_commands(env: dict[str, str]) -> None:
    assert dmp(env, "demo").returncode == 0
    # The demo's notices: nobody has activated an account, so each is skipped, not failed.
    r = dmp(env, "jobs", "run")
    assert r.returncode == 0, r.stderr
    assert "ran: outbox" in r.stdout and "0 failed" in r.stdout
    listed = dmp(env, "notifications", "list", "--limit", "5")
    assert listed.returncode == 0 and "counts: " in listed.stdout and "skipped" in listed.stdout
    notice_id = listed.stdout.splitlines()[1].split()[0]
    assert dmp(env, "notifications", "retry", notice_id).returncode == 0
    assert dmp(env, "notifications", "retry", "nonexistent").returncode == 2
    assert "dead" not in dmp(env, "notifications", "list", "--failed").stdout.split("\n", 1)[1]
    # The listings and the retry are in the trail, under the system actor of the outbox job
    # (issue 22: the operator read every patient's notices unaudited).
    from dmp.config import Settings
    from dmp.runtime import Runtime

    rt = Runtime.start(
        Settings(data_dir=Path(env["DMP_DATA_DIR"]), database_url=env.get("DMP_DATABASE_URL", ""))
    )
    try:
        with rt.engine.connect() as conn:
            events = conn.execute(
                sa.text(
                    "SELECT action, target FROM audit_events "
                    "WHERE actor_id = 'system:notifications' ORDER BY seq"
                )
            ).all()
    finally:
        rt.close()
    assert [tuple(e) for e in events] == [
        ("notifications.list", "all, up to 5"),
        ("notifications.retry", notice_id),
        ("notifications.retry", "nonexistent"),  # an attempt is traced too
        ("notifications.list", "dead, up to 50"),
    ]


def test_dmp_stats_loads_no_page_or_token_library() -> None:
    """`dmp stats` is timed as a whole command (process start included, bench/stats_bench.py):
    the command modules load jinja2, pygal, JWT and the portal only where they are used."""
    import subprocess
    import sys

    code = (
        "import sys, dmp.cli, dmp.cli.reports, dmp.stats.render; "
        "print(sorted(m for m in ('jinja2', 'pygal', 'jwt', 'dmp.auth.portal') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_client_add_with_a_certificate(env: dict[str, str], tmp_path: Path) -> None:
    """The structure's certificate is registered for VIHF: its key in the JWKS, with x5c."""
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.xds_helpers import self_signed

    assert dmp(env, "demo").returncode == 0
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(key, "Logiciel fictif", datetime.now(UTC), 30)
    pem = tmp_path / "cert.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    r = dmp(
        env,
        "client",
        "add",
        "--name",
        "CHU",
        "--structure",
        "1370099001",
        "--certificate",
        str(pem),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("client-")
    none = dmp(env, "client", "add", "--name", "CHU", "--structure", "1370099001")
    assert none.returncode == 2
    assert "--jwks, --certificate" in none.stderr
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    wrong = dmp(
        env,
        "client",
        "add",
        "--name",
        "CHU",
        "--structure",
        "1370099001",
        "--certificate",
        str(bad),
    )
    assert wrong.returncode == 2
    assert "not a PEM X.509 certificate" in wrong.stderr


def test_the_app_catalogue_commands(env: dict[str, str]) -> None:
    import json

    added = dmp(
        env,
        "app",
        "add",
        "--name",
        "Carnet",
        "--publisher",
        "Éditeur exemple",
        "--redirect-uri",
        "https://carnet.example/retour",
        "--scope",
        "patient/DocumentReference.rs",
    )
    assert added.returncode == 0, added.stderr
    client_id = added.stdout.strip()
    assert client_id.startswith("app-")
    listed = [json.loads(line) for line in dmp(env, "app", "list").stdout.splitlines()]
    assert [(a["client_id"], a["scopes"], a["withdrawn_at"]) for a in listed] == [
        (client_id, "patient/DocumentReference.rs", None)
    ]
    # Bad input: a readable error, nothing stored.
    bad = dmp(
        env, "app", "add", "--name", "X", "--publisher", "Y", "--redirect-uri", "http://x.example/"
    )
    assert bad.returncode != 0 and "redirect addresses" in bad.stderr
    writes = dmp(
        env,
        "app",
        "add",
        "--name",
        "X",
        "--publisher",
        "Y",
        "--redirect-uri",
        "https://x.example/",
        "--scope",
        "patient/DocumentReference.cud",
    )
    assert writes.returncode != 0 and "scope" in writes.stderr
    assert len(dmp(env, "app", "list").stdout.splitlines()) == 1
    done = dmp(env, "app", "withdraw", "--client-id", client_id)
    assert done.returncode == 0, done.stderr
    again = dmp(env, "app", "withdraw", "--client-id", client_id)
    assert again.returncode != 0 and "no app" in again.stderr
