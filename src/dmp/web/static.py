"""The portal's own style sheet and script (no third-party asset, nothing fetched elsewhere),
plus the security headers every portal response carries."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dmp.errors import NotFound
from dmp.web.render import SECURITY_HEADERS

router = APIRouter(prefix="/portail", include_in_schema=False)

_FILES = {
    "portail.css": "text/css; charset=utf-8",
    "portail.js": "text/javascript; charset=utf-8",
}
_CONTENT = {
    name: (resources.files("dmp.web").joinpath("static", name).read_bytes(), kind)
    for name, kind in _FILES.items()
}


@router.get("/static/{name}", name="portal_static")
def static(name: str) -> Response:
    if name not in _CONTENT:
        raise NotFound("no such file")
    body, kind = _CONTENT[name]
    return Response(body, media_type=kind, headers={"Cache-Control": "public, max-age=3600"})


class PortalHeaders:
    """CSP without unsafe-inline, frame-ancestors 'none', nosniff, no-store (pages show patient
    data), no referrer, on every response under /portail (a response's own value wins)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/portail"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *[(k, v) for k, v in self._headers if k not in present],
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
