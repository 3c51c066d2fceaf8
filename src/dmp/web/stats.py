"""The public statistics page and its JSON API (aggregates only, small counts suppressed)."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from dmp.domain.geo import geography
from dmp.front.deps import public_statistics
from dmp.stats.figures import PublicStatistics
from dmp.stats.pages import absent_page, departement_page, html_page
from dmp.stats.render import report_json

router = APIRouter(tags=["statistics"])

Stats = Annotated[PublicStatistics, Depends(public_statistics)]
Depts = Annotated[list[str] | None, Query(alias="departement")]
Month = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")]


class PageCache:
    """Rendered public pages, kept gzip-compressed for ``DMP_STATS_PAGE_SECONDS``: drawing the
    map and the pygal charts costs more than the 300 ms a page may take on a million records,
    and the figures of a public page may be that many seconds old. Only the pages without
    parameters are kept (``/stats`` and one per département: a bounded set). One request
    draws an expired page; the others asking for it meanwhile get the last drawing at once
    (they neither draw it again nor hold a request thread waiting); only when there is no
    drawing yet do they wait for the first."""

    def __init__(self) -> None:
        self._pages: dict[str, tuple[datetime, bytes]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str, stats: PublicStatistics, draw: Callable[[], str]) -> bytes:
        if stats.page_seconds == 0:
            return gzip.compress(draw().encode("utf-8"), compresslevel=6)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        kept = self._pages.get(key)
        if kept is not None and stats.now() < kept[0]:
            return kept[1]
        if kept is None:
            lock.acquire()
        elif not lock.acquire(blocking=False):
            return kept[1]  # being drawn anew: the last drawing meanwhile
        try:
            kept = self._pages.get(key)
            now = stats.now()
            if kept is not None and now < kept[0]:
                return kept[1]  # drawn while this request waited
            body = gzip.compress(draw().encode("utf-8"), compresslevel=9)
            self._pages[key] = (now + timedelta(seconds=stats.page_seconds), body)
            return body
        finally:
            lock.release()


@router.get("/stats", response_class=HTMLResponse, name="stats_page")
def stats_page(
    request: Request,
    stats: Stats,
    departement: Depts = None,
    start: Month = None,
    end: Month = None,
) -> Response:
    """The public page. Its map weighs about 330 KB of outlines: sent gzip-compressed (about a
    third) to clients that accept it; the page holds no secret, so compression leaks nothing."""
    if departement or start or end:  # a chosen view: drawn for this request
        page = html_page(stats.adoption(departement, start, end)).encode("utf-8")
        return _html(gzip.compress(page, compresslevel=6), request)
    return _html(_pages(request).get("stats", stats, lambda: html_page(stats.adoption())), request)


def _pages(request: Request) -> PageCache:
    cache: PageCache = request.app.state.stats_pages
    return cache


def _html(compressed: bytes, request: Request) -> Response:
    headers = {"Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = compressed
    else:
        body = gzip.decompress(compressed)
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/stats/{departement}", response_class=HTMLResponse, name="stats_departement")
def stats_departement(departement: str, request: Request, stats: Stats) -> Response:
    """One département's page (``/stats/37``): a shareable URL."""
    code = departement.upper()
    if code not in geography().departements:  # a page for people, in French, not JSON
        return HTMLResponse(absent_page(departement), status_code=404)

    def draw() -> str:
        return departement_page(stats.adoption([code]), stats.standings())

    return _html(_pages(request).get(f"stats/{code}", stats, draw), request)


@router.get("/api/stats", name="stats_json")
def stats_json(
    stats: Stats, departement: Depts = None, start: Month = None, end: Month = None
) -> dict[str, Any]:
    return report_json(stats.adoption(departement, start, end))
