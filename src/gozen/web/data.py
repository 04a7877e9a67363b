"""The Data page: backlog and free space per storage node, DAQ volumes, the oldest unreplicated file."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from gozen.transfer.catalog import NodeBacklog, backlog, export_counts, failed_copies
from gozen.transfer.usage import space
from gozen.web.security import current_identity

router = APIRouter()


def _data(request: Request) -> dict[str, Any]:
    cfg = request.app.state.cfg
    nodes, unplaced, oldest, n_files = backlog(request.app.state.engine)
    n_failed, failures = failed_copies(request.app.state.engine)
    by_node = {n.node: asdict(n) | {"rate_mb_s": round(n.rate_mb_s, 2)} for n in nodes}
    volumes = []
    for s in space(cfg, request.app.state.engine):
        d = asdict(s) | {"used_pct": round(s.used_pct, 2)}
        if s.kind == "node":
            d["backlog"] = by_node.get(s.name, asdict(NodeBacklog(s.name, 0, 0, 0, 0, 0)) | {"rate_mb_s": 0.0})
        volumes.append(d)
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest else None
    return {
        "files": n_files,
        "copies_waiting_for_a_node": unplaced,
        "copies_failed": n_failed,  # given up for good: no source left anywhere
        "failures": [{"file": name, "error": why} for name, why in failures],
        "oldest_unreplicated_age_s": age,
        "replication": cfg.transfer.replication,
        "volumes": volumes,
        "archive": None
        if cfg.archive is None
        else {"dest": cfg.archive_dest(), "files": export_counts(request.app.state.engine)},
    }


@router.get("/api/data")
async def data_json(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(_data, request)


@router.get("/data", response_class=HTMLResponse)
async def data_page(request: Request) -> Response:
    d = await run_in_threadpool(_data, request)
    ctx = d | {"identity": current_identity(request), "refresh_s": request.app.state.cfg.web.refresh_s}
    return request.app.state.templates.TemplateResponse(request, "data.html", ctx)
