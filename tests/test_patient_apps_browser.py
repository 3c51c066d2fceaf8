"""An app the patient allows, in Debian's Chromium: the consent page (checked with axe-core
like every page), back to the app with its code, the app's access in the history, and the
withdrawal on the Applications page."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from dmp.auth.apps import AppServer
from dmp.clock import FixedClock
from dmp.runtime import Runtime
from tests.browser import Checker, LiveServer
from tests.factories import GP, desk, ins_for, new_document, open_record, pro
from tests.test_portal_browser import _activate, page, server  # noqa: F401 - fixtures

APP = "https://carnet.example"


def test_allowing_and_withdrawing_an_app_in_a_browser(
    page: Any,  # noqa: F811
    server: LiveServer,  # noqa: F811
    world: Runtime,
    clock: FixedClock,
) -> None:
    check = Checker("applications")
    check.watch(page)
    ins = ins_for(41)
    open_record(world, ins)
    gp = world.access(pro(world, GP))
    gp.declare_consent(ins)
    gp.deposit_document(ins, new_document(clock.now(), title="Consultation de suivi"), b"x")
    app_id = AppServer(world).register(
        name="Carnet",
        publisher="Éditeur exemple",
        redirect_uris=[f"{APP}/retour"],
        scopes="patient/DocumentReference.rs offline_access launch/patient",
    )
    letter = world.access(desk()).issue_activation_code(ins)
    _activate(page, check, clock, ins.value, letter.code)

    # The app's own page, where the browser comes back with the code.
    arrived: list[str] = []

    def app_page(route: Any) -> None:
        arrived.append(route.request.url)
        route.fulfill(
            status=200, content_type="text/html", body="<!DOCTYPE html><title>Carnet</title>"
        )

    page.route(f"{APP}/**", app_page)
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": app_id,
            "redirect_uri": f"{APP}/retour",
            "scope": "launch/patient patient/DocumentReference.rs offline_access",
            "state": "s1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "aud": f"{server.url}/fhir",
        }
    )
    page.goto(f"/portail/autoriser?{query}")
    check.check(page, "consentement")
    assert page.get_by_role("heading", name="Autoriser l'application « Carnet » ?").is_visible()
    page.get_by_role("button", name="Autoriser").click()
    page.wait_for_url(f"{APP}/retour**")
    back = parse_qs(urlsplit(arrived[-1]).query)
    assert back["state"] == ["s1"]
    tokens = httpx.post(
        f"{server.url}/fhir/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": back["code"][0],
            "redirect_uri": f"{APP}/retour",
            "client_id": app_id,
            "code_verifier": verifier,
        },
    ).json()
    read = httpx.get(
        f"{server.url}/fhir/DocumentReference",
        params={"patient": tokens["patient"]},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert read.status_code == 200

    page.goto("/portail/dossier/historique?qui=moi")
    check.check(page, "historique-application")
    assert page.get_by_text("(via Carnet)").first.is_visible()
    page.goto("/portail/dossier/applications")
    check.check(page, "applications")
    page.get_by_role("button", name="Retirer l'accès de Carnet").click()
    check.check(page, "application-retiree")
    assert page.get_by_text("L'autorisation a été retirée").is_visible()
    again = httpx.get(
        f"{server.url}/fhir/DocumentReference",
        params={"patient": tokens["patient"]},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert again.status_code == 403
