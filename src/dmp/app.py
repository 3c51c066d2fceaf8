"""create_app(): wiring only (routers, middleware, error renderers)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dmp import __version__
from dmp.api import provisioning as provisioning_api
from dmp.api import records
from dmp.auth.apps import AppServer
from dmp.auth.external import ExternalLogins
from dmp.auth.portal import Portal
from dmp.auth.throttle import BearerLimit
from dmp.errors import DmpError, InvalidInput, ServiceUnavailable
from dmp.fhir import binary as fhir_binary
from dmp.fhir import document_reference as fhir_document_reference
from dmp.fhir import routes as fhir_routes
from dmp.fhir.outcome import MHD_ERROR_CODES, operation_outcome, outcome_response
from dmp.front import assumed, soap
from dmp.front.lane import HotLane, route_named
from dmp.jobs.provisioning import Provisioning
from dmp.logs import request_id_var
from dmp.runtime import UNAVAILABLE, Runtime
from dmp.server import Drain
from dmp.stats import counters
from dmp.web import apps as portal_apps
from dmp.web import auth as portal_auth
from dmp.web import dossier as portal_dossier
from dmp.web import home as portal_home
from dmp.web import pro as portal_pro
from dmp.web import static as portal_static
from dmp.web import stats as stats_web
from dmp.web.render import error_page
from dmp.web.static import PortalHeaders
from dmp.xds import routes as xds_routes

log = logging.getLogger("dmp.http")

MAX_BODY_BYTES = 32 * 1024 * 1024


class RequestLimits:
    """Request id, structured access log (route template, never the raw path), body size cap."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = {"code": 500}
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        path = str(scope.get("path", ""))
        fhir = path.startswith("/fhir")
        portal = self.max_body if path == "/portail" or path.startswith("/portail/") else 0
        # Anything that may carry patient data is never stored by a cache on the way.
        private = path.startswith(("/api/", "/fhir")) and not path.startswith(
            ("/api/stats", "/fhir/metadata")
        )
        # Text with a NUL character: refused at the door (PostgreSQL text cannot hold one, and
        # no field of ours needs one). Binary uploads (multipart, raw content) are not text.
        kind = headers.get(b"content-type", b"").lower()
        textual = b"json" in kind or b"x-www-form-urlencoded" in kind
        try:
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
                await _too_large(send, rid, fhir, portal)
                status["code"] = 413
                return
            if _has_nul(scope.get("query_string", b"")) or _has_nul(scope.get("raw_path") or b""):
                await _bad_text(send, rid, fhir)
                status["code"] = 400
                return
            received = 0
            tail = b""

            async def limited_receive() -> Message:
                nonlocal received, tail
                message = await receive()
                if message["type"] == "http.request":
                    body = message.get("body", b"")
                    received += len(body)
                    if received > self.max_body:
                        raise _BodyTooLarge()
                    if textual and _has_nul(tail + body):
                        raise _NulInText()
                    tail = body[-6:]
                return message

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                    present = {k.lower() for k, _ in message.get("headers", [])}
                    extra = [(b"x-request-id", rid.encode())]
                    if b"x-content-type-options" not in present:
                        extra.append((b"x-content-type-options", b"nosniff"))
                    if private and b"cache-control" not in present:
                        extra.append((b"cache-control", b"no-store"))
                    message["headers"] = [*message.get("headers", []), *extra]
                await send(message)

            try:
                await self.app(scope, limited_receive, send_with_id)
            except _BodyTooLarge:
                status["code"] = 413
                await _too_large(send, rid, fhir, portal)
            except _NulInText:
                status["code"] = 400
                await _bad_text(send, rid, fhir)
        finally:
            route = scope.get("route")
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "route": getattr(route, "path", "unmatched"),
                    "status": status["code"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id_var.reset(token)


class _BodyTooLarge(StarletteHTTPException):
    """Raised while the body is read; an HTTPException, so that the framework's body parsing
    lets it through to the error renderers instead of turning it into a generic 400."""

    def __init__(self) -> None:
        super().__init__(413, "the request body is too large")


class _NulInText(StarletteHTTPException):
    def __init__(self) -> None:
        super().__init__(400, "the request holds a NUL character, which no field accepts")


def _has_nul(data: bytes) -> bool:
    """A NUL character, raw, percent-encoded or as a JSON escape."""
    lowered = data.lower()
    return b"\x00" in data or b"%00" in data or b"\\u0000" in lowered


async def _bad_text(send: Send, rid: str, fhir: bool = False) -> None:
    message = "the request holds a NUL character, which no field accepts"
    if fhir:
        body = orjson.dumps(operation_outcome(400, message))
        kind = b"application/fhir+json"
    else:
        body = orjson.dumps({"error": "invalid", "message": message})
        kind = b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [(b"content-type", kind), (b"x-request-id", rid.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


_TOO_LARGE_PAGE = """<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fichier trop volumineux — Mon DMP</title>
<link rel="stylesheet" href="/portail/static/portail.css"></head><body>
<header class="entete"><p class="marque"><a href="/portail">Dossier médical partagé</a></p></header>
<main id="contenu"><h1>Envoi trop volumineux</h1>
<div class="alerte" role="alert"><p>Ce que vous avez envoyé dépasse la taille maximale \
acceptée ({limit}). Rien n'a été enregistré.</p></div>
<p>Revenez à la page précédente et choisissez un fichier plus petit (un PDF compressé, par
exemple), ou déposez-le en plusieurs documents.</p>
<p><a href="/portail">Retour à l'accueil du portail</a></p></main></body></html>"""


def _megabytes(n: int) -> str:
    """A size as people read it: 50 Mo, 1,5 Mo, 200 ko."""
    if n >= 1 << 20:
        return f"{n / (1 << 20):.3g} Mo".replace(".", ",")
    return f"{max(1, n >> 10)} ko"


async def _too_large(send: Send, rid: str, fhir: bool = False, portal_limit: int = 0) -> None:
    if fhir:
        body = orjson.dumps(operation_outcome(413, "the request body is too large"))
        kind = b"application/fhir+json"
    elif portal_limit:
        body = _TOO_LARGE_PAGE.replace("{limit}", _megabytes(portal_limit)).encode()
        kind = b"text/html; charset=utf-8"
    else:
        body = b'{"error":"too-large","message":"the request body is too large"}'
        kind = b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", kind), (b"x-request-id", rid.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _is_portal(request: Request) -> bool:
    return request.url.path == "/portail" or request.url.path.startswith("/portail/")


def _is_browser(request: Request) -> bool:
    """A person's browser asking for a page outside the APIs (a mistyped address)."""
    path = request.url.path
    return (
        not path.startswith(("/api/", "/fhir"))
        and request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
    )


def _is_fhir(request: Request) -> bool:
    return request.url.path == "/fhir" or request.url.path.startswith("/fhir/")


def _is_xds(request: Request) -> bool:
    return request.url.path == "/xds" or request.url.path.startswith("/xds/")


def _soap_fault(exc: DmpError) -> Response:
    """SOAP 1.2 over HTTP: a fault of the sender is a 400, of the server a 500; a failed
    assertion says so with WS-Security's subcode."""
    sender = exc.status < 500
    subcode = "wsse:FailedAuthentication" if exc.status == 401 else None
    return Response(
        soap.fault("Sender" if sender else "Receiver", exc.message, subcode=subcode),
        400 if exc.status in (401, 403, 404, 409, 422) else exc.status,
        headers={"Content-Type": f"{soap.SOAP_XML}; charset=UTF-8"},
    )


def _error_body(code: str, message: str, reason: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if reason:
        body["reason"] = reason
    return body


async def _fold_counts(runtime: Runtime) -> None:
    """Fold the pending statistics counts into the counters now and then (off the request
    path; reads add what is pending, so this only keeps the pending table small)."""
    while True:
        await asyncio.sleep(runtime.settings.stats_fold_seconds)
        try:
            await to_thread.run_sync(counters.fold_pending, runtime)
        except Exception:  # a database outage: the next round retries
            log.warning("folding the statistics counts failed", exc_info=True)


def create_app(
    runtime: Runtime, *, max_body: int = MAX_BODY_BYTES, hot_lane: bool = True
) -> FastAPI:
    """The service. ``hot_lane=False`` serves every route through the router (the tests
    compare the two)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The request threads (sync endpoints) match the connection pool: no request waits
        # for a connection, and no more threads contend for the interpreter than can work.
        to_thread.current_default_thread_limiter().total_tokens = runtime.settings.db_pool_size
        folding = asyncio.create_task(_fold_counts(runtime))
        try:
            yield
        finally:
            folding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await folding

    app = _App(
        title="dmp",
        version=__version__,
        summary="Shared medical record (DMP)",
        lifespan=lifespan,
    )
    if hot_lane:
        app.take_hot_lane()
    app.state.runtime = runtime
    app.state.portal = Portal(runtime)
    app.state.external_logins = ExternalLogins(runtime, app.state.portal)
    app.state.app_server = AppServer(runtime)
    app.state.provisioning = Provisioning(runtime)
    app.state.bearer_limit = BearerLimit(runtime)
    app.state.trusted_proxies = runtime.settings.trusted_proxies
    app.state.xds_repository = runtime.settings.xds_repository_id
    app.state.stats_pages = stats_web.PageCache()

    @app.exception_handler(DmpError)
    async def _dmp_error(request: Request, exc: DmpError) -> Response:
        if exc.status >= 500 and exc.status != 503:
            log.error("request failed", extra={"error_type": type(exc).__name__})
        if exc.status == 503:
            log.warning("database unavailable", extra={"error_type": type(exc).__name__})
        if _is_portal(request):
            return error_page(request, exc)
        if _is_xds(request):
            response = _soap_fault(exc)
            if getattr(exc, "retry_after", None) is not None:
                response.headers["Retry-After"] = str(exc.retry_after)  # type: ignore[attr-defined]
            return response
        if request.url.path.startswith("/api/records/") and "oid" not in request.query_params:
            exc = assumed.explained(exc, "no ?oid= was given")
        retry = getattr(exc, "retry_after", None)
        if _is_fhir(request):
            details = exc.reason if exc.reason in MHD_ERROR_CODES else None
            code = "not-supported" if details == "FHIRDocumentNotSupported" else None
            response = outcome_response(exc.status, exc.message, details=details, code=code)
        else:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            response = JSONResponse(
                _error_body(exc.code, exc.message, exc.reason), exc.status, headers=headers
            )
        if retry is not None:
            response.headers["Retry-After"] = str(retry)
        return response

    async def _pool_exhausted(request: Request, exc: Exception) -> Response:
        return await _dmp_error(
            request, ServiceUnavailable("the service is busy for a moment; retry shortly")
        )

    for unavailable in UNAVAILABLE:
        app.add_exception_handler(unavailable, _pool_exhausted)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
            for e in exc.errors()[:10]
        ]
        if _is_fhir(request):
            return outcome_response(400, "; ".join(problems))
        if _is_portal(request):
            return error_page(request, InvalidInput("; ".join(problems)))
        return JSONResponse(_error_body("invalid", "; ".join(problems)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_fhir(request):
            return outcome_response(exc.status_code, str(exc.detail))
        if _is_xds(request):
            error = DmpError(str(exc.detail))
            error.status = exc.status_code
            return _soap_fault(error)
        if _is_portal(request) or _is_browser(request):
            french = {
                413: f"ce que vous avez envoyé dépasse la taille maximale acceptée "
                f"({_megabytes(max_body)}) ; rien n'a été enregistré : choisissez un fichier "
                "plus petit",
                400: "le texte envoyé contient un caractère invisible (nul) qu'aucun champ "
                "n'accepte ; rien n'a été enregistré",
                404: "cette page n'existe pas",
                405: "cette page ne s'utilise pas ainsi : revenez au formulaire",
            }.get(exc.status_code)
            error = DmpError(str(exc.detail), french=french)
            error.status = exc.status_code
            return error_page(request, error)
        code = {400: "invalid", 413: "too-large"}.get(exc.status_code, "http")
        return JSONResponse({"error": code, "message": str(exc.detail)}, exc.status_code)

    app.state.drain = Drain(runtime.settings.drain_seconds)

    @app.get("/health", name="health")
    def health() -> JSONResponse:
        """For load balancers: 503 once the node is draining (it still serves meanwhile)."""
        if app.state.drain.started.is_set():
            return JSONResponse({"status": "draining", "version": __version__}, 503)
        info = runtime.database_info()
        return JSONResponse({"status": "ok", "version": __version__, "database": info})

    app.include_router(records.router)
    app.include_router(provisioning_api.router)
    app.include_router(fhir_routes.router)
    app.include_router(xds_routes.router)
    app.include_router(stats_web.router)
    for portal_router in (
        portal_home,
        portal_static,
        portal_auth,
        portal_dossier,
        portal_pro,
        portal_apps,
    ):
        app.include_router(portal_router.router)
    app.add_middleware(PortalHeaders)
    app.add_middleware(RequestLimits, max_body=max_body)
    return app


class _App(FastAPI):
    """FastAPI with the hot lane (``dmp.front.lane``) where the router stands: inside the
    exception handlers and every middleware, so that its requests are handled, logged and
    limited exactly as the router's."""

    lane: HotLane | None = None

    def take_hot_lane(self) -> None:
        """Built here, with the application: a lane route whose parameters the lane cannot
        serve fails the start, not the first request."""
        under_fhir = fhir_routes.router.prefix  # where the resource routers are included
        self.lane = HotLane(
            self.router,
            [
                (under_fhir, route_named(fhir_document_reference.router, "fhir_docref_search")),
                (under_fhir, route_named(fhir_binary.router, "fhir_binary_read")),
                ("", route_named(fhir_routes.router, "fhir_transaction")),  # its path holds /fhir
            ],
        )

    def build_middleware_stack(self) -> ASGIApp:
        if self.lane is None:
            return super().build_middleware_stack()
        router = self.router
        self.router = self.lane  # type: ignore[assignment]  # for the duration of the build only
        try:
            return super().build_middleware_stack()
        finally:
            self.router = router


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving: settings from DMP_*."""
    from dmp.config import load_settings
    from dmp.logs import configure

    settings = load_settings()
    configure(settings.log_level)
    app = create_app(Runtime.start(settings, migrate=False))
    app.state.drain.install()  # `dmp serve` only: SIGTERM drains first (DMP_DRAIN_SECONDS)
    settle_collector()
    return app


def settle_collector() -> None:
    """Take what the process built to serve (modules, models, the FHIR validators, compiled
    statements: about 200,000 objects) out of the cyclic garbage collector's reach. The
    collector's full passes walked them all, about 110 ms each, a few times in a 15-second
    load run, and every request in flight waited: that was the p99 of a consultation on SQLite
    (issue 26, docs/performance.md). What is frozen is still freed when no longer referenced;
    it only leaves the cycle search, which the startup objects never needed."""
    gc.collect()
    gc.freeze()
