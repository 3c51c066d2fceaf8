"""A real OpenID provider for the login tests: npm's ``oidc-provider`` (an OpenID-certified
implementation) on a loopback port, run by Node from ``tests/oidc_provider/provider.mjs``,
configured with the claims of Pro Santé Connect or of FranceConnect.

Without node and npm the tests that need it are skipped, saying so; ``.ci/run`` installs both
and fails if any was skipped for that reason. The package is installed on first use with
``npm ci`` from the lock file in the repository, outside the work tree (``DMP_TEST_NODE_DIR``,
default ``~/.cache/dmp-test-oidc``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).resolve().parent / "oidc_provider"
# The reason .ci/run looks for: in CI no test may be skipped for it.
NO_PROVIDER = "OpenID provider test: needs node and npm (apt-get install nodejs npm)"
_install_lock = threading.Lock()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def provider_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def _workdir() -> Path:
    """Where the provider runs: a copy of tests/oidc_provider outside the work tree (the npm
    package is third-party code that stays out of the repository's tree), its modules
    installed from the lock file on first use, again when the lock file changes. A machine
    where npm cannot install them skips the test with the reason CI looks for (so CI fails)."""
    lock = (HERE / "package-lock.json").read_bytes()
    base = Path(os.environ.get("DMP_TEST_NODE_DIR", Path.home() / ".cache" / "dmp-test-oidc"))
    work = base / hashlib.sha256(lock).hexdigest()[:16]
    with _install_lock:
        work.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json", "provider.mjs"):
            shutil.copyfile(HERE / name, work / name)
        if (work / "node_modules" / "oidc-provider").is_dir():
            return work
        done = subprocess.run(
            [str(shutil.which("npm")), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"{NO_PROVIDER}; `npm ci` failed: {done.stderr.strip()[-300:]}")
    return work


# Claims as the providers name them. Pro Santé Connect: everything under its scope
# "scope_all", the national identifier in SubjectNameID (docs/portals.md). FranceConnect: one
# scope per claim of the identity pivot.
PSC_CLAIMS = {
    "openid": ["sub"],
    "scope_all": [
        "SubjectNameID",
        "preferred_username",
        "given_name",
        "family_name",
        "SubjectRefPro",
    ],
}
FC_CLAIMS = {
    "openid": ["sub"],
    **{
        claim: [claim]
        for claim in (
            "given_name",
            "family_name",
            "birthdate",
            "gender",
            "birthplace",
            "birthcountry",
            "email",
        )
    },
}


def psc_account(
    id_nat_ps: str, *, acr: str = "eidas1", structure: str | None = None
) -> dict[str, Any]:
    activities = [{"identifiantTechniqueDeLaStructure": structure}] if structure else []
    return {
        "acr": acr,
        "amr": ["pop", "mfa"],
        "claims": {
            "SubjectNameID": id_nat_ps,
            "preferred_username": id_nat_ps,
            "given_name": "PRO",
            "family_name": "TEST",
            "SubjectRefPro": {"exercices": [{"codeProfession": "10", "activities": activities}]},
        },
    }


def fc_account(
    *,
    family_name: str,
    given_name: str,
    birthdate: str,
    gender: str,
    birthplace: str = "37003",
    birthcountry: str = "99100",
    acr: str = "eidas1",
) -> dict[str, Any]:
    return {
        "acr": acr,
        "amr": ["pwd"],
        "claims": {
            "family_name": family_name,
            "given_name": given_name,
            "birthdate": birthdate,
            "gender": gender,
            "birthplace": birthplace,
            "birthcountry": birthcountry,
            "email": "personne@example.invalid",
        },
    }


class OpenIdProvider:
    """One provider process; ``tamper`` alters the next ID token it issues."""

    def __init__(
        self,
        tmp: Path,
        *,
        title: str,
        claims: dict[str, list[str]],
        accounts: dict[str, Any],
        clients: list[dict[str, Any]],
        acr_values: list[str],
    ) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.config = tmp / f"provider-{self.port}.json"
        self.config.write_text(
            json.dumps(
                {
                    "issuer": self.issuer,
                    "title": title,
                    "claims": claims,
                    "accounts": accounts,
                    "clients": clients,
                    "acrValues": acr_values,
                }
            )
        )
        self.log = tmp / f"provider-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OpenIdProvider:
        work = _workdir()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(shutil.which("node")), str(work / "provider.mjs"), str(self.config)],
                cwd=work,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("ready"):
            self.__exit__()
            pytest.fail(f"the OpenID provider did not start: {self.log.read_text()}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def tamper(self, *, claims: dict[str, Any] | None = None, foreign_key: bool = False) -> None:
        httpx.post(
            f"{self.issuer}/__harness/tamper",
            json={"claims": claims or {}, "foreignKey": foreign_key},
        ).raise_for_status()


def client(client_id: str, secret: str, dmp_url: str, name: str) -> dict[str, Any]:
    """dmp as the provider registers it: its redirect and post-logout addresses."""
    return {
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uris": [f"{dmp_url}/portail/connexion/{name}/retour"],
        "post_logout_redirect_uris": [f"{dmp_url}/portail?deconnecte=1"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    }


@pytest.fixture(scope="session")
def provider_tools() -> None:
    if not provider_available():
        pytest.skip(NO_PROVIDER)
