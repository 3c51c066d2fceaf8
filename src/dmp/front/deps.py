"""The one front door: every request that touches patient data, through ``/api`` or ``/fhir``,
gets its gate from :func:`gate`, bound to the grant its bearer token carries.

The grant (actor, SMART scopes, purpose of use, justification, and the patient an emergency grant
is bound to) comes from the authenticated token only: the gate enforces scopes, purpose and rules
for every action, whichever API it came through. A test walks the routes and fails when one
reaches patient data without this dependency (routes that need no actor are in
``PUBLIC_ROUTES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from anyio import to_thread
from fastapi import Depends, Request

from dmp.access.audit import RequestContext
from dmp.access.record_access import RecordAccess
from dmp.auth import vihf
from dmp.auth.apps import AppServer
from dmp.auth.smart import TokenEndpoint
from dmp.auth.throttle import BearerLimit
from dmp.domain.ins import Ins
from dmp.domain.net import client_address
from dmp.errors import BadRequest, NotAuthenticated
from dmp.front import soap
from dmp.front.soap import SoapMessage
from dmp.identity.tokens import Grant, TokenExpired, verify_grant
from dmp.jobs.provisioning import Provisioning
from dmp.logs import request_id_var
from dmp.runtime import Runtime
from dmp.stats.figures import PublicStatistics

# Route names that serve no patient data and need no actor.
# The statistics are aggregates with small counts suppressed: public by design.
PUBLIC_ROUTES = frozenset(
    {
        "health",
        "site_home",  # the front page: what the service is and its doors
        "openapi",
        "swagger_ui_html",
        "swagger_ui_redirect",
        "redoc_html",
        "stats_page",
        "stats_json",
        "stats_departement",  # the public aggregates of one département
        "fhir_metadata",
        "fhir_token",
        "fhir_token_revoke",  # an app gives up its refresh token (RFC 7009)
        "fhir_smart_configuration",  # SMART discovery: what the token endpoint takes
        "xds_wsdl",  # the XDS.b door's service description
        # The portals' pages before login (their forms carry a CSRF token); every other
        # portal page depends on the session's gate (dmp.web.deps.page_gate).
        # Objecting to an opening: the INS and the date of birth, the same answer for all.
        "provisioning_objection",
        "portal_objection",
        "portal_objection_post",
        "portal_static",
        "portal_home",
        "portal_login",
        "portal_login_post",
        "portal_oidc_start",  # off to Pro Santé Connect or FranceConnect (a state kept)
        "portal_oidc_return",
        # An app's authorization request checked against the catalogue (public data), then
        # the consent page; the decision (portal_app_decide) goes through the page's gate.
        "portal_app_authorize",  # back from the provider: the login checked, then a session
        "portal_second_factor",
        "portal_second_factor_post",
        "portal_logout",
        "portal_activation",
        "portal_activation_post",
        "portal_password",
        "portal_password_post",
        "portal_totp",
        "portal_totp_post",
    }
)

# Headers an earlier version read the access mode from. The mode is part of the authenticated
# grant now; a request still sending them is told so rather than silently served in normal mode.
_RETIRED_HEADERS = ("x-dmp-purpose-of-use", "x-dmp-justification")


async def runtime(request: Request) -> Runtime:
    """The process's runtime: for the dependencies below only. No route takes it (the route
    walk and the adapter lint check): routes get a gate or one of the narrow objects here."""
    rt: Runtime = request.app.state.runtime
    return rt


async def token_endpoint(rt: Annotated[Runtime, Depends(runtime)]) -> TokenEndpoint:
    return TokenEndpoint(rt)


async def app_server(request: Request) -> AppServer:
    """The authorization server of the apps a holder allows (token, revocation, consent)."""
    server: AppServer = request.app.state.app_server
    return server


async def public_statistics(rt: Annotated[Runtime, Depends(runtime)]) -> PublicStatistics:
    return PublicStatistics(rt)


async def provisioning_service(request: Request) -> Provisioning:
    """Objections to an opening (public; rate-limited per address inside)."""
    service: Provisioning = request.app.state.provisioning
    return service


def fhir_base(request: Request) -> str:
    """The FHIR API's base address as this request reached the service (a SMART app's
    ``aud`` is checked against it)."""
    return str(request.base_url).rstrip("/") + "/fhir"


def client_address_of(request: Request) -> str:
    """The client's address: the peer's, or, when the peer is one of DMP_TRUSTED_PROXIES, the
    one its ``X-Forwarded-For`` names (``dmp.domain.net``)."""
    trusted: str = getattr(request.app.state, "trusted_proxies", "")
    return client_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        trusted,
    )


async def grant(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> Grant:
    """The grant a bearer token carries. Tokens that fail are counted per address, for every
    process together: an address over the limit is refused (429) before any verification."""
    bearer: BearerLimit = request.app.state.bearer_limit
    address = client_address_of(request)
    bearer.check(address)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("a bearer token is required")
        if any(h in request.headers for h in _RETIRED_HEADERS):
            raise BadRequest(
                "the purpose of use and its justification come from the token (SMART client "
                "assertion or `dmp token issue --purpose`), not from request headers"
            )
        verified = verify_grant(token.strip(), rt.token_secret, now=rt.clock.now())
    except TokenExpired:
        raise  # signed here: not a guess, so not counted against the address
    except NotAuthenticated:
        await to_thread.run_sync(bearer.failed, address)  # 429 once over the limit
        raise
    if verified.authorization is not None:
        # An app the holder allowed: its last access, for the holder's list of apps (whether
        # the authorization still holds is the gate's to check, at every action).
        server: AppServer = request.app.state.app_server
        await to_thread.run_sync(server.seen, verified.authorization)
    return verified


async def gate(
    request: Request,
    rt: Annotated[Runtime, Depends(runtime)],
    g: Annotated[Grant, Depends(grant)],
) -> RecordAccess:
    """The access gate for this request, bound to its grant."""
    client = client_address_of(request)
    return rt.gate(g, RequestContext(request_id=request_id_var.get(), client_addr=client))


Gate = Annotated[RecordAccess, Depends(gate)]


gate.__dmp_gate__ = True  # type: ignore[attr-defined]  # the route walk recognises gates by it


@dataclass(frozen=True)
class SoapCall:
    """An XDS.b request: its message, and the gate bound to its VIHF assertion's grant."""

    message: SoapMessage
    access: RecordAccess
    patient: Ins | None  # the record the assertion names (xacml:resource:resource-id)


async def soap_gate(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> SoapCall:
    """The one front door of the SOAP adapter: the message parsed, its VIHF assertion verified
    (signature, window, replay, attributes -> the grant the FHIR door would build), the gate.
    Failed assertions are counted per address as failed bearer tokens are."""
    bearer: BearerLimit = request.app.state.bearer_limit
    address = client_address_of(request)
    bearer.check(address)
    message = soap.parse(request.headers.get("content-type", ""), await request.body())
    try:
        checked = await to_thread.run_sync(vihf.verify, rt, message.security)
    except NotAuthenticated:
        await to_thread.run_sync(bearer.failed, address)
        raise
    ctx = RequestContext(request_id=request_id_var.get(), client_addr=address)
    return SoapCall(message, rt.gate(checked.grant, ctx), checked.patient)


soap_gate.__dmp_gate__ = True  # type: ignore[attr-defined]
