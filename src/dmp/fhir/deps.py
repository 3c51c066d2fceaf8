"""FHIR request dependencies: the SMART grant, its scopes, and the gate bound to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from dmp.access.audit import RequestContext
from dmp.access.gateway import RecordAccess
from dmp.access.runtime import Runtime
from dmp.access.smart import scope_allows
from dmp.api.deps import runtime
from dmp.domain.codes import PurposeOfUse
from dmp.errors import Forbidden, NotAuthenticated
from dmp.identity.tokens import Grant, verify_grant
from dmp.logs import request_id_var


def grant(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> Grant:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("a bearer token is required (SMART Backend Services)")
    return verify_grant(token.strip(), rt.token_secret, now=rt.clock.now())


def fhir_gate(resource: str, verb: str) -> Callable[..., RecordAccess]:
    """A dependency: the access gate, once the token's scopes allow ``verb`` on ``resource``
    (SMART v2 scopes, e.g. ``user/DocumentReference.rs``). Operator tokens carry no scopes."""

    def dependency(
        request: Request,
        rt: Annotated[Runtime, Depends(runtime)],
        g: Annotated[Grant, Depends(grant)],
    ) -> RecordAccess:
        if g.scopes is not None and not scope_allows(g.scopes, resource, verb):
            raise Forbidden(
                f"the token's scopes do not allow user/{resource}.{verb}",
                reason="insufficient_scope",
            )
        purpose = PurposeOfUse(g.purpose) if g.purpose else PurposeOfUse.NORMAL
        client = request.client.host if request.client else None
        return rt.access(
            g.actor,
            purpose,
            RequestContext(request_id=request_id_var.get(), client_addr=client),
            justification=g.justification,
        )

    dependency.__name__ = f"gate_{resource}_{verb}"
    dependency.__dmp_gate__ = True  # type: ignore[attr-defined]  # recognised by the route walk
    return dependency
