"""Logging into the portals through Pro Santé Connect and FranceConnect (issue 25, items 1-2),
against a real OpenID provider (npm oidc-provider) on loopback, configured with each provider's
claims: the whole redirect dance over HTTP, then its failures (an unknown or forbidden
professional, a low authentication level, an identity that matches no record, a signature
made with a key the provider never published, a token for another service, a wrong nonce, a
replayed or foreign state), and the logout at the provider."""

from __future__ import annotations

import html
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from dmp.clock import SystemClock
from dmp.config import Settings
from dmp.domain.codes import CreationChannel
from dmp.domain.ins import Ins
from dmp.runtime import Runtime
from tests.browser import Checker, LiveServer
from tests.factories import (
    GP,
    GP_PRACTICE,
    OCCUPATIONAL_DOCTOR,
    demographics_for,
    desk,
    ins_for,
    load_directory,
)
from tests.oidc import (
    FC_CLAIMS,
    PSC_CLAIMS,
    OpenIdProvider,
    client,
    fc_account,
    psc_account,
)

pytestmark = pytest.mark.usefixtures("provider_tools")

UNKNOWN_PS = "810000009999"


@dataclass
class Site:
    rt: Runtime
    url: str
    psc: OpenIdProvider
    fc: OpenIdProvider
    holder: Ins
    clients: list[httpx.Client]

    def browser(self, **kwargs: object) -> httpx.Client:
        """A client that keeps cookies as a browser does (closed after the test)."""
        made = httpx.Client(**kwargs)  # type: ignore[arg-type]
        self.clients.append(made)
        return made


def _next(answer: httpx.Response) -> str:
    """Where a redirect sends the browser (the provider's are relative)."""
    return str(answer.url.join(answer.headers["location"]))


def _follow(browser: httpx.Client, answer: httpx.Response, until: str = "") -> httpx.Response:
    """Follow redirects as a browser does, stopping before an address starting ``until``."""
    while answer.status_code in (302, 303) and not (until and _next(answer).startswith(until)):
        answer = browser.get(_next(answer))
    return answer


def _holder_pivot(ins: Ins, **changes: str) -> dict[str, object]:
    demo = demographics_for(ins)
    claims = {
        "family_name": demo.birth_family_name.title(),
        "given_name": demo.given_names.title(),
        "birthdate": demo.birth_date.isoformat(),
        "gender": "male" if demo.sex == "M" else "female",
    }
    return fc_account(**{**claims, **changes})  # type: ignore[arg-type]


@pytest.fixture
def site(tmp_path: Path, database_url: str, settings: Settings) -> Iterator[Site]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    holder = ins_for(3)
    psc_accounts = {
        "docteur": psc_account(GP, structure=GP_PRACTICE),
        "inconnu": psc_account(UNKNOWN_PS),
        "medecin-du-travail": psc_account(OCCUPATIONAL_DOCTOR),
        "faible": psc_account(GP, acr="eidas0"),
    }
    fc_accounts = {
        "titulaire": _holder_pivot(holder),
        "homonyme": _holder_pivot(holder, family_name="Autrenom"),
        "ne-ailleurs": _holder_pivot(holder, birthplace="75056"),
    }
    with (
        OpenIdProvider(
            tmp_path,
            title="Pro Santé Connect (test)",
            claims=PSC_CLAIMS,
            accounts=psc_accounts,
            clients=[client("dmp-psc", "psc-secret", url, "psc")],
            acr_values=["eidas1", "eidas0"],
        ) as psc,
        OpenIdProvider(
            tmp_path,
            title="FranceConnect (test)",
            claims=FC_CLAIMS,
            accounts=fc_accounts,
            clients=[client("dmp-fc", "fc-secret", url, "franceconnect")],
            acr_values=["eidas1", "eidas2"],
        ) as fc,
    ):
        configured = settings.model_copy(
            update={
                "portal_url": f"{url}/portail",
                "psc_issuer": psc.issuer,
                "psc_client_id": "dmp-psc",
                "psc_client_secret": "psc-secret",
                "fc_issuer": fc.issuer,
                "fc_client_id": "dmp-fc",
                "fc_client_secret": "fc-secret",
            }
        )
        rt = Runtime.start(configured, clock=SystemClock())
        try:
            load_directory(rt)
            rt.access(desk()).open_record(
                holder,
                demographics_for(holder),
                channel=CreationChannel.PHARMACY,
                patient_consent=True,
            )
            clients: list[httpx.Client] = []
            with LiveServer(rt, sock):
                yield Site(rt, url, psc, fc, holder, clients)
                for made in clients:
                    made.close()
        finally:
            rt.close()


def _login_at_provider(browser: httpx.Client, site: Site, provider: str, login: str) -> str:
    """From dmp's button to the provider's login form, the login typed there, up to (not
    into) dmp's callback: returns the callback address the provider sent the browser to."""
    answer = browser.get(f"{site.url}/portail/connexion/{provider}")
    assert answer.status_code == 303, answer.text
    answer = _follow(browser, browser.get(_next(answer)))
    action = re.search(r'action="([^"]+)"', answer.text)
    assert action is not None, answer.text
    issuer = site.psc.issuer if provider == "psc" else site.fc.issuer
    answer = browser.post(f"{issuer}{action.group(1)}", data={"login": login})
    answer = _follow(browser, answer, until=site.url)
    assert answer.status_code in (302, 303), answer.text
    return _next(answer)


def _login(site: Site, provider: str, login: str) -> tuple[httpx.Client, httpx.Response]:
    browser = site.browser()
    back = _login_at_provider(browser, site, provider, login)
    return browser, browser.get(back)


def test_psc_login_opens_the_professionals_portal_with_the_directory_s_actor(
    site: Site,
) -> None:
    browser, answer = _login(site, "psc", "docteur")
    assert answer.status_code == 200, answer.text
    assert "Connexion réussie" in answer.text
    assert 'content="0;url=/portail/pro"' in answer.text
    home = browser.get(f"{site.url}/portail/pro")
    assert home.status_code == 200
    # Who is logged in, from the directory (not from the provider's claims).
    assert "Connecté : PRO TEST, médecin" in home.text
    # The actor works through the gate: the professional searches the record, refused for
    # want of the patient's consent (the rules, not the login, decide).
    pro_page = browser.get(f"{site.url}/portail/pro")
    csrf = re.search(r'name="csrf" value="([^"]+)"', pro_page.text)
    assert csrf is not None
    chosen = browser.post(
        f"{site.url}/portail/pro/patient",
        data={"csrf": csrf.group(1), "ins": site.holder.value, "autorite": "test"},
    )
    assert chosen.status_code == 303
    record = browser.get(f"{site.url}/portail/pro/dossier")
    assert record.status_code == 403, record.text
    assert "consentement" in record.text
    # A PSC account has no password: the password login refuses it like any wrong password.
    other = site.browser()
    form = other.get(f"{site.url}/portail/connexion")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    refused = other.post(
        f"{site.url}/portail/connexion",
        data={"csrf": token.group(1), "identifiant": GP, "mot_de_passe": ""},
    )
    assert refused.status_code in (401, 422)


@pytest.mark.parametrize(
    ("login", "said"),
    [
        ("inconnu", "pas dans l'annuaire"),
        ("medecin-du-travail", "n'a pas accès au dmp"),
        ("faible", "niveau d'authentification"),
    ],
)
def test_psc_refuses_unknown_forbidden_and_weak_logins(site: Site, login: str, said: str) -> None:
    browser, answer = _login(site, "psc", login)
    assert answer.status_code == 401
    assert said in html.unescape(answer.text).lower()
    assert "dmp_session" not in browser.cookies
    assert browser.get(f"{site.url}/portail/pro").status_code in (303, 401)


def test_franceconnect_opens_the_holder_s_record_and_is_in_the_history(site: Site) -> None:
    browser, answer = _login(site, "franceconnect", "titulaire")
    assert answer.status_code == 200, answer.text
    assert 'content="0;url=/portail/dossier"' in answer.text
    record = browser.get(f"{site.url}/portail/dossier")
    assert record.status_code == 200
    spaced = " ".join((site.holder.value[0], site.holder.value[1:3], site.holder.value[3:5]))
    assert spaced in record.text
    history = browser.get(f"{site.url}/portail/dossier/historique?qui=moi")
    assert "connexion à votre espace" in history.text
    from dmp.auth import actors

    holder = site.rt.access(actors.patient_actor(site.rt, site.holder))
    traces = holder.history(site.holder).items
    assert any(t.action == "account.login" and t.target == "franceconnect" for t in traces)
    # The first login activated the account (counted as the statistics count activations).
    assert any(t.action == "record.update" and t.target == "activated_at" for t in traces)


@pytest.mark.parametrize("login", ["homonyme", "ne-ailleurs"])
def test_franceconnect_identity_that_matches_no_record_opens_nothing(
    site: Site, login: str
) -> None:
    browser, answer = _login(site, "franceconnect", login)
    assert answer.status_code == 401
    assert "aucun dossier ne correspond" in html.unescape(answer.text).lower()
    assert browser.get(f"{site.url}/portail/dossier").status_code in (303, 401)


@pytest.mark.parametrize(
    ("tamper", "said"),
    [
        ({"foreign_key": True}, "signature du jeton"),
        ({"claims": {"aud": "un-autre-service"}}, "délivré pour un autre service"),
        ({"claims": {"nonce": "pas-celui-de-dmp"}}, "nonce"),
        ({"claims": {"iss": "http://127.0.0.1:1"}}, "autre fournisseur"),
        ({"claims": {"exp": 1_000_000_000}}, "expiré"),
    ],
)
def test_an_id_token_that_fails_a_check_logs_nobody_in(
    site: Site, tamper: dict[str, object], said: str
) -> None:
    site.psc.tamper(**tamper)  # type: ignore[arg-type]
    browser, answer = _login(site, "psc", "docteur")
    assert answer.status_code == 401, answer.text
    assert said in html.unescape(answer.text).lower()
    assert browser.get(f"{site.url}/portail/pro").status_code in (303, 401)


def test_a_state_is_used_once_and_only_by_the_browser_that_started_it(site: Site) -> None:
    browser = site.browser()
    back = _login_at_provider(browser, site, "psc", "docteur")
    state = parse_qs(urlsplit(back).query)["state"][0]
    # Another browser (a login pushed into someone else's browser): refused.
    stranger = site.browser()
    refused = stranger.get(back)
    assert refused.status_code == 401
    assert "commencée dans ce navigateur" in refused.text
    # The browser that started it: logged in, once.
    assert browser.get(back).status_code == 200
    # Replayed, even with the state's cookie put back: refused.
    again = site.browser(cookies={"dmp_oidc": state})
    replay = again.get(back)
    assert replay.status_code == 401
    assert "déjà servi" in replay.text


def test_a_login_cancelled_at_the_provider_says_so(site: Site) -> None:
    browser = site.browser()
    started = browser.get(f"{site.url}/portail/connexion/franceconnect")
    state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
    answer = browser.get(
        f"{site.url}/portail/connexion/franceconnect/retour",
        params={"state": state, "error": "access_denied"},
    )
    assert answer.status_code == 401
    assert "annulée ou refusée" in answer.text


def test_logout_ends_the_session_at_the_provider_too(site: Site) -> None:
    browser, _ = _login(site, "psc", "docteur")
    page = browser.get(f"{site.url}/portail/pro")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    out = browser.post(f"{site.url}/portail/deconnexion", data={"csrf": csrf.group(1)})
    assert out.status_code == 200
    onward = re.search(r'content="0;url=([^"]+)"', out.text)
    assert onward is not None
    end_session = html.unescape(onward.group(1))
    assert end_session.startswith(f"{site.psc.issuer}/session/end?")
    assert "id_token_hint=" in end_session
    confirm = _follow(browser, browser.get(end_session))
    form = re.search(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', confirm.text, re.S)
    assert form is not None, confirm.text
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(2)))
    done = browser.post(
        f"{site.psc.issuer}{urlsplit(form.group(1)).path}",
        data={**fields, "logout": "yes"},
    )
    done = _follow(browser, done, until=site.url)
    assert _next(done).startswith(f"{site.url}/portail?deconnecte=1&state=")
    # Logged out at dmp ...
    assert browser.get(f"{site.url}/portail/pro").status_code in (303, 401)
    # ... and at the provider: a new login asks for the login again.
    again = browser.get(f"{site.url}/portail/connexion/psc")
    asked = _follow(browser, browser.get(_next(again)))
    assert 'name="login"' in asked.text


def test_the_login_page_offers_the_configured_providers(site: Site) -> None:
    page = httpx.get(f"{site.url}/portail/connexion")
    assert "Se connecter avec Pro Santé Connect" in page.text
    assert "S'identifier avec FranceConnect" in page.text
    assert httpx.get(f"{site.url}/portail/connexion/inconnu").status_code == 404


def test_both_dances_in_chromium(site: Site, chromium: Any) -> None:
    """A person's way through, in Debian's Chromium: the buttons, the provider's page, back
    logged in (the session cookie, SameSite=Strict, arrives through the page that leads on),
    logged out at both ends; then the holder through FranceConnect."""
    checker = Checker("external-login")
    context = chromium.new_context()
    page = context.new_page()
    checker.watch(page)
    try:
        page.goto(f"{site.url}/portail/connexion")
        checker.check(page, "connexion-fournisseurs")
        page.get_by_role(
            "link", name="Se connecter avec Pro Santé Connect (carte CPS ou e-CPS)"
        ).click()
        page.fill("#login", "docteur")
        page.get_by_role("button", name="Valider").click()
        page.wait_for_url(f"{site.url}/portail/pro")
        checker.check(page, "pro-via-psc")
        assert "PRO TEST, médecin" in page.content()
        page.get_by_role("button", name="Se déconnecter").click()
        page.get_by_role("button", name="Se déconnecter").click()  # the provider's page
        page.wait_for_url(re.compile(r".*/portail\?deconnecte=1.*"))
        page.goto(f"{site.url}/portail/connexion")
        page.get_by_role("link", name="S'identifier avec FranceConnect").click()
        page.fill("#login", "titulaire")
        page.get_by_role("button", name="Valider").click()
        page.wait_for_url(f"{site.url}/portail/dossier")
        checker.check(page, "dossier-via-franceconnect")
        assert "titulaire du dossier" in page.content()
    finally:
        context.close()
