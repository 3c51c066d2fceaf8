"""The public statistics page and its JSON API (aggregates only, small counts suppressed)."""

from __future__ import annotations

import gzip
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from dmp.access.statistics import PublicStatistics
from dmp.api.deps import public_statistics
from dmp.stats.render import html_page, report_json

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
    html = html_page(stats.adoption(departement, start, end)).encode("utf-8")
    headers = {"Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        html = gzip.compress(html, compresslevel=6)
        headers["Content-Encoding"] = "gzip"
    return Response(html, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/api/stats", name="stats_json")
def stats_json(
    stats: Stats, departement: Depts = None, start: Month = None, end: Month = None
) -> dict[str, Any]:
    return report_json(stats.adoption(departement, start, end))
