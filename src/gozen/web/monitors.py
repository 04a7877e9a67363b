"""The Monitors page and the status board's JSON: every value with its level and staleness, plots, CSV."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from gozen.monitors.board import history, keys, snapshot
from gozen.monitors.levels import level
from gozen.web.plots import chart
from gozen.web.security import current_identity

router = APIRouter()

GROUPS = ("safety", "telescope", "dome", "weather", "gps", "temperature", "power", "df", "zfs")
HISTORY_LIMIT = 100_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NOT_FILENAME = re.compile(r"[^A-Za-z0-9._+-]")


def csv_filename(key: str) -> str:
    """A download name from the asked keys: only characters safe in a header's quoted string."""
    return _NOT_FILENAME.sub("_", key.replace(",", "+"))[:60] + ".csv"


def group_of(key: str) -> str:
    return key.split(".", 1)[0]


def _status(request: Request) -> dict[str, Any]:
    cfg, snap = request.app.state.cfg, snapshot(request.app.state.engine)
    values = {
        k: asdict(v) | {"level": level(cfg, k, v.value) if not v.stale else "stale"}
        for k, v in sorted(snap.values.items())
    }
    safe = snap.get("safety.safe")
    return {
        "time": snap.time,
        "safe_to_observe": bool(safe and safe.value is True and not safe.stale),
        "values": values,
    }


def parse_time(value: str | None, default: datetime, what: str) -> datetime:
    if value is None:
        return default
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, f"{what}: not an ISO 8601 time: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _history(request: Request, key: str, since: str | None, until: str | None) -> dict[str, Any]:
    known = keys(request.app.state.engine)
    if key not in known:
        raise HTTPException(404, f"key: no such status key {key!r}")
    now = datetime.now(UTC)
    t0 = parse_time(since, now - timedelta(hours=24), "since")
    t1 = parse_time(until, now, "until")
    points = history(request.app.state.engine, key, t0, t1, HISTORY_LIMIT)
    return {
        "key": key,
        "unit": known[key],
        "since": t0.isoformat(),
        "until": t1.isoformat(),
        "points": [[t.isoformat(), v] for t, v in points],
    }


@router.get("/api/status")
async def status_json(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(_status, request)


@router.get("/api/status/history")
async def history_json(
    request: Request,
    key: Annotated[str, Query(max_length=128)],
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
) -> dict[str, Any]:
    return await run_in_threadpool(_history, request, key, since, until)


@router.get("/api/status/history.csv")
async def history_csv(
    request: Request,
    key: Annotated[str, Query(max_length=1000, description="A key, several separated by commas, or a group")],
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    if _CONTROL.search(key):
        raise HTTPException(422, "key: control characters (line breaks, tabs, ...) are not allowed in a key")

    def build() -> str:
        known = keys(request.app.state.engine)
        wanted = [k for k in key.split(",") if k]
        chosen = [k for k in known if k in wanted or group_of(k) in wanted]
        if not chosen:
            raise HTTPException(404, f"key: nothing on the board matches {key!r}")
        buf = io.StringIO()
        w = csv.writer(buf, quoting=csv.QUOTE_MINIMAL)  # quotes a value holding a comma, quote or line break
        w.writerow(["time_utc", "key", "value", "unit"])
        for k in chosen:
            for t, v in _history(request, k, since, until)["points"]:
                w.writerow([t, k, v, known[k]])
        return buf.getvalue()

    text = await run_in_threadpool(build)
    return Response(
        text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{csv_filename(key)}"'}
    )


@router.get("/monitors/plots/{group}.svg")
async def plot(request: Request, group: str, hours: Annotated[float, Query(gt=0, le=24 * 31)] = 24) -> Response:
    def build() -> str:
        engine = request.app.state.engine
        t1 = datetime.now(UTC)
        t0 = t1 - timedelta(hours=hours)
        latest = snapshot(engine, f"{group}.").values
        series = [  # numbers, and true/false drawn as 1/0
            (k, v.unit, history(engine, k, t0, t1, HISTORY_LIMIT))
            for k, v in sorted(latest.items())
            if isinstance(v.value, int | float)
        ]
        if not series:
            raise HTTPException(404, f"group: nothing to plot in {group!r}")
        return chart(series, t0, t1)

    svg = await run_in_threadpool(build)
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=30"})


@router.get("/monitors", response_class=HTMLResponse)
async def monitors_page(request: Request) -> Response:
    d = await run_in_threadpool(_status, request)
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for k, v in d["values"].items():
        groups.setdefault(group_of(k), []).append((k.split(".", 1)[1], v))
    order = [g for g in GROUPS if g in groups] + sorted(set(groups) - set(GROUPS))
    ctx = d | {
        "groups": [(g, groups[g]) for g in order],
        "reasons": (d["values"].get("safety.reasons") or {}).get("value") or "",
        "identity": current_identity(request),
        "refresh_s": request.app.state.cfg.web.refresh_s,
    }
    return request.app.state.templates.TemplateResponse(request, "monitors.html", ctx)
