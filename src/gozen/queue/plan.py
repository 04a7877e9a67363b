"""The night's plan: what would run when, the queue played forward in simulated time.

`night_bounds` finds the dark hours of a night; `plan` plays the scheduler's choice forward from
a start time, each recipe taking its estimated duration; `night_plan` plans tonight (or any
night) from the queued recipes, for `gozen queue plan` and the Queue page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from sqlalchemy import Engine

from gozen.config import Config, Site
from gozen.db.types import utcnow
from gozen.queue import store
from gozen.queue.scheduler import Candidate, choose, sky_at


@dataclass(frozen=True)
class Slot:
    candidate: Candidate
    start: datetime
    end: datetime


def plan(cands: list[Candidate], site: Site, start: datetime, end: datetime, step_s: float = 300.0) -> list[Slot]:
    """What would run when between start and end: the queue played forward in simulated time,
    each recipe taking its estimated duration, with safe weather assumed."""
    left = list(cands)
    t = start
    slots = []
    while t < end and left:
        pick = choose(left, sky_at(site, t), site, safe=True)
        if pick is None:
            t += timedelta(seconds=step_s)
            continue
        dur = timedelta(seconds=max(pick.recipe.duration_s(), 1.0))
        slots.append(Slot(pick, t, t + dur))
        left.remove(pick)
        t += dur
    return slots


def night_bounds(cfg: Config, night: date, sun_limit_deg: float = -12.0) -> tuple[datetime, datetime]:
    """From when the Sun sinks below sun_limit_deg in the evening of `night` (local) to when it rises above."""
    import astropy.units as u
    from astropy.coordinates import AltAz, get_sun
    from astropy.time import Time

    from gozen.sky import site_location

    noon = datetime(night.year, night.month, night.day, 12, tzinfo=UTC) - timedelta(hours=cfg.site.lon_deg / 15)
    times = [noon + timedelta(minutes=m) for m in range(0, 24 * 60 + 1, 5)]
    t = Time(times)
    alt = get_sun(t).transform_to(AltAz(obstime=t, location=site_location(cfg.site))).alt.to_value(u.deg)
    dark = np.nonzero(alt < sun_limit_deg)[0]
    if len(dark) == 0:
        return noon + timedelta(hours=12), noon + timedelta(hours=12)
    return times[dark[0]], times[dark[-1]]


def night_plan(
    cfg: Config, engine: Engine, night: date, cache: store.CandidateCache | None = None
) -> tuple[datetime, datetime, list[Slot]]:
    start, end = night_bounds(cfg, night)
    start = min(max(start, utcnow()), end)  # tonight: from now on
    return start, end, plan((cache or store.CandidateCache()).queued(engine), cfg.site, start, end)
