"""Nightly reports on the web: the list (`/reports`, JSON twin `/api/reports`), each night's page
(`/reports/NIGHT/`) and its PNG plots, served from the files www:report wrote."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from gozen.report.night import BadNight, parse_night
from gozen.report.store import ReportRow, report_of, reports
from gozen.web.security import current_identity

router = APIRouter()
PLOT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
STYLESHEET = "report.css"


def night_or_422(night: str) -> str:
    try:
        parse_night(night)
    except BadNight as err:
        raise HTTPException(422, str(err)) from None
    return night


async def report_or_404(request: Request, night: str) -> ReportRow:
    row = await run_in_threadpool(report_of, request.app.state.engine, night_or_422(night))
    if row is None:
        raise HTTPException(404, f"no report of night {night}")
    return row


def report_file(row: ReportRow, name: str) -> Path:
    path = Path(row.path) / name
    if not path.is_file():
        raise HTTPException(404, f"night {row.night}: {name} is not on this host (the report was made on {row.host})")
    return path


@router.get("/api/reports")
async def reports_json(request: Request) -> dict[str, Any]:
    rows = await run_in_threadpool(reports, request.app.state.engine)
    return {"reports": [_json(r) for r in rows]}


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(request: Request) -> Response:
    rows = await run_in_threadpool(reports, request.app.state.engine)
    ctx = {"reports": rows, "identity": current_identity(request)}
    return request.app.state.templates.TemplateResponse(request, "reports.html", ctx)


@router.get("/reports/{night}")
async def report_redirect(night: str) -> Response:
    return RedirectResponse(f"/reports/{night_or_422(night)}/", 307)


@router.get("/reports/{night}/", response_class=HTMLResponse)
async def report_page(request: Request, night: str) -> Response:
    row = await report_or_404(request, night)
    return FileResponse(report_file(row, "index.html"), media_type="text/html")


@router.get(f"/reports/{{night}}/{STYLESHEET}")
async def report_stylesheet(request: Request, night: str) -> Response:
    row = await report_or_404(request, night)
    return FileResponse(report_file(row, STYLESHEET), media_type="text/css")


@router.get("/reports/{night}/{name}.png")
async def report_plot(request: Request, night: str, name: str) -> Response:
    if not PLOT_NAME.match(name):
        raise HTTPException(422, f"plot name {name!r}: only lower-case letters, digits, '-' and '_'")
    row = await report_or_404(request, night)
    return FileResponse(report_file(row, f"{name}.png"), media_type="image/png")


def _json(r: ReportRow) -> dict[str, Any]:
    d = asdict(r)
    for k in ("made_at", "start_at", "end_at", "posted_at"):
        d[k] = d[k].isoformat() if d[k] is not None else None
    d["url"] = f"/reports/{r.night}/"
    return d
