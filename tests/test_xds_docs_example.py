"""docs/xds.md's worked example runs as written against the demo data: its setup (the demo
hospital's software registered with a fresh certificate) done here as the document says, then
its Python block executed unchanged against a live server."""

from __future__ import annotations

import re
import runpy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dmp.auth.vihf import certificate_jwk
from dmp.config import Settings
from dmp.jobs import clients
from dmp.jobs.demo import load_demo
from dmp.runtime import Runtime
from tests.browser import LiveServer
from tests.xds_helpers import self_signed

DOC = Path(__file__).resolve().parents[1] / "docs" / "xds.md"


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text[text.index("## Worked example (Python)") :]


def test_the_xds_worked_example_runs_against_the_demo(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = Runtime.start(settings)  # the real clock: the example dates its assertions itself
    try:
        load_demo(rt)
        # What `openssl req -x509 -newkey rsa:3072 -nodes -days 365` writes.
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        cert = self_signed(
            key, "Logiciel du CHU (demo)", datetime.now(UTC) - timedelta(minutes=1), 365
        )
        (tmp_path / "chu-key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pem = cert.public_bytes(serialization.Encoding.PEM)
        (tmp_path / "chu-cert.pem").write_bytes(pem)
        section = _section()
        hospital = re.search(r"--structure (\S+)", section)
        assert hospital is not None
        client_id = clients.register_client(
            rt,
            name="Logiciel du CHU (démo)",
            structure_id=hospital.group(1),
            jwks={"keys": [certificate_jwk(pem)]},
        )
        blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
        assert len(blocks) == 1
        with LiveServer(rt) as server:
            monkeypatch.chdir(tmp_path)
            monkeypatch.setenv("DMP_CLIENT_ID", client_id)
            monkeypatch.setenv("DMP_BASE", server.url)
            script = tmp_path / "example.py"
            script.write_text(blocks[0], encoding="utf-8")
            runpy.run_path(str(script), run_name="__main__")
    finally:
        rt.close()
