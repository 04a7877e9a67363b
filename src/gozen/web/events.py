"""The Events page: what happened on every host, newest first, errors standing out."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from gozen.db.events import recent_events
from gozen.web.security import current_identity

router = APIRouter()


@router.get("/api/events")
async def events_json(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    kind: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    rows = await run_in_threadpool(recent_events, request.app.state.engine, limit, kind)
    return {"events": [asdict(e) | {"time": e.time.isoformat()} for e in rows]}


@router.get("/events", response_class=HTMLResponse)
async def events_page(request: Request, kind: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    rows = await run_in_threadpool(recent_events, request.app.state.engine, 200, kind)
    ctx = {
        "events": rows,
        "kind": kind,
        "identity": current_identity(request),
        "refresh_s": request.app.state.cfg.web.refresh_s,
    }
    return request.app.state.templates.TemplateResponse(request, "events.html", ctx)
