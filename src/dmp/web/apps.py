"""Apps the holder allows: the consent page of the authorization server (SMART App Launch), and
the holder's list of apps with their last access and a way to withdraw each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from dmp.auth.apps import AppServer, RedirectError, scope_words
from dmp.errors import BadRequest, Forbidden
from dmp.front.deps import app_server, fhir_base
from dmp.identity.actor import ActorKind
from dmp.web import labels
from dmp.web.auth import Text
from dmp.web.deps import PageDep, PostDep, SessionDep, require
from dmp.web.render import RESUME_COOKIE, page, redirect

router = APIRouter(prefix="/portail", include_in_schema=False)
HOLDER_SIDE = (ActorKind.PATIENT, ActorKind.REPRESENTATIVE)
# The authorization request's parameters, carried by the consent form.
PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "aud",
)

Apps = Annotated[AppServer, Depends(app_server)]


def _leave(request: Request, location: str) -> Response:
    """Back to the app through a page of ours (the CSP's form-action 'self' forbids a
    form's redirect to another site); the request kept for a login is done with."""
    response = page(request, "application_retour.html", next=location)
    response.delete_cookie(RESUME_COOKIE, path="/portail")
    return response


@router.get("/autoriser", name="portal_app_authorize", response_class=HTMLResponse)
def authorize(request: Request, server: Apps, session: SessionDep) -> Response:
    """The authorization endpoint: the app's request checked, then the consent page for the
    holder (logged in first if need be; the request is kept in a cookie meanwhile)."""
    params = {k: request.query_params.get(k, "") for k in PARAMS}
    try:
        wanted = server.check_request(params, fhir_base(request))
    except RedirectError as back:
        return redirect(back.location)
    if session is None or session.stage != "full":
        response = page(request, "application_connexion.html", app=wanted)
        response.set_cookie(
            RESUME_COOKIE,
            request.url.path + "?" + request.url.query,
            max_age=600,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/portail",
        )
        return response
    if session.kind not in HOLDER_SIDE:
        raise Forbidden(
            "seul le titulaire du dossier (ou son représentant légal) autorise une application"
        )
    return page(
        request,
        "application_consentement.html",
        session=session,
        app=wanted,
        words=wanted.words(),
        params=params,
        csrf=session.csrf,
    )


@router.post("/autoriser", name="portal_app_decide", response_class=HTMLResponse)
def decide(
    request: Request,
    pg: PostDep,
    server: Apps,
    decision: Text = "",
    response_type: Annotated[str, Form()] = "",
    client_id: Annotated[str, Form()] = "",
    redirect_uri: Annotated[str, Form()] = "",
    scope: Annotated[str, Form()] = "",
    state: Annotated[str, Form()] = "",
    code_challenge: Annotated[str, Form()] = "",
    code_challenge_method: Annotated[str, Form()] = "",
    aud: Annotated[str, Form()] = "",
) -> Response:
    """The holder's answer: allowed (the gate records it and the code), or refused."""
    require(pg, *HOLDER_SIDE)
    params = {
        "response_type": response_type,
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": code_challenge_method,
        "aud": aud,
    }
    try:
        wanted = server.check_request(params, fhir_base(request))
    except RedirectError as back:
        return _leave(request, back.location)
    if decision == "refuser":
        return _leave(request, server.refusal(wanted))
    if decision != "autoriser":
        raise BadRequest("choisissez « Autoriser » ou « Refuser »")
    ins = pg.current_patient()
    assert ins is not None
    return _leave(request, server.approve(pg.gate, ins, wanted))


@router.get("/dossier/applications", name="record_apps", response_class=HTMLResponse)
def allowed(request: Request, pg: PageDep) -> Response:
    require(pg, *HOLDER_SIDE)
    ins = pg.current_patient()
    assert ins is not None
    found = pg.gate.allowed_apps(ins)
    return page(
        request,
        "applications.html",
        session=pg.session,
        apps=found,
        words={a.id: scope_words(a.scopes) for a in found},
        datetime_fr=labels.datetime_fr,
        withdrawn=request.query_params.get("retiree") == "1",
    )


@router.post("/dossier/applications/retirer", name="record_app_withdraw")
def withdraw(pg: PostDep, autorisation: Text = "") -> Response:
    require(pg, *HOLDER_SIDE)
    ins = pg.current_patient()
    assert ins is not None
    pg.gate.withdraw_app(ins, autorisation[:64])
    return redirect("/portail/dossier/applications?retiree=1")
