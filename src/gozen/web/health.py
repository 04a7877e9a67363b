"""/api/health: is the web app up, and can it reach the database? Degraded (503) says why."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from gozen import __version__
from gozen.db.engine import ping
from gozen.service import first_line, is_outage

router = APIRouter()


@router.get("/api/health")
def health(request: Request) -> JSONResponse:
    body: dict[str, Any] = {"status": "ok", "version": __version__, "host": request.app.state.hostname}
    headers: dict[str, str] = {}
    try:
        ping(request.app.state.engine)
        body["database"] = "ok"
    except SQLAlchemyError as err:
        what = "unavailable" if is_outage(err) else "error"
        body.update(status="degraded", database=what, reason=f"database {what}: {first_line(err)}")
        if what == "unavailable":
            body["retry_after_s"] = request.app.state.retry_after_s
            headers["Retry-After"] = str(request.app.state.retry_after_s)
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503, headers=headers)
