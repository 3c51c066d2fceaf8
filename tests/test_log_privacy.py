"""Nothing personal in the logs (issue 12): a whole scenario runs through the JSON API, the
FHIR API, the portal and the notification worker with every logger at DEBUG, and every line,
formatted as the service writes it, is scanned for INS numbers, names, document titles,
passwords, codes, tokens and cookies."""

from __future__ import annotations

import base64
import hashlib
import logging
import re

import pytest
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.auth import actors
from dmp.clock import FixedClock
from dmp.jobs import notify
from dmp.logs import JsonFormatter
from dmp.runtime import Runtime
from tests.factories import GP, T0, desk, ins_for, open_record, pro
from tests.portal_helpers import PASSWORD, activate, get, post_form

TITLE = "Titre-Tres-Confidentiel-7Q"


def test_a_whole_scenario_leaves_nothing_personal_in_the_logs(
    world: Runtime, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ins = ins_for(141)
    open_record(world, ins)
    secrets: set[str] = {ins.value, "EXEMPLE", "CAMILLE", TITLE, PASSWORD}
    gp_token = actors.token_for(world, actors.professional_actor(world, GP))
    secrets.add(gp_token)
    headers = {"Authorization": f"Bearer {gp_token}"}
    content = b"contenu clinique confidentiel"
    with TestClient(create_app(world), raise_server_exceptions=False) as client:
        base = f"/api/records/{ins.value}"
        world.access(pro(world, GP)).declare_consent(ins)
        client.post(
            f"{base}/documents?oid={ins.oid}",
            headers=headers,
            json={
                "type_code": "11488-4",
                "format_code": "urn:ihe:iti:xds-sd:text:2008",
                "mime_type": "text/plain",
                "title": TITLE,
                "creation_time": T0.isoformat(),
                "service_start": T0.isoformat(),
                "content_base64": base64.b64encode(content).decode(),
                "size": len(content),
                "sha1": hashlib.sha1(content, usedforsecurity=False).hexdigest(),
            },
        )
        client.get(f"{base}/documents?oid={ins.oid}", headers=headers)
        client.get(
            f"/fhir/DocumentReference?patient.identifier=urn:oid:{ins.oid}|{ins.value}",
            headers=headers,
        )
        client.get(f"/api/records/{ins_for(142).value}?oid={ins.oid}", headers=headers)  # 404
        client.get(base, headers={"Authorization": "Bearer not-a-token"})  # 401
        letter = world.access(desk()).issue_activation_code(ins)
        secrets.add(letter.code)
        account = activate(client, clock, ins.value, letter.code)
        secrets.update({account.secret, *account.recovery})
        secrets.add(client.cookies.get("dmp_session") or "no-cookie")
        page = get(client, "/portail/dossier/preferences")
        post_form(
            client,
            "/portail/dossier/preferences",
            page,
            canal="courriel",
            contact="personne@exemple.invalid",
        )
        secrets.add("personne@exemple.invalid")
        get(client, "/portail/dossier/documents")
    world.access(pro(world, GP)).search_documents(ins)
    notify.deliver_due(world, "log-test")  # the worker too (no e-mail configured: skipped)
    formatter = JsonFormatter()
    # The service's own loggers (the test's HTTP client logs the URLs it calls: not ours).
    lines = [
        formatter.format(r)
        for r in caplog.records
        if r.name.startswith(("dmp", "uvicorn", "sqlalchemy", "alembic"))
    ]
    # The scenario did log: its requests (by route template), and the worker's failures.
    assert any('"route":"/api/records/{ins}/documents"' in line for line in lines)
    assert any('"route":"/portail/activation"' in line for line in lines)
    leaks = [(s[:12], line[:200]) for line in lines for s in secrets if s and s in line]
    assert not leaks, leaks[:5]
    # No INS-shaped number at all (13 digits and a 2-digit key).
    assert not [line for line in lines if re.search(r"\b[12]\d{14}\b", line)]
