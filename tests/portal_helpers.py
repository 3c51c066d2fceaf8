"""Driving the portals over HTTP in tests: forms, CSRF tokens, activation and login."""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import timedelta

import pyotp
from fastapi.testclient import TestClient
from httpx2 import Response

from dmp.auth.portal import Portal
from dmp.clock import FixedClock
from dmp.domain.ins import Ins
from dmp.identity.actor import ActorKind, system_actor
from dmp.runtime import Runtime
from tests.factories import GP, ins_for, new_document, open_record, pro

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_SECRET = re.compile(r'id="cle-totp">([A-Z2-7]+)<')
_RECOVERY = re.compile(r"<li><code>([A-Z0-9-]+)</code></li>")
PASSWORD = "une phrase de passe assez longue"


def csrf_of(page: Response) -> str:
    found = _CSRF.search(page.text)
    assert found, f"no CSRF token on {page.url}"
    return html.unescape(found.group(1))


def post_form(client: TestClient, url: str, page: Response, **fields: str) -> Response:
    """Send a form as the page that shows it would (its CSRF token included)."""
    return client.post(url, data={"csrf": csrf_of(page), **fields}, follow_redirects=True)


def get(client: TestClient, url: str) -> Response:
    return client.get(url, follow_redirects=True)


class Account:
    """A person with a portal account: the TOTP secret and recovery codes seen at enrolment."""

    def __init__(self, login: str) -> None:
        self.login = login
        self.secret = ""
        self.recovery: list[str] = []

    def totp(self, clock: FixedClock) -> str:
        return pyotp.TOTP(self.secret).at(clock.now())


def activate(client: TestClient, clock: FixedClock, login: str, code: str) -> Account:
    """Activation: identifier and code, a password, TOTP enrolment; returns logged in."""
    form = get(client, "/portail/activation")
    page = post_form(client, "/portail/activation", form, identifiant=login, code=code)
    assert "Choisir un mot de passe" in page.text, page.text
    page = post_form(
        client,
        "/portail/activation/mot-de-passe",
        page,
        mot_de_passe=PASSWORD,
        confirmation=PASSWORD,
    )
    found = _SECRET.search(page.text)
    assert found, page.text
    account = Account(login)
    account.secret = found.group(1)
    page = post_form(client, "/portail/activation/double-facteur", page, code=account.totp(clock))
    assert "Votre compte est activé" in page.text, page.text
    account.recovery = _RECOVERY.findall(page.text)
    return account


def login(client: TestClient, clock: FixedClock, account: Account) -> Response:
    """Password then TOTP (the clock moves to a fresh 30-second step: codes never replay)."""
    clock.advance(timedelta(seconds=30))
    form = get(client, "/portail/connexion")
    page = post_form(
        client, "/portail/connexion", form, identifiant=account.login, mot_de_passe=PASSWORD
    )
    assert "Code de vérification" in page.text, page.text
    return post_form(client, "/portail/connexion/code", page, code=account.totp(clock))


def logout(client: TestClient) -> None:
    page = get(client, "/portail")
    if 'action="/portail/deconnexion"' in page.text:
        post_form(client, "/portail/deconnexion", page)
    client.cookies.clear()


def minor_with_a_representative(
    rt: Runtime, clock: FixedClock, i: int, rep: str
) -> tuple[Ins, str]:
    """A minor's record with a legal representative (and their portal code), one document for
    everyone ("Carnet de vaccination") and one hidden from representatives ("Consultation
    confidentielle")."""
    ins = ins_for(i)
    open_record(rt, ins)
    rt.access(system_actor("op")).add_representative(
        ins, rep, "PARENT EXEMPLE", "parent", minor=True
    )
    gp = rt.access(pro(rt, GP))
    gp.deposit_document(ins, new_document(clock.now(), title="Carnet de vaccination"), b"v")
    hidden = new_document(clock.now(), title="Consultation confidentielle")
    gp.deposit_document(ins, dataclasses.replace(hidden, invisible_representatives=True), b"c")
    code, _ = Portal(rt).invite(kind=ActorKind.REPRESENTATIVE, login=rep, by="test", ins=ins)
    return ins, code


def sample_pdf(text: str) -> bytes:
    """A one-line PDF, as a professional would deposit."""
    from fpdf import FPDF

    doc = FPDF()
    doc.add_page()
    doc.set_font("Helvetica", size=12)
    doc.cell(0, 10, text)
    return bytes(doc.output())
