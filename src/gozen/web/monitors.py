"""The Monitors page and the status board's JSON: every value with its state (OK/WARN/ALARM/STALE/N/A), a plot
per group over a chosen time range (1 h, 6 h, 24 h, the night), CSV."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine

from gozen.config import Config
from gozen.daq.snapshot import StatusValue
from gozen.monitors import groups as layout
from gozen.monitors import series
from gozen.monitors.board import history, keys, snapshot
from gozen.monitors.levels import level, state
from gozen.monitors.units import duration, human
from gozen.web.plots import PLOT_CSS, BandPanel, Line, NumberPanel, group_svg
from gozen.web.security import current_identity
from gozen.web.times import as_utc

router = APIRouter()

RangeName = Literal["1h", "6h", "24h", "night"]
RANGES: dict[str, timedelta] = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24)}
RANGE_LABELS = {"1h": "1 h", "6h": "6 h", "24h": "24 h", "night": "night"}
HISTORY_LIMIT = 100_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NOT_FILENAME = re.compile(r"[^A-Za-z0-9._+-]")


def csv_filename(key: str) -> str:
    """A download name from the asked keys: only characters safe in a header's quoted string."""
    return _NOT_FILENAME.sub("_", key.replace(",", "+"))[:60] + ".csv"


def _status(request: Request) -> dict[str, Any]:
    cfg, snap = request.app.state.cfg, snapshot(request.app.state.engine)
    values = {k: asdict(v) | {"level": state(cfg, k, snap.values)} for k, v in sorted(snap.values.items())}
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
        chosen = [k for k in known if k in wanted or layout.group_of(k) in wanted]
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


def time_range(name: str, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[since, now] of a range: the last 1, 6 or 24 hours, or the night so far (since the last local noon)."""
    if name == "night":
        local = now.astimezone(tz)
        noon = local.replace(hour=12, minute=0, second=0, microsecond=0)
        if noon > local:
            noon -= timedelta(days=1)
        return noon.astimezone(UTC), now
    return now - RANGES[name], now


def default_range(engine: Engine, known: list[str], now: datetime) -> str:
    """1 h while the board's history is younger than 2 hours (a fresh start fills the plot), else 6 h."""
    if not known:
        return "1h"
    return "6h" if series.has_history_before(engine, known, now - timedelta(hours=2)) else "1h"


WHY = {"na": "not on this site (the device is absent here)", "stale": "older than its max age: no fresh reading"}


def age_text(age_s: float) -> str:
    return f"{age_s:.0f} s" if age_s < 60 else duration(age_s)


def _row(cfg: Config, key: str, v: StatusValue, values: dict[str, StatusValue], now: datetime) -> dict[str, Any]:
    """A table row: the value in human units, its state (OK/WARN/ALARM/STALE/N/A) and its age."""
    long = isinstance(v.value, str) and len(v.value) > 48
    st = state(cfg, key, values)
    age_s = max(0.0, (now - as_utc(v.time)).total_seconds())
    return {
        "key": key,
        "name": layout.short_name(key),
        "value": v.value,
        "unit": v.unit,
        "text": (v.value[:46] + "…") if long and isinstance(v.value, str) else human(v.value, v.unit),
        "full": v.value if long else None,
        "state": st,
        "label": "N/A" if st == "na" else (st or "").upper(),
        "why": WHY.get(st or "", f"from {v.source}"),
        "time": v.time,
        "age_s": round(age_s, 1),
        "age": age_text(age_s),
        "source": v.source,
    }


def devices(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A per-device group's rows as a table of devices (df.<volume>, zfs.<host>.<pool>) by measure: 5 rows, not 30."""
    measures: list[str] = []
    by_device: dict[str, dict[str, Any]] = {}
    for r in rows:
        device, measure = r["name"].rsplit(".", 1) if "." in r["name"] else ("", r["name"])
        if measure in layout.NOT_TABULATED:
            continue
        if measure not in measures:
            measures.append(measure)
        d = by_device.setdefault(device, {"name": device, "cells": {}, "time": r["time"], "age": r["age"]})
        d["cells"][measure] = r | {"text": "N/A" if r["state"] == "na" else r["text"][:18]}
        if r["time"] > d["time"]:
            d["time"], d["age"] = r["time"], r["age"]
    measures.sort(key=layout.measure_rank)
    latest = max((d["time"] for d in by_device.values()), default=None)
    return {
        "measures": [(m, layout.measure_label(m)) for m in measures],
        "devices": list(by_device.values()),
        "latest": latest,
    }


def _plot(
    cfg: Config,
    specs: list[layout.PanelSpec],
    nums: dict[str, list[series.Bucket]],
    flags: dict[str, list[series.Span]],
) -> tuple[list[NumberPanel], list[BandPanel]]:
    numbers, bands = [], []
    for p in specs:
        if p.kind == "number":
            lines = [Line(k, layout.line_name(k, p.measure), nums.get(k, [])) for k in p.keys]
            title = layout.measure_label(p.measure)
            numbers.append(NumberPanel(p.unit, lines, title))
        else:
            k = p.keys[0]
            lv = level(cfg, k, True)  # is a flag's true good (safe, fix), bad (on battery) or neither (tracking)?
            on = True if lv == "ok" else False if lv == "alarm" else None
            bands.append(BandPanel(k, layout.short_name(k), flags.get(k, []), on, state=p.unit == "state"))
    return numbers, bands


def board_view(request: Request, range_name: str | None, svg: bool = True) -> dict[str, Any]:
    """Everything the page and /api/monitors show: groups with their values' rows and their plots."""
    cfg, engine = request.app.state.cfg, request.app.state.engine
    snap = snapshot(engine)
    now = as_utc(snap.time)
    values = dict(snap.values)
    hidden = {k for k in values if layout.group_of(k) not in layout.TITLES}
    shown = {k: v for k, v in values.items() if k not in hidden}
    chosen = range_name or default_range(engine, sorted(shown), now)
    t0, t1 = time_range(chosen, now, cfg.local_tz)
    by_group: dict[str, dict[str, StatusValue]] = {}
    for k, v in shown.items():
        by_group.setdefault(layout.group_of(k), {})[k] = v
    specs = {
        g: layout.panels(g, {k: v for k, v in vs.items() if state(cfg, k, values) != "na"})
        for g, vs in by_group.items()
    }
    num_keys = [k for ps in specs.values() for p in ps if p.kind == "number" for k in p.keys]
    band_keys = [p.keys[0] for ps in specs.values() for p in ps if p.kind == "band"]
    nums = series.numbers(engine, num_keys, t0, t1)
    flags = series.states(engine, band_keys, t0, t1)
    groups = []
    for g in layout.order(set(by_group)):
        rows = [_row(cfg, k, by_group[g][k], values, now) for k in sorted(by_group[g])]
        numbers, bands = _plot(cfg, specs[g], nums, flags)
        groups.append(
            {
                "group": g,
                "title": layout.title_of(g),
                "rows": rows,
                **(devices(rows) if g in layout.PER_DEVICE else {}),
                "svg": group_svg(g, numbers, bands, t0, t1, cfg.local_tz, chosen) if svg and (numbers or bands) else "",
                "numbers": numbers,
                "bands": bands,
            }
        )
    safe = values.get("safety.safe")
    return {
        "time": snap.time,
        "range": chosen,
        "auto": range_name is None,
        "since": t0.isoformat(),
        "until": t1.isoformat(),
        "safe_to_observe": bool(safe and safe.value is True and not safe.stale),
        "reasons": safety_reasons(values, now),
        "groups": groups,
        "other": [_row(cfg, k, values[k], values, now) for k in sorted(hidden)],
    }


def safety_reasons(values: dict[str, StatusValue], now: datetime) -> str:
    """Why it is unsafe: the safety monitor's reasons, or that its decision is old (monitor:safety is not running)."""
    safe = values.get("safety.safe")
    if safe is None:
        return "no safety decision on the board (is monitor:safety running?)"
    if safe.stale:
        return f"the last safety decision is {age_text((now - as_utc(safe.time)).total_seconds())} old"
    reasons = values.get("safety.reasons")
    return str(reasons.value or "") if reasons is not None else ""


Range = Annotated[
    RangeName | None, Query(description="1h, 6h, 24h or night (since the last local noon); default: one with data")
]


@router.get("/api/monitors")
async def monitors_json(request: Request, range: Range = None) -> dict[str, Any]:  # noqa: A002 - the query's name
    """The Monitors page as data: per group its values (human text, state, age) and plotted series."""

    def build() -> dict[str, Any]:
        view = board_view(request, range, svg=False)
        for g in view["groups"]:
            g["plot"] = {
                "numbers": [
                    {
                        "unit": p.unit,
                        "lines": {
                            ln.key: [[b.time.isoformat(), b.lo, b.hi, b.mean] for b in ln.buckets] for ln in p.lines
                        },
                    }
                    for p in g.pop("numbers")
                ],
                "bands": {
                    b.key: [[s.start.isoformat(), s.end.isoformat(), s.lo, s.hi] for s in b.spans]
                    for b in g.pop("bands")
                },
            }
            g.pop("svg")
        return view

    return await run_in_threadpool(build)


@router.get("/monitors/plots.css")
async def plots_css() -> Response:
    return Response(PLOT_CSS, media_type="text/css", headers={"Cache-Control": "max-age=300"})


@router.get("/monitors/plots/{group}.svg")
async def plot(
    request: Request,
    group: str,
    range: Range = None,  # noqa: A002
    hours: Annotated[float | None, Query(gt=0, le=24 * 31, description="Instead of range: the last N hours")] = None,
) -> Response:
    """One group's plot on its own (styles inside), e.g. for another page or a report."""

    def build() -> str:
        cfg, engine = request.app.state.cfg, request.app.state.engine
        snap = snapshot(engine, f"{group}.")
        if not snap.values:
            raise HTTPException(404, f"group: nothing on the board in {group!r}")
        now = as_utc(snap.time)
        name = range or ("custom" if hours else default_range(engine, sorted(snap.values), now))
        t0, t1 = (now - timedelta(hours=hours), now) if hours and not range else time_range(name, now, cfg.local_tz)
        specs = layout.panels(group, {k: v for k, v in snap.values.items() if state(cfg, k, snap.values) != "na"})
        nums = series.numbers(engine, [k for p in specs if p.kind == "number" for k in p.keys], t0, t1)
        flags = series.states(engine, [p.keys[0] for p in specs if p.kind == "band"], t0, t1)
        numbers, bands = _plot(cfg, specs, nums, flags)
        return group_svg(group, numbers, bands, t0, t1, cfg.local_tz, name, standalone=True)

    svg = await run_in_threadpool(build)
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=30"})


@router.get("/monitors", response_class=HTMLResponse)
async def monitors_page(request: Request, range: Range = None) -> Response:  # noqa: A002
    view = await run_in_threadpool(board_view, request, range)
    ctx = view | {
        "ranges": RANGE_LABELS,
        "identity": current_identity(request),
        "refresh_s": request.app.state.cfg.web.refresh_s,
    }
    return request.app.state.templates.TemplateResponse(request, "monitors.html", ctx)
