"""The public statistics page and its JSON API (aggregates only, small counts suppressed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from dmp.access.statistics import PublicStatistics
from dmp.api.deps import public_statistics
from dmp.stats.render import html_page, report_json

router = APIRouter(tags=["statistics"])

Stats = Annotated[PublicStatistics, Depends(public_statistics)]
Depts = Annotated[list[str] | None, Query(alias="departement")]
Month = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")]


@router.get("/stats", response_class=HTMLResponse, name="stats_page")
def stats_page(
    stats: Stats, departement: Depts = None, start: Month = None, end: Month = None
) -> str:
    return html_page(stats.adoption(departement, start, end))


@router.get("/api/stats", name="stats_json")
def stats_json(
    stats: Stats, departement: Depts = None, start: Month = None, end: Month = None
) -> dict[str, Any]:
    return report_json(stats.adoption(departement, start, end))
