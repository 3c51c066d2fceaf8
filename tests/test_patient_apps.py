"""Apps the patient allows (issue 25, item 3): dmp as a SMART App Launch v2 authorization server
for the catalogue's apps. The holder logs in, reads the French consent page, allows; the app
exchanges its code with PKCE, reads the record as the holder (the holder's rules: documents
held back for an announcement stay hidden), every access in the history as that app; refresh
tokens rotate and a replay ends the authorization; the holder withdraws the app on the portal
and its next request is refused."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import re
import secrets
import threading
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from dmp.app import create_app
from dmp.auth import actors
from dmp.auth.apps import AppServer, OAuthError
from dmp.clock import FixedClock
from dmp.identity.actor import ActorKind, system_actor
from dmp.identity.scopes import ScopeError, narrow_app
from dmp.runtime import Runtime
from tests.factories import GP, desk, ins_for, new_document, open_record, pro
from tests.portal_helpers import Account, activate, get, login, logout, post_form

REDIRECT = "https://carnet.example/retour"
FHIR = "http://testserver/fhir"


@dataclasses.dataclass
class World:
    rt: Runtime
    clock: FixedClock
    client: TestClient
    app_id: str
    holder: Account
    ins: object
    api: TestClient  # the app's own HTTP client: no portal cookie ever goes with it


@pytest.fixture
def w(world: Runtime, clock: FixedClock) -> Iterator[World]:
    ins = ins_for(21)
    open_record(world, ins)
    gp = world.access(pro(world, GP))
    gp.declare_consent(ins)
    gp.deposit_document(ins, new_document(clock.now(), title="Consultation de suivi"), b"suivi")
    held = dataclasses.replace(
        new_document(clock.now(), title="Résultat à annoncer"), invisible_patient=True
    )
    gp.deposit_document(ins, held, b"annonce")
    app_id = AppServer(world).register(
        name="Carnet",
        publisher="Éditeur exemple",
        redirect_uris=[REDIRECT],
        scopes="patient/DocumentReference.rs patient/Binary.r offline_access launch/patient",
    )
    letter = world.access(desk()).issue_activation_code(ins)
    with TestClient(create_app(world)) as client:
        holder = activate(client, clock, ins.value, letter.code)
        yield World(world, clock, client, app_id, holder, ins, TestClient(client.app))


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _request(w: World, challenge: str, **changes: str) -> str:
    params = {
        "response_type": "code",
        "client_id": w.app_id,
        "redirect_uri": REDIRECT,
        "scope": "launch/patient patient/DocumentReference.rs patient/Binary.rs "
        "patient/Consent.rs offline_access openid fhirUser",
        "state": "etat-42",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "aud": FHIR,
    }
    params.update(changes)
    return "/portail/autoriser?" + urlencode(params)


def _back_to_app(page: Response) -> dict[str, str]:
    """The address the page sends the browser back to, as the app receives it."""
    found = re.search(r'content="0;url=([^"]+)"', page.text)
    assert found, page.text
    target = html.unescape(found.group(1))
    assert target.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}


def _allow(w: World, **changes: str) -> tuple[str, str]:
    """The holder allows the app; returns (code, verifier)."""
    verifier, challenge = _pkce()
    consent = w.client.get(_request(w, challenge, **changes))
    assert consent.status_code == 200, consent.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', consent.text))
    fields = {k: html.unescape(v) for k, v in fields.items()}
    answer = w.client.post("/portail/autoriser", data={**fields, "decision": "autoriser"})
    assert answer.status_code == 200, answer.text
    back = _back_to_app(answer)
    assert back["state"] == "etat-42"
    return back["code"], verifier


def _exchange(w: World, code: str, verifier: str, **changes: str) -> Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": w.app_id,
        "code_verifier": verifier,
    }
    form.update(changes)
    return w.client.post("/fhir/auth/token", data=form)


def _fhir(w: World, token: str, path: str) -> Response:
    return w.api.get(f"/fhir/{path}", headers={"Authorization": f"Bearer {token}"})


def test_the_consent_page_says_what_the_app_asks_in_french(w: World) -> None:
    _, challenge = _pkce()
    page = w.client.get(_request(w, challenge))
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "Autoriser l'application « Carnet » ?" in text
    assert "Éditeur exemple" in text
    assert "lire la liste de vos documents et leur description" in text
    assert "lire le contenu de vos documents" in text  # Binary.rs narrowed to Binary.r
    assert "garder cet accès quand vous n'êtes pas connecté" in text
    # Consent was asked but the app is not registered for it: not offered, not granted.
    assert "les professionnels que vous avez autorisés" not in text


def test_allowed_app_reads_as_the_holder_and_is_in_the_history(w: World) -> None:
    code, verifier = _allow(w)
    answer = _exchange(w, code, verifier)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert answer.headers["cache-control"] == "no-store"
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"].split() == sorted(
        ["launch/patient", "offline_access", "patient/Binary.r", "patient/DocumentReference.rs"]
    )
    assert tokens["refresh_token"]
    found = _fhir(w, tokens["access_token"], f"DocumentReference?patient={tokens['patient']}")
    assert found.status_code == 200, found.text
    titles = [
        e["resource"]["content"][0]["attachment"].get("title")
        for e in found.json().get("entry", [])
        if e["resource"]["resourceType"] == "DocumentReference"
    ]
    assert "Consultation de suivi" in titles
    # The holder's rules: a document held back for an announcement is hidden from the app too.
    assert "Résultat à annoncer" not in titles
    # Not granted: the patient's identity (Patient.r).
    refused = _fhir(w, tokens["access_token"], f"Patient/{tokens['patient']}")
    assert refused.status_code == 403
    assert "needs user/Patient.r" in refused.text
    # In the holder's history, as the holder through the app.
    holder = w.rt.access(actors.patient_actor(w.rt, w.ins))  # type: ignore[arg-type]
    traces = holder.history(w.ins, actor_kinds=("patient",)).items  # type: ignore[arg-type]
    through = [t for t in traces if t.client_id == w.app_id]
    assert {t.action for t in through} >= {"document.search"}
    assert any(t.action == "app.allow" and t.target == w.app_id for t in traces)
    page = get(w.client, "/portail/dossier/historique?qui=moi")
    assert "(via Carnet)" in page.text
    apps = get(w.client, "/portail/dossier/applications")
    assert "Carnet" in apps.text and "jamais" not in apps.text  # its last access is listed


def test_withdrawn_on_the_portal_the_app_is_refused_at_its_next_request(w: World) -> None:
    code, verifier = _allow(w)
    tokens = _exchange(w, code, verifier).json()
    read = f"DocumentReference?patient={tokens['patient']}"
    assert _fhir(w, tokens["access_token"], read).status_code == 200
    page = get(w.client, "/portail/dossier/applications")
    authorization = re.search(r'name="autorisation" value="([^"]+)"', page.text)
    assert authorization is not None
    done = post_form(
        w.client,
        "/portail/dossier/applications/retirer",
        page,
        autorisation=authorization.group(1),
    )
    assert "L'autorisation a été retirée" in html.unescape(done.text)
    refused = _fhir(w, tokens["access_token"], read)
    assert refused.status_code == 403
    assert "withdrew this app's authorization" in refused.text
    again = w.client.post(
        "/fhir/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": w.app_id,
        },
    )
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


def test_refresh_tokens_rotate_and_a_replay_ends_the_authorization(w: World) -> None:
    code, verifier = _allow(w)
    first = _exchange(w, code, verifier).json()

    def refresh(token: str) -> Response:
        return w.client.post(
            "/fhir/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": token, "client_id": w.app_id},
        )

    second = refresh(first["refresh_token"])
    assert second.status_code == 200, second.text
    renewed = second.json()
    assert renewed["refresh_token"] != first["refresh_token"]
    read = f"DocumentReference?patient={renewed['patient']}"
    assert _fhir(w, renewed["access_token"], read).status_code == 200
    # The first refresh token again: a copy leaked. Refused, and the authorization ends.
    replay = refresh(first["refresh_token"])
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    assert _fhir(w, renewed["access_token"], read).status_code == 403
    assert refresh(renewed["refresh_token"]).status_code == 400
    holder = w.rt.access(actors.patient_actor(w.rt, w.ins))  # type: ignore[arg-type]
    ended = [t for t in holder.history(w.ins).items if t.action == "app.revoke"]  # type: ignore[arg-type]
    assert ended and ended[0].actor_id == "system:apps"


def test_a_code_works_once_with_its_verifier_app_and_address(w: World) -> None:
    code, verifier = _allow(w)
    wrong = _exchange(w, code, "x" * 43)
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    # The code was spent by that attempt: the right verifier comes too late, and the
    # replay ends the authorization.
    late = _exchange(w, code, verifier)
    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant")
    code, verifier = _allow(w)
    elsewhere = _exchange(w, code, verifier, redirect_uri="https://carnet.example/autre")
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (400, "invalid_grant")
    code, verifier = _allow(w)
    stranger = _exchange(w, code, verifier, client_id="app-inconnue")
    assert (stranger.status_code, stranger.json()["error"]) == (401, "invalid_client")
    good = _exchange(w, code, verifier)
    assert good.status_code == 200, good.text
    twice = _exchange(w, code, verifier)
    assert (twice.status_code, twice.json()["error"]) == (400, "invalid_grant")
    read = f"DocumentReference?patient={good.json()['patient']}"
    assert _fhir(w, good.json()["access_token"], read).status_code == 403  # ended by the replay
    # A code is good for a minute.
    code, verifier = _allow(w)
    w.clock.advance(timedelta(seconds=61))
    assert _exchange(w, code, verifier).status_code == 400


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"aud": "https://ailleurs.example/fhir"}, "invalid_request"),
        ({"scope": "user/DocumentReference.rs"}, "invalid_scope"),
        ({"scope": "patient/DocumentReference.cud"}, "invalid_scope"),
        ({"state": ""}, "invalid_request"),
    ],
)
def test_a_bad_request_goes_back_to_the_app_with_its_error(
    w: World, changes: dict[str, str], error: str
) -> None:
    _, challenge = _pkce()
    answer = w.client.get(_request(w, challenge, **changes), follow_redirects=False)
    assert answer.status_code == 303
    back = parse_qs(urlsplit(answer.headers["location"]).query)
    assert answer.headers["location"].startswith(REDIRECT + "?")
    assert back["error"] == [error]


@pytest.mark.parametrize(
    "changes",
    [{"client_id": "app-inconnue"}, {"redirect_uri": "https://attaquant.example/retour"}],
)
def test_an_unknown_app_or_address_is_never_redirected_to(
    w: World, changes: dict[str, str]
) -> None:
    _, challenge = _pkce()
    answer = w.client.get(_request(w, challenge, **changes), follow_redirects=False)
    assert answer.status_code == 400
    assert "location" not in answer.headers


def test_refusing_tells_the_app_and_grants_nothing(w: World) -> None:
    _, challenge = _pkce()
    consent = w.client.get(_request(w, challenge))
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', consent.text))
    fields = {k: html.unescape(v) for k, v in fields.items()}
    answer = w.client.post("/portail/autoriser", data={**fields, "decision": "refuser"})
    back = _back_to_app(answer)
    assert back["error"] == "access_denied" and back["state"] == "etat-42"
    assert "Vous n'avez autorisé aucune application" in html.unescape(
        get(w.client, "/portail/dossier/applications").text
    )


def test_logged_out_the_holder_logs_in_first_and_comes_back(w: World) -> None:
    logout(w.client)
    _, challenge = _pkce()
    first = w.client.get(_request(w, challenge))
    assert first.status_code == 200
    assert "demande à lire votre dossier" in html.unescape(first.text)
    assert "Se connecter" in first.text
    back = login(w.client, w.clock, w.holder)
    assert "Autoriser l'application « Carnet » ?" in html.unescape(back.text)


def test_only_the_holder_side_allows_an_app(w: World) -> None:
    from dmp.auth.portal import Portal
    from tests.factories import PHARMACIST, PHARMACY

    logout(w.client)
    code, _ = Portal(w.rt).invite(
        kind=ActorKind.PROFESSIONAL, login=PHARMACIST, by="t", structure_id=PHARMACY
    )
    activate(w.client, w.clock, PHARMACIST, code)
    _, challenge = _pkce()
    assert w.client.get(_request(w, challenge)).status_code == 403


def test_an_app_revokes_its_own_refresh_token(w: World) -> None:
    code, verifier = _allow(w)
    tokens = _exchange(w, code, verifier).json()
    done = w.client.post(
        "/fhir/auth/revoke", data={"token": tokens["refresh_token"], "client_id": w.app_id}
    )
    assert done.status_code == 200
    read = f"DocumentReference?patient={tokens['patient']}"
    assert _fhir(w, tokens["access_token"], read).status_code == 403
    assert w.client.post("/fhir/auth/revoke", data={"token": "rien"}).status_code == 200


def test_smart_configuration_describes_both_flows(w: World) -> None:
    conf = w.client.get("/fhir/.well-known/smart-configuration").json()
    assert conf["authorization_endpoint"] == "http://testserver/portail/autoriser"
    assert conf["revocation_endpoint"] == "http://testserver/fhir/auth/revoke"
    assert set(conf["grant_types_supported"]) == {
        "client_credentials",
        "authorization_code",
        "refresh_token",
    }
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-standalone", "client-public", "permission-patient"} <= set(conf["capabilities"])
    assert "patient/DocumentReference.rs" in conf["scopes_supported"]


# -- the scope rules, written from SMART App Launch v2 and docs/api.md ----------------------


@pytest.mark.parametrize(
    ("requested", "registered", "answer"),
    [
        ("patient/DocumentReference.rs", "patient/*.rs", "patient/DocumentReference.rs"),
        ("patient/DocumentReference.read", "patient/*.rs", "patient/DocumentReference.rs"),
        ("patient/*.rs", "patient/Binary.r", "patient/Binary.r"),
        ("patient/Binary.rs openid fhirUser", "patient/Binary.r", "patient/Binary.r"),
        (
            "patient/Binary.r offline_access launch/patient",
            "patient/Binary.r offline_access",
            "offline_access patient/Binary.r",
        ),
    ],
)
def test_app_scopes_are_narrowed_to_the_registration(
    requested: str, registered: str, answer: str
) -> None:
    assert narrow_app(requested, frozenset(registered.split())).answer == answer


@pytest.mark.parametrize(
    ("requested", "registered"),
    [
        ("user/DocumentReference.rs", "patient/*.rs"),
        ("system/*.rs", "patient/*.rs"),
        ("patient/DocumentReference.cud", "patient/*.rs"),
        ("patient/Observation.rs", "patient/*.rs"),
        ("n'importe quoi", "patient/*.rs"),
        ("patient/AuditEvent.rs", "patient/DocumentReference.rs"),
    ],
)
def test_app_scopes_outside_the_grammar_or_registration_are_refused(
    requested: str, registered: str
) -> None:
    with pytest.raises(ScopeError):
        narrow_app(requested, frozenset(registered.split()))


# -- races (PostgreSQL) ---------------------------------------------------------------------


def _race(n: int, work: object) -> list[object]:
    results: list[object] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work()  # type: ignore[operator]
        except OAuthError as exc:
            results[i] = exc.error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _grant_type(server: AppServer, w: World, form: dict[str, str]) -> object:
    """The token request after its rate limits (whose counters, one row per address and per
    app, would queue the racers one behind the other): the exchange itself, concurrently."""
    with w.rt.engine.connect() as conn:
        from dmp.records import apps

        app = apps.get_app(conn, w.app_id)
    assert app is not None
    if form["grant_type"] == "refresh_token":
        return server._refresh(app, dict(form))
    return server._exchange_code(app, dict(form))


def _one_at_most_and_ended(w: World, results: list[object]) -> None:
    """A code or refresh token presented many times at once: one token at most is issued,
    every other request is refused, and the authorization ends (a replay means a leak), so
    that even the one token issued stops working."""
    winners = [r for r in results if not isinstance(r, str)]
    assert len(winners) <= 1, results
    assert all(r == "invalid_grant" for r in results if isinstance(r, str)), results
    holder = w.rt.access(actors.patient_actor(w.rt, w.ins))  # type: ignore[arg-type]
    assert all(a.withdrawn_at is not None for a in holder.allowed_apps(w.ins))  # type: ignore[arg-type]
    for won in winners:
        token = won.access_token  # type: ignore[attr-defined]
        assert _fhir(w, token, f"DocumentReference?patient={won.patient}").status_code == 403  # type: ignore[attr-defined]


@pytest.mark.postgres
@pytest.mark.parametrize("offline", [False, True])
def test_one_code_exchanged_at_once_by_many_gives_one_token(w: World, offline: bool) -> None:
    # Without offline_access no refresh token is stored: the code alone guards the race.
    scope = "patient/DocumentReference.rs" + (" offline_access" if offline else "")
    code, verifier = _allow(w, scope=scope)
    server = AppServer(w.rt)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": w.app_id,
        "code_verifier": verifier,
    }
    results = _race(16, lambda: _grant_type(server, w, form))
    _one_at_most_and_ended(w, results)


@pytest.mark.postgres
def test_one_refresh_token_used_at_once_by_many_gives_one_token(w: World) -> None:
    code, verifier = _allow(w)
    tokens = _exchange(w, code, verifier).json()
    server = AppServer(w.rt)
    form = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": w.app_id,
    }
    results = _race(16, lambda: _grant_type(server, w, form))
    _one_at_most_and_ended(w, results)


def test_a_representative_allows_an_app_that_then_sees_what_they_see(w: World) -> None:
    from tests.portal_helpers import minor_with_a_representative

    logout(w.client)
    child, code = minor_with_a_representative(w.rt, w.clock, 22, "parent-1")
    activate(w.client, w.clock, "parent-1", code)
    code, verifier = _allow(w)
    tokens = _exchange(w, code, verifier).json()
    found = _fhir(w, tokens["access_token"], f"DocumentReference?patient={tokens['patient']}")
    assert found.status_code == 200, found.text
    titles = [
        e["resource"]["content"][0]["attachment"].get("title")
        for e in found.json().get("entry", [])
        if e["resource"]["resourceType"] == "DocumentReference"
    ]
    assert titles == ["Carnet de vaccination"]  # not the one hidden from representatives
    traces = w.rt.access(system_actor("t")).history(child, actor_kinds=("representative",)).items
    assert any(t.client_id == w.app_id and t.actor_id == "parent-1" for t in traces)
    listed = get(w.client, "/portail/dossier/applications")
    assert "(par un représentant légal)" in html.unescape(listed.text)
