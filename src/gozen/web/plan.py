"""The night's plan as a picture: `/queue/plan.svg?night=DATE` (tonight by default)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from gozen.queue.plan import night_plan
from gozen.queue.recipe import PRIORITY_OF_RANK
from gozen.web.plots import timeline
from gozen.web.queue import _cache

router = APIRouter()
PLAN_MAX_DAYS = 3660


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
    from gozen.db.types import utcnow

    state = request.app.state
    n = plan_night(night, utcnow().date())

    def build() -> str:
        start, end, slots = night_plan(state.cfg, state.engine, n, cache=_cache(request))
        bars = [(s.candidate.name, PRIORITY_OF_RANK[s.candidate.rank], s.start, s.end) for s in slots]
        return timeline(bars, start, end, f"night of {n}: {start:%H:%M}-{end:%H:%M} UTC (Sun below -12 deg)")

    return Response(await run_in_threadpool(build), media_type="image/svg+xml")
