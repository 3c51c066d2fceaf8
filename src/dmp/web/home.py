"""The site's front page (``/``): what the service is, in French, and its doors (the portal,
the public statistics, the API documentation)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from dmp.web.render import SECURITY_HEADERS, page

router = APIRouter(include_in_schema=False)


@router.get("/", name="site_home", response_class=HTMLResponse)
def home(request: Request) -> Response:
    return page(request, "bienvenue.html", session=None, headers=dict(SECURITY_HEADERS))
