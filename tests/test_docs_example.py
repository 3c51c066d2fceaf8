"""docs/api.md's worked example runs as written against the demo data: its setup (a client
registered for the demo hospital with a fresh RSA key) done here as the document says, then
its Python block executed unchanged against a live server."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dmp.config import Settings
from dmp.jobs import clients
from dmp.jobs.demo import load_demo
from dmp.runtime import Runtime
from tests.browser import LiveServer

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _example() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Worked example (Python)") :]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    return str(blocks[0])


def test_the_worked_example_runs_against_the_demo(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = Runtime.start(settings)  # the real clock: the example dates its assertion itself
    try:
        load_demo(rt)
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        (tmp_path / "client-key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk |= {"kid": "my-key-1", "alg": "RS384"}
        text = DOC.read_text(encoding="utf-8")
        section = text[text.index("## Worked example (Python)") :]
        hospital = re.search(r"--structure (\S+)", section)
        assert hospital is not None
        client_id = clients.register_client(
            rt, name="Logiciel du CHU (démo)", structure_id=hospital.group(1), jwks={"keys": [jwk]}
        )
        with LiveServer(rt) as server:
            monkeypatch.chdir(tmp_path)
            monkeypatch.setenv("DMP_CLIENT_ID", client_id)
            monkeypatch.setenv("DMP_FHIR", f"{server.url}/fhir")
            script = tmp_path / "example.py"
            script.write_text(_example(), encoding="utf-8")
            runpy.run_path(str(script), run_name="__main__")
    finally:
        rt.close()
