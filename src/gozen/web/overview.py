"""The overview page `/` and `/api/overview`: safe or not and why, what is exposing, the latest
quick look, the data rates, transfer and archive, disks, the last errors and every host, at a glance.

Everything is read from the database (the status board, the queue, the catalogs, the events): the
page never waits on a host that does not answer. Each tile has a level: ok, warn, alarm, idle
(nothing to say) or stale (the program that tells it is silent).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine

from gozen.config import Config
from gozen.daq.browse import look_summary
from gozen.daq.catalog import exposure_in_hand, latest_frame_bytes
from gozen.daq.quicklook import latest_look
from gozen.daq.snapshot import StatusSnapshot
from gozen.db.events import recent_events, recent_problems
from gozen.db.states import RecipeState
from gozen.db.types import utcnow
from gozen.monitors.board import snapshot
from gozen.queue import store
from gozen.queue.recipe import ExposeStep, SlewStep, step_kind
from gozen.queue.safety import safety
from gozen.supervise.fleet import last_seen
from gozen.transfer.catalog import (
    backlog,
    bytes_on_nodes,
    daq_bytes_by_volume,
    export_counts,
    failed_copies,
    not_yet_archived,
)
from gozen.transfer.usage import space
from gozen.web.security import current_identity

router = APIRouter()
Level = Literal["ok", "warn", "alarm", "idle", "stale"]
RANK: dict[str, int] = {"idle": 0, "ok": 1, "stale": 2, "warn": 3, "alarm": 4}
ERRORS_SHOWN = 8
ERRORS_WINDOW = timedelta(hours=24)
ERRORS_RECENT = timedelta(hours=1)  # an error this new turns the tile red
REPLICATION_LATE_S = 600.0
ARCHIVE_LATE_S = 36 * 3600.0  # files go to the archive in nightly packages: a day and a half is late
EXPOSURE_GONE = timedelta(minutes=5)  # an exposure still armed this long after its end is not in hand


def worst(levels: list[str]) -> str:
    return max(levels, key=lambda lv: RANK[lv], default="idle")


@router.get("/api/overview")
async def overview_json(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(_overview, request)


@router.get("/", response_class=HTMLResponse)
async def overview_page(request: Request) -> Response:
    return request.app.state.templates.TemplateResponse(request, "overview.html", await _context(request))


@router.get("/overview/fragment", response_class=HTMLResponse)
async def overview_fragment(request: Request) -> Response:
    """The tiles alone, for the page's self-refresh (overview.js)."""
    return request.app.state.templates.TemplateResponse(request, "_overview.html", await _context(request))


async def _context(request: Request) -> dict[str, Any]:
    d = await run_in_threadpool(_overview, request)
    return {"o": d, "identity": current_identity(request), "refresh_s": request.app.state.cfg.web.refresh_s}


def _overview(request: Request) -> dict[str, Any]:
    return overview(request.app.state.cfg, request.app.state.engine)


def overview(cfg: Config, engine: Engine) -> dict[str, Any]:
    """Every tile of the page as plain JSON (times ISO UTC)."""
    now = utcnow()
    board = snapshot(engine)
    tiles = {
        "safety": safety_tile(engine, board),
        "exposing": exposing_tile(engine, now),
        "quicklook": quicklook_tile(engine),
        "rates": rates_tile(engine, board),
        "transfer": transfer_tile(engine, now),
        "archive": archive_tile(cfg, engine, now),
        "disks": disks_tile(cfg, engine, board),
        "errors": errors_tile(engine, now),
        "hosts": hosts_tile(cfg, engine, board),
    }
    return {"time": now.isoformat(), "level": worst([t["level"] for t in tiles.values()])} | tiles


# -- safety -------------------------------------------------------------------------------------


def safety_tile(engine: Engine, board: StatusSnapshot) -> dict[str, Any]:
    """Safe or not and why (queue.safety's reading of the board), checked when, and since when
    (monitor:safety's last `safety_changed` event)."""
    safe, why = safety(engine)
    decided = board.get("safety.safe")
    changed = recent_events(engine, 1, kind="safety_changed")
    waiting = not safe and why.startswith("waiting for the first weather reading")
    level: Level = "ok" if safe else "warn" if waiting else "alarm"
    return {
        "level": level,
        "safe": safe,
        "why": why or ("safe to observe" if safe else "unsafe"),
        "at": decided.time if decided is not None else None,
        "since": changed[0].time.isoformat() if changed else None,
    }


# -- what is exposing now -----------------------------------------------------------------------


def exposing_tile(engine: Engine, now: datetime) -> dict[str, Any]:
    """The executing recipe (its step, object, field) and the exposure in hand with its progress."""
    st = store.queue_status(engine)
    queue = {"mode": str(st.mode), "paused": st.paused, "activity": st.activity}
    rows = store.listed(engine, (RecipeState.EXECUTING,), 1)
    recipe = _recipe_now(engine, rows[0]) if rows else None
    exposure = _exposure_now(engine, now)
    if recipe is None and exposure is None:
        level: Level = "warn" if st.paused or str(st.mode) != "normal" else "idle"
        return {"level": level, "queue": queue, "recipe": None, "exposure": None}
    return {"level": "ok", "queue": queue, "recipe": recipe, "exposure": exposure}


def _recipe_now(engine: Engine, row: store.RecipeListing) -> dict[str, Any] | None:
    body = store.body(engine, row.uuid)
    if body is None:
        return None
    step = min(int(row.progress.get("step", 0)), len(body.steps) - 1)
    field = object_name = None
    count = None
    for s in body.steps[: step + 1]:  # the field slewed to last, the object of this (or the last) expose
        if isinstance(s, SlewStep):
            field = s.slew.field or f"RA {s.slew.ra_deg:.3f} Dec {s.slew.dec_deg:+.3f}"
        if isinstance(s, ExposeStep):
            object_name, count = s.expose.object, s.expose.count
    return {
        "uuid": row.uuid,
        "name": row.name,
        "step": step + 1,
        "steps": len(body.steps),
        "step_kind": step_kind(body.steps[step]),
        "object": object_name,
        "field": field,
        "exposures_done": int(row.progress.get("done", 0)),
        "exposures": count,
    }


def _exposure_now(engine: Engine, now: datetime) -> dict[str, Any] | None:
    r = exposure_in_hand(engine, now, EXPOSURE_GONE)
    if r is None:
        return None
    duration_s = r.n_frames / r.fps if r.fps else 0.0
    elapsed_s = (now - r.start_at).total_seconds() if r.start_at else 0.0
    pct = 0.0 if not duration_s else max(0.0, min(100.0, 100.0 * elapsed_s / duration_s))
    return {
        "exp_id": r.exp_id,
        "object": r.object,
        "data_type": r.data_type,
        "frames": r.n_frames,
        "fps": r.fps,
        "state": str(r.state),
        "recipe": r.recipe_name,
        "start_at": r.start_at.isoformat() if r.start_at else None,
        "progress_pct": round(pct, 1),
    }


# -- the latest quick look ----------------------------------------------------------------------


def quicklook_tile(engine: Engine) -> dict[str, Any]:
    exp_id = latest_look(engine)
    if exp_id is None:
        return {"level": "idle", "exp_id": None}
    r = look_summary(engine, exp_id)
    return {
        "level": "ok",
        "exp_id": exp_id,
        "object": r.object if r else None,
        "start_at": r.start_at.isoformat() if r and r.start_at else None,
        "made_at": r.made_at.isoformat() if r and r.made_at else None,
        "mosaic_url": f"/exposures/{exp_id}/mosaic.png",
        "exposure_url": f"/exposures/{exp_id}",
    }


# -- data rates ---------------------------------------------------------------------------------


def rates_tile(engine: Engine, board: StatusSnapshot) -> dict[str, Any]:
    """Frames/s of every readout now (the board), and MB/s as those frames at the latest file's frame size."""
    rates = [
        v
        for k, v in board.values.items()
        if k.startswith("daq.") and k.endswith(".frames_per_s") and isinstance(v.value, int | float)
    ]
    fresh = [v for v in rates if not v.stale]
    if not rates:
        return {"level": "idle", "frames_per_s": None, "mb_per_s": None, "readouts": 0, "stale": 0}
    fps = sum(float(v.value) for v in fresh if isinstance(v.value, int | float))
    frame_bytes = latest_frame_bytes(engine)
    mb_s = fps * frame_bytes / 1e6 if frame_bytes else None
    return {
        "level": "ok" if fresh else "stale",
        "frames_per_s": round(fps, 2),
        "mb_per_s": None if mb_s is None else round(mb_s, 2),
        "readouts": len(fresh),
        "stale": len(rates) - len(fresh),
    }


# -- transfer and archive -----------------------------------------------------------------------


def transfer_tile(engine: Engine, now: datetime) -> dict[str, Any]:
    nodes, unplaced, oldest, n_files = backlog(engine)
    n_failed, _ = failed_copies(engine)
    waiting = unplaced + sum(n.queued + n.copying for n in nodes)
    age_s = (now - oldest).total_seconds() if oldest else None
    late = age_s is not None and age_s > REPLICATION_LATE_S
    level: Level = "alarm" if n_failed else "warn" if late else "ok" if n_files else "idle"
    return {
        "level": level,
        "files": n_files,
        "copies_waiting": waiting,
        "copies_failed": n_failed,
        "oldest_unreplicated_age_s": None if age_s is None else round(age_s, 1),
        "rate_mb_s": round(sum(n.rate_mb_s for n in nodes), 2),
    }


def archive_tile(cfg: Config, engine: Engine, now: datetime) -> dict[str, Any]:
    """Files not yet in the archive (never packaged, or packaged and not acknowledged) and the oldest's age."""
    if cfg.archive is None:
        return {"level": "idle", "configured": False}
    n, oldest = not_yet_archived(engine)
    lag_s = (now - oldest).total_seconds() if oldest else None
    level: Level = "warn" if lag_s is not None and lag_s > ARCHIVE_LATE_S else "ok"
    return {
        "level": level,
        "configured": True,
        "dest": cfg.archive_dest(),
        "files_waiting": int(n),
        "lag_s": None if lag_s is None else round(lag_s, 1),
        "states": export_counts(engine),
    }


# -- disks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disk:
    kind: str  # daq | node
    name: str
    host: str | None
    online: bool | None  # None: nobody measured it
    used_pct: float | None
    free_bytes: int | None
    quota: bool
    level: Level


def disks_tile(cfg: Config, engine: Engine, board: StatusSnapshot) -> dict[str, Any]:
    """Every DAQ volume and storage node. A volume with a quota: the catalog's bytes there against it.
    Else storage:dfmonitor's numbers from the board where fresh (it runs on the host holding the
    disk), else measured here. Online or not: the board's word where fresh, else whether it is here."""
    here = {(s.kind, s.name): s for s in space(cfg)}
    held = {"daq": daq_bytes_by_volume(engine), "node": bytes_on_nodes(engine)}
    disks = []
    for kind, items in (("daq", cfg.daq_volumes), ("node", cfg.storage_nodes)):
        for v in items:
            s = here[(kind, v.name)]
            used: float | None = s.used_pct if s.online else None
            free: int | None = s.free_bytes if s.online else None
            online: bool | None = True if s.online else None
            said = board.get(f"df.{v.name}.online")
            if said is not None and not said.stale:
                online = said.value is True
                pct, left = board.get(f"df.{v.name}.used_pct"), board.get(f"df.{v.name}.free_bytes")
                if online and pct is not None and left is not None:
                    used, free = float(pct.value), int(left.value)  # type: ignore[arg-type]
            if v.max_bytes is not None and online:
                n = held[kind].get(v.name, 0)
                used, free = 100.0 * n / v.max_bytes, max(v.max_bytes - n, 0)
            disks.append(_disk(cfg, kind, v.name, v.host, online, used, free, v.max_bytes is not None))
    return {
        "level": worst([d.level for d in disks]),
        "warn_pct": cfg.monitors.df_warn_pct,
        "alarm_pct": cfg.monitors.df_alarm_pct,
        "disks": [asdict(d) for d in disks],
    }


def _disk(
    cfg: Config, kind: str, name: str, host: str | None, online: bool | None, used: float | None, free: int | None,
    quota: bool,
) -> Disk:  # fmt: skip
    if online is False:
        return Disk(kind, name, host, False, None, None, quota, "alarm")
    if online is None or used is None:
        return Disk(kind, name, host, None, None, None, quota, "stale")
    m = cfg.monitors
    level: Level = "alarm" if used > m.df_alarm_pct else "warn" if used > m.df_warn_pct else "ok"
    return Disk(kind, name, host, True, round(used, 1), free, quota, level)


# -- the last errors ----------------------------------------------------------------------------


def errors_tile(engine: Engine, now: datetime) -> dict[str, Any]:
    found = recent_problems(engine, now - ERRORS_WINDOW, ERRORS_SHOWN)
    recent = [e for e in found if now - e.time < ERRORS_RECENT]
    level: Level = "alarm" if any(e.severity == "error" for e in recent) else "warn" if recent else "ok"
    return {
        "level": level,
        "events": [
            {
                "id": e.id,
                "time": e.time.isoformat(),
                "host": e.host,
                "source": e.source,
                "kind": e.kind,
                "subject": e.subject,
                "severity": e.severity,
                "message": e.message,
            }
            for e in found
        ],
    }


# -- hosts --------------------------------------------------------------------------------------


def hosts_tile(cfg: Config, engine: Engine, board: StatusSnapshot) -> dict[str, Any]:
    """Every host: fleet:watch's last check (the board), else its programs' heartbeats."""
    seen = last_seen(engine)
    hosts: list[dict[str, Any]] = []
    levels: list[str] = []
    for h in cfg.hosts:
        s = seen.get(h.name)
        beats = [v for k, v in board.values.items() if k.startswith(f"service.{h.name}.") and k.endswith(".alive_at")]
        fresh_beats = sum(not v.stale for v in beats)
        if s is not None and not s.stale:
            up: bool | None = s.reachable
            why = "supervisord answers" if s.reachable else (s.error or "supervisord does not answer")
            since = None if s.reachable or s.unreachable_since is None else s.unreachable_since.isoformat()
        elif beats:
            up, since = fresh_beats > 0, None
            why = f"{fresh_beats} of {len(beats)} programs beat" if up else "no program's heartbeat is fresh"
        else:
            up, why, since = None, "not watched (is fleet:watch running?)", None
        level: Level = "stale" if up is None else "ok" if up else "alarm"
        levels.append(level)
        hosts.append(
            {"host": h.name, "roles": [str(r) for r in h.roles], "up": up, "why": why, "since": since, "level": level}
        )
    return {"level": worst(levels), "hosts": hosts}
