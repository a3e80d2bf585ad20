"""The operations dashboard: one server-rendered page at /dashboard and the script and style it
loads from this app (no CDN). The page holds no data: after a token is pasted in (kept in the
tab's sessionStorage) its script calls the JSON API, which decides what the token may see."""

from __future__ import annotations

from functools import cache
from html import escape
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, Response

from tracing import __version__

router = APIRouter(include_in_schema=False)

ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def _asset(name: str) -> str:
    return resources.files("tracing.api").joinpath("static", name).read_text(encoding="utf-8")


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard() -> HTMLResponse:
    page = _asset("dashboard.html").replace("{{version}}", escape(__version__))
    return HTMLResponse(page, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@router.get("/dashboard/assets/{name}")
async def dashboard_asset(name: str) -> Response:
    if name not in ASSETS:
        raise HTTPException(404, f"no dashboard asset {name}")
    return Response(_asset(name), media_type=ASSETS[name])
