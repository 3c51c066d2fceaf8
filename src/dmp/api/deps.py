"""Request dependencies: the authenticated actor and the access gate bound to it.

Every route that touches patient data depends on :func:`gate`; a test walks the routes and fails
when one does not (routes that need no actor are listed in ``PUBLIC_ROUTES``).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Request

from dmp.access.audit import RequestContext
from dmp.access.gateway import RecordAccess
from dmp.access.runtime import Runtime
from dmp.domain.codes import PurposeOfUse
from dmp.errors import InvalidInput, NotAuthenticated
from dmp.identity.actor import Actor
from dmp.identity.tokens import verify_token
from dmp.logs import request_id_var

# Route names that serve no patient data and need no actor.
# The statistics are aggregates with small counts suppressed: public by design.
PUBLIC_ROUTES = frozenset(
    {
        "health",
        "openapi",
        "swagger_ui_html",
        "swagger_ui_redirect",
        "redoc_html",
        "stats_page",
        "stats_json",
        "fhir_metadata",
        "fhir_token",
    }
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


PURPOSE_HEADER = "x-dmp-purpose-of-use"
JUSTIFICATION_HEADER = "x-dmp-justification"


def gate(
    request: Request,
    rt: Annotated[Runtime, Depends(runtime)],
    who: Annotated[Actor, Depends(actor)],
) -> RecordAccess:
    """The access gate for this request. The access mode (normal, bris_de_glace, centre_15) and
    an emergency justification come with the request, as the VIHF assertion carries them."""
    client = request.client.host if request.client else None
    raw = request.headers.get(PURPOSE_HEADER, PurposeOfUse.NORMAL.value).strip().lower()
    try:
        purpose = PurposeOfUse(raw)
    except ValueError:
        modes = ", ".join(p.value for p in PurposeOfUse)
        raise InvalidInput(
            f"unknown purpose of use {raw[:40]!r}; expected one of {modes}"
        ) from None
    # Percent-encoded UTF-8, since HTTP header values are ASCII.
    raw_justification = request.headers.get(JUSTIFICATION_HEADER)
    justification = unquote(raw_justification) if raw_justification else None
    return rt.access(
        who,
        purpose,
        RequestContext(request_id=request_id_var.get(), client_addr=client),
        justification=justification,
    )


Gate = Annotated[RecordAccess, Depends(gate)]


gate.__dmp_gate__ = True  # type: ignore[attr-defined]  # the route walk recognises gates by it
