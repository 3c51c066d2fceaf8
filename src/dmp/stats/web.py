"""The public statistics page and its JSON API (aggregates only, small counts suppressed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from dmp.access.runtime import Runtime
from dmp.access.statistics import adoption
from dmp.api.deps import runtime
from dmp.stats.render import html_page, report_json

router = APIRouter(tags=["statistics"])

Rt = Annotated[Runtime, Depends(runtime)]
Depts = Annotated[list[str] | None, Query(alias="departement")]
Month = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")]


@router.get("/stats", response_class=HTMLResponse, name="stats_page")
def stats_page(rt: Rt, departement: Depts = None, start: Month = None, end: Month = None) -> str:
    return html_page(adoption(rt, departement, start, end))


@router.get("/api/stats", name="stats_json")
def stats_json(
    rt: Rt, departement: Depts = None, start: Month = None, end: Month = None
) -> dict[str, Any]:
    return report_json(adoption(rt, departement, start, end))
