"""Request dependencies: the authenticated actor and the access gate bound to it.

Every route that touches patient data depends on :func:`gate`; a test walks the routes and fails
when one does not (routes that need no actor are listed in ``PUBLIC_ROUTES``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from dmp.access.audit import RequestContext
from dmp.access.gateway import RecordAccess
from dmp.access.runtime import Runtime
from dmp.errors import NotAuthenticated
from dmp.identity.actor import Actor
from dmp.identity.tokens import verify_token
from dmp.logs import request_id_var

# Route names that serve no patient data and need no actor.
PUBLIC_ROUTES = frozenset(
    {"health", "openapi", "swagger_ui_html", "swagger_ui_redirect", "redoc_html"}
)


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def actor(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> Actor:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("a bearer token is required")
    return verify_token(token.strip(), rt.token_secret, now=rt.clock.now())


def gate(
    request: Request,
    rt: Annotated[Runtime, Depends(runtime)],
    who: Annotated[Actor, Depends(actor)],
) -> RecordAccess:
    client = request.client.host if request.client else None
    return rt.access(who, ctx=RequestContext(request_id=request_id_var.get(), client_addr=client))


Gate = Annotated[RecordAccess, Depends(gate)]
