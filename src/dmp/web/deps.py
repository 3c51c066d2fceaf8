"""The portal's front door: the session behind the cookie, and the gate bound to its grant.

Pages get a :class:`Page` (the gate for the logged-in person, their session, the portal's
authentication service); the access rules, scopes and purpose of use are the gate's, exactly as
for the APIs. A professional's access mode (emergency) is a choice recorded in their session for
one patient, and the grant then carries it, bound to that patient.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request

from dmp.access.audit import RequestContext
from dmp.access.record_access import RecordAccess
from dmp.auth.external import ExternalLogins
from dmp.auth.portal import FULL, Portal, Session
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins
from dmp.errors import BadRequest, Forbidden, NotAuthenticated
from dmp.front.deps import client_address_of
from dmp.identity.actor import ActorKind
from dmp.logs import request_id_var
from dmp.web.render import PRE_COOKIE, SESSION_COOKIE


def portal(request: Request) -> Portal:
    service: Portal = request.app.state.portal
    return service


def external_logins(request: Request) -> ExternalLogins:
    service: ExternalLogins = request.app.state.external_logins
    return service


def address(request: Request) -> str:
    """The client's address (``X-Forwarded-For`` believed only from DMP_TRUSTED_PROXIES)."""
    return client_address_of(request)


def any_session(request: Request, service: Annotated[Portal, Depends(portal)]) -> Session | None:
    """The session the cookie names, at any stage (None when there is none)."""
    found = service.session(request.cookies.get(SESSION_COOKIE))
    request.state.portal_session = found if found is not None and found.stage == FULL else None
    return found


@dataclass(frozen=True)
class Page:
    gate: RecordAccess
    session: Session
    portal: Portal
    address: str
    ctx: RequestContext

    @property
    def kind(self) -> ActorKind:
        return self.session.kind

    def current_patient(self) -> Ins | None:
        d = self.session.data
        if self.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
            return Ins(d["ins_oid"], d["ins_value"])
        if d.get("patient_value"):
            return Ins(d["patient_oid"], d["patient_value"])
        return None


def page_gate(
    request: Request,
    service: Annotated[Portal, Depends(portal)],
    session: Annotated[Session | None, Depends(any_session)],
) -> Page:
    """The gate for the logged-in person (a professional's emergency mode included)."""
    if session is None or session.stage != FULL:
        raise NotAuthenticated("votre session a expiré : reconnectez-vous")
    ctx = RequestContext(request_id=request_id_var.get(), client_addr=address(request))
    purpose = PurposeOfUse.NORMAL
    bound: Ins | None = None
    if session.kind is ActorKind.PROFESSIONAL and session.data.get("mode"):
        purpose = PurposeOfUse(session.data["mode"])
        if session.data.get("patient_value"):
            bound = Ins(session.data["patient_oid"], session.data["patient_value"])
    gate = service.gate(session, ctx, purpose=purpose, patient=bound)
    return Page(gate, session, service, address(request), ctx)


page_gate.__dmp_gate__ = True  # type: ignore[attr-defined]  # the route walk recognises gates


def check_csrf(request: Request, session: Session | None, sent: str) -> None:
    """Every form carries the session's token (before login, the one in its own cookie)."""
    expected = session.csrf if session is not None else request.cookies.get(PRE_COOKIE, "")
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise BadRequest("le formulaire a expiré : rechargez la page et recommencez")


def posted_page(
    request: Request,
    pg: Annotated[Page, Depends(page_gate)],
    csrf: Annotated[str, Form()] = "",
) -> Page:
    """A form sent by a logged-in person: its CSRF token checked."""
    check_csrf(request, pg.session, csrf)
    return pg


posted_page.__dmp_gate__ = True  # type: ignore[attr-defined]


def require(pg: Page, *kinds: ActorKind) -> None:
    if pg.kind not in kinds:
        raise Forbidden("cette page n'est pas destinée à votre profil")


def pre_token(request: Request) -> str:
    """The CSRF token of a form shown before login (kept in its own cookie)."""
    return request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(32)


PageDep = Annotated[Page, Depends(page_gate)]
PostDep = Annotated[Page, Depends(posted_page)]
PortalDep = Annotated[Portal, Depends(portal)]
ExternalDep = Annotated[ExternalLogins, Depends(external_logins)]
SessionDep = Annotated[Session | None, Depends(any_session)]
