"""The overview page `/`: what the observatory is doing, at a glance (placeholder until built)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def overview_page(request: Request) -> Response:
    from gozen.web.security import session_identity

    ctx = {"identity": session_identity(request), "refresh_s": request.app.state.cfg.web.refresh_s}
    return request.app.state.templates.TemplateResponse(request, "overview.html", ctx)
