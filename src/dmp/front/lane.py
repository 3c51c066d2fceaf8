"""The hot lane: the busiest routes served without the framework's per-request work.

A consultation (ITI-67 search), a retrieval (Binary read) or a publication (ITI-65 transaction)
spends about a tenth of its CPU in FastAPI's routing through the included routers and its
dependency resolution, work these routes do not need: their only inputs are the request, string
path parameters and the gate (a publication reads its body itself). The lane
sits where the router sits (inside the exception handlers, inside every middleware), matches
those routes by method and path, and calls **the same endpoint** with **the same gate**, got
from the same dependencies (:func:`dmp.front.deps.grant`, :func:`dmp.front.deps.gate`): the
grant's checks, the throttling of failed tokens, the scopes, purpose and rules are those of the
front door, only the dispatch differs. Any other request goes to the router unchanged.

A plain function runs in the thread pool and an ``async`` one on the event loop, as FastAPI runs
them. A route is taken by the lane only if its parameters are exactly those (the request, path
parameters typed ``str``, one gate); anything else refuses to build, and the service with it
(``dmp.app`` builds the lane with the application), so a dependency added to such a route
later cannot be skipped silently (docs/performance.md).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from dmp.front import deps


@dataclass(frozen=True)
class _Lane:
    route: APIRoute
    method: str
    path: str
    pattern: re.Pattern[str]
    path_names: tuple[str, ...]
    request_name: str
    gate_name: str
    endpoint: Callable[..., Any]
    on_loop: bool  # an async endpoint, awaited on the event loop


class HotLane:
    """An ASGI app in front of the router: the lane's routes served directly, others passed on."""

    def __init__(self, router: ASGIApp, routes: Iterable[tuple[str, APIRoute]]) -> None:
        """``routes`` as their routers declare them, each with the prefix its router is
        included under ("" for a router that holds its prefix itself)."""
        self.router = router
        self._lanes = tuple(_lane(prefix, route) for prefix, route in routes)
        # Exact paths by a dictionary; parameterised ones by their compiled pattern.
        self._exact = {
            (lane.method, lane.path): lane for lane in self._lanes if not lane.path_names
        }
        self._patterned = tuple(lane for lane in self._lanes if lane.path_names)

    def lane_for(self, scope: Scope) -> tuple[_Lane, dict[str, str]] | None:
        method, path = str(scope.get("method")), str(scope.get("path", ""))
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]  # as the router reads it
        lane = self._exact.get((method, path))
        if lane is not None:
            return lane, {}
        for lane in self._patterned:
            if lane.method == method:
                match = lane.pattern.match(path)
                if match is not None:
                    return lane, match.groupdict()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.lane_for(scope) if scope["type"] == "http" else None
        if found is None:
            await self.router(scope, receive, send)
            return
        lane, path_params = found
        # What the router would have put in the scope for the route it chose (the access log
        # names the route's template from it).
        scope.setdefault("router", self.router)  # for url_for, as the router sets it
        scope["route"] = lane.route
        scope["endpoint"] = lane.endpoint
        scope["path_params"] = path_params
        request = Request(scope, receive)
        rt = await deps.runtime(request)
        grant = await deps.grant(request, rt)
        access = await deps.gate(request, rt, grant)
        arguments: dict[str, Any] = {
            **path_params,
            lane.request_name: request,
            lane.gate_name: access,
        }
        response: Response
        if lane.on_loop:
            response = await lane.endpoint(**arguments)
        else:
            response = await run_in_threadpool(lane.endpoint, **arguments)
        await response(scope, receive, send)


def route_named(router: APIRouter, name: str) -> APIRoute:
    """The route of that name among a router's own routes."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.name == name:
            return route
    raise LookupError(f"no route named {name!r}")


def _lane(prefix: str, route: APIRoute) -> _Lane:
    dependant = route.dependant
    methods = sorted(route.methods or ())
    problems = []
    if len(methods) != 1:
        problems.append(f"methods {methods}")
    if dependant.query_params or dependant.header_params or dependant.cookie_params:
        problems.append("query, header or cookie parameters")
    if dependant.body_params:
        problems.append("a body parameter")
    if route.dependencies:
        problems.append("route dependencies")
    if any(p.field_info.annotation is not str for p in dependant.path_params):
        problems.append("a path parameter that is not a str")
    gates = [d for d in dependant.dependencies if d.call is deps.gate]
    if len(dependant.dependencies) != 1 or len(gates) != 1 or gates[0].name is None:
        problems.append("dependencies other than one gate")
    if dependant.request_param_name is None:
        problems.append("no request parameter")
    if problems:
        raise RuntimeError(f"route {route.name!r} cannot take the hot lane: {', '.join(problems)}")
    assert gates[0].name is not None and dependant.request_param_name is not None
    return _Lane(
        route=route,
        method=methods[0],
        path=prefix + route.path,
        pattern=compile_path(prefix + route.path)[0],
        path_names=tuple(p.name for p in dependant.path_params),
        request_name=dependant.request_param_name,
        gate_name=gates[0].name,
        endpoint=route.endpoint,
        on_loop=inspect.iscoroutinefunction(route.endpoint),
    )
