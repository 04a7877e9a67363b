"""/api/health: is the web app up, and can it reach the database?"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gozen import __version__

router = APIRouter()


@router.get("/api/health")
def health(request: Request) -> JSONResponse:
    body: dict[str, Any] = {"status": "ok", "version": __version__, "host": request.app.state.hostname}
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        body["database"] = "ok"
    except SQLAlchemyError as err:
        body.update(status="degraded", database=f"error: {type(err).__name__}")
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)
