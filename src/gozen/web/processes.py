"""The process monitor: every host's supervisord programs, with start/stop/restart, and each
program's heartbeat on the status board (a RUNNING program whose heartbeat is stale may hang)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from gozen.config import Config
from gozen.db.events import record_event
from gozen.durations import uptime_words
from gozen.monitors.board import heartbeat_key, snapshot
from gozen.service import is_outage
from gozen.supervise.client import HostStatus, HostUnreachable, ProcessActionError, SupervisorClient, fetch_all
from gozen.supervise.fleet import HostSeen, last_seen
from gozen.web.auth import Identity
from gozen.web.security import current_identity, require_operator

router = APIRouter()
PAGE_TAIL_BYTES = 2000


@dataclass(frozen=True)
class Heartbeat:
    """When a program last said on the status board that it was alive."""

    age_s: float
    stale: bool  # older than the program's own max age


Heartbeats = dict[tuple[str, str], Heartbeat]  # by (host, group:name)


@dataclass(frozen=True)
class Overview:
    """What the page shows: supervisord's view of every host, and the heartbeats (None: unknown)."""

    hosts: list[HostStatus]
    beats: Heartbeats | None
    seen: dict[str, HostSeen] | None = None  # what fleet:watch last saw of each host (None: unknown)

    def last(self, host: str) -> HostSeen | None:
        """What fleet:watch last saw of an unreachable host: since when, its last known programs."""
        return self.seen.get(host) if self.seen else None

    def beat(self, host: str, program: str) -> Heartbeat | None:
        return self.beats.get((host, program)) if self.beats else None

    def hung(self, host: str, program: str, state: str) -> bool:
        beat = self.beat(host, program)
        return state == "RUNNING" and beat is not None and beat.stale


def heartbeats(engine: Engine, hosts: list[HostStatus]) -> Heartbeats | None:
    """The heartbeat of every program that beats; None while the database is away: this page then
    shows supervisord's view alone, since it is the page people need during an outage."""
    try:
        board = snapshot(engine, "service.")
    except DBAPIError as err:
        if not is_outage(err):
            raise
        return None
    now = datetime.fromisoformat(board.time)
    beats: Heartbeats = {}
    for h in hosts:
        for p in h.processes:
            v = board.values.get(heartbeat_key(h.host, p.full_name))
            if v is not None:
                age_s = (now - datetime.fromisoformat(v.time)).total_seconds()
                beats[(h.host, p.full_name)] = Heartbeat(age_s, v.stale)
    return beats


def fleet_seen(engine: Engine, hosts: list[HostStatus]) -> dict[str, HostSeen] | None:
    """fleet:watch's last view of the hosts that do not answer now (None while the database is away)."""
    if all(h.reachable for h in hosts):
        return {}
    try:
        return last_seen(engine)
    except DBAPIError as err:
        if not is_outage(err):
            raise
        return None


def overview(request: Request, tail_bytes: int) -> Overview:
    hosts = fetch_all(request.app.state.cfg.hosts, tail_bytes=tail_bytes)
    engine = request.app.state.engine
    return Overview(hosts, heartbeats(engine, hosts), fleet_seen(engine, hosts))


def _summary(seen: Overview) -> dict[str, Any]:
    procs = [(h.host, p) for h in seen.hosts for p in h.processes]
    return {
        "hosts": len(seen.hosts),
        "unreachable": sum(not h.reachable for h in seen.hosts),
        "programs": len(procs),
        "running": sum(p.state == "RUNNING" for _, p in procs),
        "not_running": sum(p.state != "RUNNING" for _, p in procs),
        "no_heartbeat": sum(seen.hung(host, p.full_name, p.state) for host, p in procs),
        "heartbeats_known": seen.beats is not None,
    }


def _context(request: Request, seen: Overview) -> dict[str, Any]:
    return {
        "hosts": seen.hosts,
        "overview": seen,
        "summary": _summary(seen),
        "identity": current_identity(request),
        "refresh_s": request.app.state.cfg.web.refresh_s,
    }


@router.get("/processes", response_class=HTMLResponse)
async def processes_page(request: Request) -> Response:
    seen = await run_in_threadpool(overview, request, PAGE_TAIL_BYTES)
    return request.app.state.templates.TemplateResponse(request, "processes.html", _context(request, seen))


@router.get("/processes/fragment", response_class=HTMLResponse)
async def processes_fragment(request: Request) -> Response:
    """The host sections alone, for the page's self-refresh."""
    seen = await run_in_threadpool(overview, request, PAGE_TAIL_BYTES)
    return request.app.state.templates.TemplateResponse(request, "_hosts.html", _context(request, seen))


def _host_json(h: HostStatus, seen: Overview) -> dict[str, Any]:
    d = asdict(h)
    last = None if h.reachable else seen.last(h.host)
    d["last_seen"] = None if last is None else asdict(last)
    for p, raw in zip(h.processes, d["processes"], strict=True):
        beat = seen.beat(h.host, p.full_name)
        raw["full_name"] = p.full_name
        raw["uptime"] = uptime_words(p.uptime_s)
        raw["heartbeat"] = None if beat is None else {"age_s": round(beat.age_s, 1), "stale": beat.stale}
    return d


@router.get("/api/processes")
async def processes_json(
    request: Request, tail: Annotated[int, Query(ge=0, le=65536, description="Bytes of log tail")] = 0
) -> dict[str, Any]:
    seen = await run_in_threadpool(overview, request, tail)
    return {"summary": _summary(seen), "hosts": [_host_json(h, seen) for h in seen.hosts]}


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
    seen = Overview([status], await run_in_threadpool(heartbeats, request.app.state.engine, [status]))
    return {"ok": True, "action": action, "host": _host_json(status, seen)}
