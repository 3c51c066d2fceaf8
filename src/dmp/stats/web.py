"""The public statistics page and its JSON API (aggregates only, small counts suppressed)."""

from __future__ import annotations

import gzip
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from dmp.access.statistics import PublicStatistics
from dmp.api.deps import public_statistics
from dmp.domain.geo import geography
from dmp.errors import NotFound
from dmp.stats.render import departement_page, html_page, report_json

router = APIRouter(tags=["statistics"])

Stats = Annotated[PublicStatistics, Depends(public_statistics)]
Depts = Annotated[list[str] | None, Query(alias="departement")]
Month = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")]


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
    return _html(html_page(stats.adoption(departement, start, end)), request)


def _html(page: str, request: Request) -> Response:
    html = page.encode("utf-8")
    headers = {"Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        html = gzip.compress(html, compresslevel=6)
        headers["Content-Encoding"] = "gzip"
    return Response(html, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/stats/{departement}", response_class=HTMLResponse, name="stats_departement")
def stats_departement(departement: str, request: Request, stats: Stats) -> Response:
    """One département's page (``/stats/37``): a shareable URL."""
    code = departement.upper()
    if code not in geography().departements:
        raise NotFound(f"no département {departement!r}")
    page = departement_page(stats.adoption([code]), stats.adoption())
    return _html(page, request)


@router.get("/api/stats", name="stats_json")
def stats_json(
    stats: Stats, departement: Depts = None, start: Month = None, end: Month = None
) -> dict[str, Any]:
    return report_json(stats.adoption(departement, start, end))
