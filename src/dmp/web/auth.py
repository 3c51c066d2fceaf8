"""Logging in and out, and activating an account (pages open to anyone)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from dmp.auth.external import LABELS, ExternalLogins
from dmp.auth.portal import ACTIVATE, ENROL, FULL, SECOND, Session
from dmp.domain.ins import OID_NIA, OID_NIR, Ins
from dmp.errors import DmpError, NotAuthenticated
from dmp.front.deps import provisioning_service
from dmp.identity.actor import ActorKind
from dmp.jobs.provisioning import Provisioning
from dmp.web.deps import ExternalDep, PortalDep, SessionDep, address, check_csrf, pre_token
from dmp.web.render import (
    DEVICE_COOKIE,
    PRE_COOKIE,
    RESUME_COOKIE,
    SESSION_COOKIE,
    french_message,
    page,
    redirect,
)

DEVICE_DAYS = 400
OIDC_COOKIE = "dmp_oidc"

router = APIRouter(prefix="/portail", include_in_schema=False)

Text = Annotated[str, Form()]


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def with_session(request: Request, response: Response, session: Session) -> Response:
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/portail",
    )
    if session.device:
        # The device the account logged in from: a stranger's failures never lock it out.
        response.set_cookie(
            DEVICE_COOKIE,
            session.device,
            max_age=DEVICE_DAYS * 86400,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
            path="/portail",
        )
    return response


def _device(request: Request) -> str | None:
    return request.cookies.get(DEVICE_COOKIE)


def _form(request: Request, template: str, *, status: int = 200, **ctx: Any) -> Response:
    """A form shown before login, with its CSRF token (set in its own cookie)."""
    token = pre_token(request)
    response = page(request, template, status=status, csrf=token, **ctx)
    response.set_cookie(
        PRE_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/portail",
    )
    return response


def after_login(request: Request, kind: ActorKind) -> str:
    """Where a completed login leads: an app's authorization request the holder was asked to
    log in for, else the person's home page."""
    waiting = request.cookies.get(RESUME_COOKIE, "")
    if kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE) and waiting.startswith(
        "/portail/autoriser?"
    ):
        return waiting
    return home_of(kind)


def home_of(kind: ActorKind) -> str:
    if kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
        return "/portail/dossier"
    if kind is ActorKind.DESK_AGENT:
        return "/portail/guichet"
    return "/portail/pro"


@router.get("", name="portal_home", response_class=HTMLResponse)
def home(request: Request, session: SessionDep) -> Response:
    if session is not None and session.stage == FULL:
        return redirect(home_of(session.kind))
    return page(request, "accueil.html", session=None)


def _providers(logins: ExternalLogins) -> list[tuple[str, str]]:
    """The identity providers offered on the login page: (path name, label)."""
    return [(name, LABELS[name]) for name in logins.providers]


@router.get("/connexion", name="portal_login", response_class=HTMLResponse)
def login_form(request: Request, logins: ExternalDep) -> Response:
    return _form(request, "connexion.html", providers=_providers(logins))


@router.get("/connexion/code", name="portal_second_factor", response_class=HTMLResponse)
def second_factor_form(request: Request, session: SessionDep) -> Response:
    if session is None or session.stage != SECOND:
        return redirect("/portail/connexion")
    return page(request, "code.html", csrf=session.csrf)


@router.post("/connexion/code", name="portal_second_factor_post", response_class=HTMLResponse)
def second_factor(
    request: Request, portal: PortalDep, session: SessionDep, code: Text = "", csrf: Text = ""
) -> Response:
    if session is None or session.stage != SECOND:
        return redirect("/portail/connexion")
    check_csrf(request, session, csrf)
    try:
        full = portal.second_factor(session, code, address(request), _device(request))
    except NotAuthenticated as exc:
        return page(request, "code.html", status=401, csrf=session.csrf, error=french_message(exc))
    return with_session(request, redirect(after_login(request, full.kind)), full)


@router.post("/deconnexion", name="portal_logout", response_class=HTMLResponse)
def logout(
    request: Request,
    portal: PortalDep,
    logins: ExternalDep,
    session: SessionDep,
    csrf: Text = "",
) -> Response:
    """The session ends here; a login through a provider ends there too (RP-initiated
    logout), which sends the browser back to the portal."""
    elsewhere = None
    if session is not None:
        check_csrf(request, session, csrf)
        elsewhere = logins.logout_url(session)
        portal.logout(session.token)
    response: Response
    if elsewhere:
        # A page of ours leads on to the provider: the portal's CSP (form-action 'self')
        # forbids a form's redirect to another site.
        response = page(request, "deconnexion_externe.html", next=elsewhere)
    else:
        response = redirect("/portail?deconnecte=1")
    response.delete_cookie(SESSION_COOKIE, path="/portail")
    return response


@router.get("/activation", name="portal_activation", response_class=HTMLResponse)
def activation_form(request: Request) -> Response:
    return _form(request, "activation.html")


@router.post("/activation", name="portal_activation_post", response_class=HTMLResponse)
def activation(
    request: Request, portal: PortalDep, identifiant: Text = "", code: Text = "", csrf: Text = ""
) -> Response:
    check_csrf(request, None, csrf)
    try:
        session = portal.start_activation(identifiant, code, address(request), _device(request))
    except NotAuthenticated as exc:
        return _form(
            request,
            "activation.html",
            status=401,
            error=french_message(exc),
            identifiant=identifiant,
        )
    return with_session(request, redirect("/portail/activation/mot-de-passe"), session)


@router.get("/activation/mot-de-passe", name="portal_password", response_class=HTMLResponse)
def password_form(request: Request, session: SessionDep) -> Response:
    if session is None or session.stage != ACTIVATE:
        return redirect("/portail/activation")
    return page(request, "mot_de_passe.html", csrf=session.csrf, login=session.login)


@router.post("/activation/mot-de-passe", name="portal_password_post", response_class=HTMLResponse)
def password(
    request: Request,
    portal: PortalDep,
    session: SessionDep,
    mot_de_passe: Text = "",
    confirmation: Text = "",
    csrf: Text = "",
) -> Response:
    if session is None or session.stage != ACTIVATE:
        return redirect("/portail/activation")
    check_csrf(request, session, csrf)
    try:
        enrol = portal.set_password(session, mot_de_passe, confirmation)
    except DmpError as exc:
        return page(
            request,
            "mot_de_passe.html",
            status=exc.status,
            csrf=session.csrf,
            login=session.login,
            error=french_message(exc),
        )
    return with_session(request, redirect("/portail/activation/double-facteur"), enrol)


@router.get("/activation/double-facteur", name="portal_totp", response_class=HTMLResponse)
def totp_form(request: Request, portal: PortalDep, session: SessionDep) -> Response:
    if session is None or session.stage != ENROL:
        return redirect("/portail/activation")
    return page(request, "totp.html", csrf=session.csrf, enrolment=portal.enrolment(session))


@router.post("/activation/double-facteur", name="portal_totp_post", response_class=HTMLResponse)
def totp(
    request: Request, portal: PortalDep, session: SessionDep, code: Text = "", csrf: Text = ""
) -> Response:
    if session is None or session.stage != ENROL:
        return redirect("/portail/activation")
    check_csrf(request, session, csrf)
    try:
        full, recovery = portal.confirm_enrolment(session, code)
    except DmpError as exc:
        return page(
            request,
            "totp.html",
            status=exc.status,
            csrf=session.csrf,
            enrolment=portal.enrolment(session),
            error=french_message(exc),
        )
    response = page(
        request,
        "codes_secours.html",
        session=full,
        recovery=recovery,
        next=after_login(request, full.kind),
    )
    return with_session(request, response, full)


@router.get("/opposition", name="portal_objection", response_class=HTMLResponse)
def objection_form(request: Request) -> Response:
    return _form(request, "opposition.html")


@router.post("/opposition", name="portal_objection_post", response_class=HTMLResponse)
def objection(
    request: Request,
    service: Annotated[Provisioning, Depends(provisioning_service)],
    ins: Text = "",
    autorite: Text = "nir",
    naissance: Text = "",
    csrf: Text = "",
) -> Response:
    """Object to the opening announced by the insurer (within six weeks)."""
    check_csrf(request, None, csrf)
    oid = {"nir": OID_NIR, "nia": OID_NIA}.get(autorite, OID_NIR)
    try:
        born = date.fromisoformat(naissance)
    except ValueError:
        return _form(
            request,
            "opposition.html",
            status=422,
            error="La date de naissance doit être au format AAAA-MM-JJ.",
        )
    message = service.object(Ins(oid, "".join(ins.split())), born, address(request))
    return page(request, "opposition_faite.html", message=message)


# Registered after /connexion/code: "/connexion/{provider}" would otherwise take it.
@router.get("/connexion/{provider}", name="portal_oidc_start", response_class=HTMLResponse)
def provider_login(request: Request, provider: str, logins: ExternalDep) -> Response:
    """Off to Pro Santé Connect or FranceConnect. The state goes in a cookie of this browser
    (SameSite=Lax: it must come back with the provider's top-level redirect)."""
    try:
        started = logins.start(provider, address(request))
    except NotAuthenticated as exc:
        return _form(
            request,
            "connexion.html",
            status=502,
            providers=_providers(logins),
            error=french_message(exc),
        )
    response = redirect(started.url)
    response.set_cookie(
        OIDC_COOKIE,
        started.state,
        max_age=600,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path=f"/portail/connexion/{provider}",
    )
    return response


@router.get("/connexion/{provider}/retour", name="portal_oidc_return", response_class=HTMLResponse)
def provider_return(
    request: Request,
    provider: str,
    logins: ExternalDep,
    state: str = "",
    code: str = "",
    error: str = "",
) -> Response:
    """Back from the provider: logged in, or a French page saying why not."""
    try:
        session = logins.finish(
            provider,
            state=state,
            browser_state=request.cookies.get(OIDC_COOKIE),
            code=code,
            error=error,
            address=address(request),
        )
    except NotAuthenticated as exc:
        response = _form(
            request,
            "connexion.html",
            status=401,
            providers=_providers(logins),
            error=french_message(exc),
        )
    else:
        # A page of ours leads on: the session cookie is SameSite=Strict, so a redirect
        # chain started by the provider's site would arrive without it.
        response = with_session(
            request,
            page(
                request,
                "bienvenue_externe.html",
                session=session,
                next=after_login(request, session.kind),
            ),
            session,
        )
    response.delete_cookie(OIDC_COOKIE, path=f"/portail/connexion/{provider}")
    return response


@router.post("/connexion", name="portal_login_post", response_class=HTMLResponse)
def login(
    request: Request,
    portal: PortalDep,
    identifiant: Text = "",
    mot_de_passe: Text = "",
    csrf: Text = "",
) -> Response:
    check_csrf(request, None, csrf)
    try:
        session = portal.login(identifiant, mot_de_passe, address(request), _device(request))
    except NotAuthenticated as exc:
        return _form(
            request,
            "connexion.html",
            status=401,
            error=french_message(exc),
            identifiant=identifiant,
        )
    return with_session(request, redirect("/portail/connexion/code"), session)
