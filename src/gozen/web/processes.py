"""The process monitor: every host's supervisord programs, with start/stop/restart."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from gozen.config import Config
from gozen.db.events import record_event
from gozen.durations import uptime_words
from gozen.supervise.client import HostStatus, HostUnreachable, ProcessActionError, SupervisorClient, fetch_all
from gozen.web.auth import Identity
from gozen.web.security import current_identity, require_operator

router = APIRouter()
PAGE_TAIL_BYTES = 2000


def _summary(hosts: list[HostStatus]) -> dict[str, int]:
    procs = [p for h in hosts for p in h.processes]
    return {
        "hosts": len(hosts),
        "unreachable": sum(not h.reachable for h in hosts),
        "programs": len(procs),
        "running": sum(p.state == "RUNNING" for p in procs),
        "not_running": sum(p.state != "RUNNING" for p in procs),
    }


def _context(request: Request, hosts: list[HostStatus]) -> dict[str, Any]:
    return {
        "hosts": hosts,
        "summary": _summary(hosts),
        "identity": current_identity(request),
        "refresh_s": request.app.state.cfg.web.refresh_s,
    }


@router.get("/", response_class=HTMLResponse)
async def processes_page(request: Request) -> Response:
    hosts = await run_in_threadpool(fetch_all, request.app.state.cfg.hosts, tail_bytes=PAGE_TAIL_BYTES)
    return request.app.state.templates.TemplateResponse(request, "processes.html", _context(request, hosts))


@router.get("/processes/fragment", response_class=HTMLResponse)
async def processes_fragment(request: Request) -> Response:
    """The host sections alone, for the page's self-refresh."""
    hosts = await run_in_threadpool(fetch_all, request.app.state.cfg.hosts, tail_bytes=PAGE_TAIL_BYTES)
    return request.app.state.templates.TemplateResponse(request, "_hosts.html", _context(request, hosts))


def _host_json(h: HostStatus) -> dict[str, Any]:
    d = asdict(h)
    for p, raw in zip(h.processes, d["processes"], strict=True):
        raw["full_name"] = p.full_name
        raw["uptime"] = uptime_words(p.uptime_s)
    return d


@router.get("/api/processes")
async def processes_json(
    request: Request, tail: Annotated[int, Query(ge=0, le=65536, description="Bytes of log tail")] = 0
) -> dict[str, Any]:
    hosts = await run_in_threadpool(fetch_all, request.app.state.cfg.hosts, tail_bytes=tail)
    return {"summary": _summary(hosts), "hosts": [_host_json(h) for h in hosts]}


@router.post("/api/processes/{host}/{program}/{action}")
async def process_action(
    request: Request,
    host: str,
    program: str,
    action: Literal["start", "stop", "restart"],
    ident: Annotated[Identity, Depends(require_operator)],
) -> dict[str, Any]:
    cfg: Config = request.app.state.cfg
    known = {h.name: h for h in cfg.hosts}
    if host not in known:
        raise HTTPException(404, detail=f"no host named {host!r}")
    client = SupervisorClient(known[host], timeout_s=60)
    try:
        await run_in_threadpool(client.act, action, program)
    except HostUnreachable as err:
        raise HTTPException(502, detail=str(err)) from None
    except ProcessActionError as err:
        raise HTTPException(409, detail=str(err)) from None
    await run_in_threadpool(
        record_event,
        request.app.state.engine,
        host=host,
        source="www:dashboard",
        kind="process_action",
        subject=program,
        message=f"{ident.name} asked to {action} {program} on {host}",
        data={"user": ident.name, "via": ident.via, "action": action},
    )
    status = await run_in_threadpool(client.status)
    return {"ok": True, "action": action, "host": _host_json(status)}
