"""A real ``dmp serve`` on loopback, for the tests that drive it with outside client libraries
(fhirclient, fhirpy, zeep)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmp.config import Settings
from dmp.runtime import Runtime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server_url(world: Runtime, settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "DMP_DATA_DIR": str(settings.data_dir), "DMP_TEST_MODE": "true"}
    if settings.database_url:
        env["DMP_DATABASE_URL"] = settings.database_url
    with (tmp_path / "server.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dmp.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        pytest.fail((tmp_path / "server.log").read_text())
                    time.sleep(0.2)
            yield f"http://127.0.0.1:{port}/fhir/"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
