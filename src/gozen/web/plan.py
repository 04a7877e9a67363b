"""The night's plan as a picture: `/queue/plan.svg?night=DATE` (tonight by default)."""

from __future__ import annotations

import threading
from datetime import date
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from gozen.db.types import utcnow
from gozen.queue.plan import NightPlan, night_plan
from gozen.web import plan_picture
from gozen.web.queue import _cache

router = APIRouter()
PLAN_MAX_DAYS = 3660
_DRAWN: dict[date, tuple[NightPlan, str]] = {}  # the last picture of each night, with the plan it shows
_DRAWN_LOCK = threading.Lock()


def plan_night(night: date | None, today: date) -> date:
    """The night to plan: tonight by default; 422 beyond what the ephemeris and calendar can handle."""
    if night is None:
        return today
    if abs((night - today).days) > PLAN_MAX_DAYS:
        raise HTTPException(
            422, f"night: {night} is more than {PLAN_MAX_DAYS} days from today ({today}); plans look at most that far"
        )
    return night


@router.get("/queue/plan.svg")
async def plan_svg(request: Request, night: Annotated[date | None, Query()] = None) -> Response:
    """The plan drawn (remade when the queue, the weather or the minute changed; at most MAX_ROWS rows)."""
    state = request.app.state
    n = plan_night(night, utcnow().date())

    def build() -> str:
        p = night_plan(state.cfg, state.engine, n, cache=_cache(request))
        with _DRAWN_LOCK:
            if n in _DRAWN and _DRAWN[n][0] is p:  # the same plan (same queue, weather, minute): drawn already
                return _DRAWN[n][1]
        text = plan_picture.svg(p, now=p.made_at)
        with _DRAWN_LOCK:
            _DRAWN[n] = (p, text)
            while len(_DRAWN) > 4:
                del _DRAWN[next(iter(_DRAWN))]
        return text

    return Response(await run_in_threadpool(build), media_type="image/svg+xml")
