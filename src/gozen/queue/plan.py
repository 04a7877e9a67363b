"""The night's plan: what would run when, the queue played forward in simulated time with overheads.

`plan` plays the scheduler's choice forward from a start time: each recipe costs the slew from where
the telescope pointed before, the settling after it, a readout per exposure and its own exposures and
waits. `night_plan` plans a night from the queued recipes (from now on, tonight), remade whenever the
queue, the weather or the minute changes, for `gozen queue plan` and the Queue page's picture.

Slews are timed on the axes of an equatorial mount (the simulated one, which parks at the zenith):
hour angle and declination move at once, each at `slew_rate_deg_s`, so a slew lasts the larger of the
two moves over the rate, plus `slew_accel_s` for speeding up and slowing down.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np
from sqlalchemy import Engine

from gozen.config import Config, Overheads, Site
from gozen.db.states import RecipeState
from gozen.db.types import utcnow
from gozen.queue import store
from gozen.queue.recipe import ExposeStep, ParkStep, Recipe, SlewStep, WaitStep
from gozen.queue.scheduler import Candidate, Columns, choose, sky_at

SIDEREAL_DEG_S = 360.98564736629 / 86400.0  # how fast the hour angle of a fixed star grows
REFINE_S = 30.0  # an idle gap is closed to within this


@dataclass(frozen=True)
class Slot:
    """One recipe in the plan: from start (the slew begins) to end; the overheads it includes."""

    candidate: Candidate
    start: datetime
    end: datetime
    slew_s: float = 0.0
    settle_s: float = 0.0
    readout_s: float = 0.0

    @property
    def overhead_s(self) -> float:
        return self.slew_s + self.settle_s + self.readout_s


@dataclass(frozen=True)
class Cost:
    """What a recipe takes, second by second: the telescope moving and settling, the camera reading out,
    and its own work (exposures open, waits)."""

    slew_s: float
    settle_s: float
    readout_s: float
    work_s: float

    @property
    def total_s(self) -> float:
        return self.slew_s + self.settle_s + self.readout_s + self.work_s


@dataclass
class Mount:
    """Where the plan's telescope points: tracking (RA, Dec), or parked (ra_deg None: the simulated
    mount parks at the zenith, hour angle 0 and declination the site's latitude)."""

    site: Site
    ra_deg: float | None = None
    dec_deg: float | None = None

    def slew_s(self, lst_deg: float, ra_deg: float | None, dec_deg: float, o: Overheads) -> float:
        """Seconds to move both axes at once to (RA, Dec) (ra_deg None: to park); 0 when already there."""
        from_ha = 0.0 if self.ra_deg is None else lst_deg - self.ra_deg
        to_ha = 0.0 if ra_deg is None else lst_deg - ra_deg
        from_dec = self.site.lat_deg if self.dec_deg is None else self.dec_deg
        move = max(abs((to_ha - from_ha + 180.0) % 360.0 - 180.0), abs(dec_deg - from_dec))
        self.ra_deg, self.dec_deg = ra_deg, dec_deg
        return move / o.slew_rate_deg_s + o.slew_accel_s if move > 1e-6 else 0.0


def recipe_cost(
    recipe: Recipe, mount: Mount, lst_deg: float, o: Overheads, fields: dict[str, tuple[float, float]]
) -> Cost:
    """The recipe's steps timed from where `mount` points (moved along as the steps slew and park);
    `lst_deg` is the sidereal time at its start. A slew to a field not in `fields` costs nothing."""
    slew = settle = readout = work = 0.0
    for step in recipe.steps:
        lst = lst_deg + (slew + settle + readout + work) * SIDEREAL_DEG_S
        if isinstance(step, SlewStep):
            a = step.slew
            target = (a.ra_deg, a.dec_deg) if a.field is None else fields.get(a.field)
            if target is not None and target[0] is not None and target[1] is not None:
                s = mount.slew_s(lst, target[0], target[1], o)
                slew, settle = slew + s, settle + (o.settle_s if s else 0.0)
        elif isinstance(step, ParkStep):
            slew += mount.slew_s(lst, None, mount.site.lat_deg, o)
        elif isinstance(step, ExposeStep):
            e = step.expose
            work += e.count * e.frames / e.fps
            readout += e.count * o.readout_s
        elif isinstance(step, WaitStep):
            work += step.wait.seconds
    return Cost(slew, settle, readout, work)


def plan(
    cands: list[Candidate],
    site: Site,
    start: datetime,
    end: datetime,
    overheads: Overheads | None = None,
    step_s: float = 300.0,
    fields: dict[str, tuple[float, float]] | None = None,
    pointing: tuple[float, float] | None = None,
) -> list[Slot]:
    """What would run when between start and end (safe weather assumed): the scheduler's choice
    played forward, each recipe costing its overheads (none when `overheads` is None: then its
    `duration_s()` estimate). When nothing may run, the plan jumps to the next time something can:
    a window opening or the next `step_s`, then back to the earliest runnable moment (to REFINE_S).
    The telescope starts at `pointing` (RA, Dec), or parked."""
    cols = Columns(list(cands))
    index = {id(c): i for i, c in enumerate(cols.cands)}
    lst0 = _lst_deg(site, start)
    mount = Mount(site) if pointing is None else Mount(site, *pointing)
    slots: list[Slot] = []
    t = start
    while t < end and len(slots) < len(cols.cands):
        pick = choose(cols, sky_at(site, t), site, safe=True)
        if pick is None:
            t = _next_runnable(cols, site, t, end, step_s)
            continue
        cols.begin[index[id(pick)]] = np.inf  # planned: its window never opens again in this plan
        if overheads is None:
            slot = Slot(pick, t, t + timedelta(seconds=max(pick.recipe.duration_s(), 1.0)))
        else:
            lst = lst0 + (t - start).total_seconds() * SIDEREAL_DEG_S
            c = recipe_cost(pick.recipe, mount, lst, overheads, fields or {})
            slot = Slot(pick, t, t + timedelta(seconds=max(c.total_s, 1.0)), c.slew_s, c.settle_s, c.readout_s)
        slots.append(slot)
        t = slot.end
    return slots


def _next_runnable(cols: Columns, site: Site, t: datetime, end: datetime, step_s: float) -> datetime:
    """The earliest time after t when a candidate may run: a probe at the next window opening or
    step_s on, then bisection back towards t (targets rise; the Sun sets) to within REFINE_S."""
    now = t.timestamp()
    opening = cols.begin[(cols.begin > now) & np.isfinite(cols.begin)]
    probe = min(t + timedelta(seconds=step_s), end)
    if len(opening):
        probe = min(probe, datetime.fromtimestamp(float(opening.min()), UTC))
    if probe >= end or choose(cols, sky_at(site, probe), site, safe=True) is None:
        return probe if probe < end else end
    lo, hi = t, probe  # nothing at lo, something at hi
    while (hi - lo).total_seconds() > REFINE_S:
        mid = lo + (hi - lo) / 2
        if choose(cols, sky_at(site, mid), site, safe=True) is None:
            lo = mid
        else:
            hi = mid
    return hi


def _lst_deg(site: Site, when: datetime) -> float:
    """Local apparent sidereal time, degrees (the scheduler's sky has it; no astropy call per plan)."""
    return sky_at(site, when).lst_deg


# -- the night --------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def sun_track(site: Site, night: date) -> tuple[tuple[datetime, ...], tuple[float, ...]]:
    """The Sun's altitude every 5 minutes from local noon on `night` to the next local noon."""
    import astropy.units as u
    from astropy.coordinates import AltAz, get_sun
    from astropy.time import Time

    from gozen.sky import site_location

    noon = datetime(night.year, night.month, night.day, 12, tzinfo=UTC) - timedelta(hours=site.lon_deg / 15)
    times = tuple(noon + timedelta(minutes=m) for m in range(0, 24 * 60 + 1, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Time(list(times))
        alt = get_sun(t).transform_to(AltAz(obstime=t, location=site_location(site))).alt.to_value(u.deg)
    return times, tuple(float(a) for a in alt)


def night_bounds(cfg: Config, night: date, sun_limit_deg: float = -12.0) -> tuple[datetime, datetime]:
    """From when the Sun sinks below sun_limit_deg in the evening of `night` (local) to when it rises above."""
    times, alt = sun_track(cfg.site, night)
    dark = np.nonzero(np.array(alt) < sun_limit_deg)[0]
    if len(dark) == 0:
        return times[len(times) // 2], times[len(times) // 2]
    return times[dark[0]], times[dark[-1]]


@dataclass(frozen=True)
class NightPlan:
    """A night's plan as `gozen queue plan` and the Queue page show it."""

    night: date
    start: datetime  # when the plan starts: the dark's start, or now when tonight has begun
    end: datetime  # the dark's end (the Sun above -12 deg)
    slots: list[Slot]
    queued: list[Candidate]  # every queued recipe, planned or not
    made_at: datetime
    safe: bool = True  # the safety decision when the plan was made (the plan assumes safe weather)
    unsafe_reason: str = ""
    site: Site = field(default_factory=Site)
    executing: Slot | None = None  # the recipe running when the plan was made, to its estimated end

    @property
    def overhead_s(self) -> float:
        return sum(s.overhead_s for s in self.slots)


_PLANS: OrderedDict[tuple[object, ...], NightPlan] = OrderedDict()
_PLANS_LOCK = threading.Lock()


def night_plan(
    cfg: Config, engine: Engine, night: date, cache: store.CandidateCache | None = None, now: datetime | None = None
) -> NightPlan:
    """The night's plan from the queued recipes, remade when the queue (its newest recipe event), the
    safety decision, the night or the minute changed. When unsafe now, the plan still assumes it turns
    safe (and says it is unsafe now). Once the night has begun, the plan starts now, or when the
    running recipe is estimated to end. `now`: the present (tests plan a night as if in it)."""
    from gozen.queue.server import safety

    version = store.queue_version(engine)
    safe, reason = safety(engine)
    now = now or utcnow()
    start, end = night_bounds(cfg, night)
    start = min(max(start, now), end)  # tonight: from now on
    minute = math.floor(start.timestamp() / 60)  # a night yet to come is planned once, tonight once a minute
    fields = cfg.queue.positions()
    key = (cfg.database_url, cfg.site, cfg.queue.overheads, tuple(fields.items()), version, safe, reason, night, minute)
    with _PLANS_LOCK:
        if key in _PLANS:
            _PLANS.move_to_end(key)
            return _PLANS[key]
    queued = (cache or store.CandidateCache()).queued(engine)
    running = _executing(engine, cfg, now) if start == now else None
    pointing = None
    if running is not None:
        start = min(max(start, running.end), end)
        if running.candidate.ra_deg is not None and running.candidate.dec_deg is not None:
            pointing = (running.candidate.ra_deg, running.candidate.dec_deg)
    slots = plan(queued, cfg.site, start, end, cfg.queue.overheads, fields=fields, pointing=pointing)
    made = NightPlan(night, start, end, slots, queued, now, safe, reason, cfg.site, running)
    with _PLANS_LOCK:
        _PLANS[key] = made
        while len(_PLANS) > 8:
            _PLANS.popitem(last=False)
    return made


def _executing(engine: Engine, cfg: Config, now: datetime) -> Slot | None:
    """The running recipe as a slot from its start to its estimated end (at least until now)."""
    rows = store.in_state(engine, (RecipeState.EXECUTING,), limit=1)
    began = rows[0].started_at if rows else None
    if began is None:
        return None
    r = rows[0]
    c = Candidate(r.uuid, r.name, r.priority_rank, r.submitted_at, r.recipe, r.ra_deg, r.dec_deg)
    cost = recipe_cost(r.recipe, Mount(cfg.site), _lst_deg(cfg.site, began), cfg.queue.overheads, cfg.queue.positions())
    end = max(began + timedelta(seconds=cost.total_s), now)
    return Slot(c, began, end, cost.slew_s, cost.settle_s, cost.readout_s)


# -- curves for the picture -------------------------------------------------------------------
@lru_cache(maxsize=16)
def moon_track(site: Site, night: date) -> tuple[tuple[float, ...], float]:
    """The Moon's altitude at sun_track's times (topocentric, degrees), and the fraction of it lit at midnight."""
    import astropy.units as u
    from astropy.coordinates import AltAz, get_body, get_sun
    from astropy.time import Time

    from gozen.sky import site_location

    times, _ = sun_track(site, night)
    loc = site_location(site)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Time(list(times))
        moon = get_body("moon", t, loc)
        alt = moon.transform_to(AltAz(obstime=t, location=loc)).alt.to_value(u.deg)
        mid = len(times) // 2
        elongation = float(moon[mid].separation(get_sun(t[mid])).to_value(u.deg))
    return tuple(float(a) for a in alt), (1.0 - math.cos(math.radians(elongation))) / 2.0


def target_tracks(
    site: Site, times: list[datetime], ra_deg: np.ndarray, dec_deg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(altitude, azimuth) in degrees of each target (rows) at each time (columns), astropy's AltAz, no refraction."""
    import astropy.units as u
    from astropy.coordinates import AltAz, SkyCoord
    from astropy.time import Time

    from gozen.sky import site_location

    if len(ra_deg) == 0 or not times:
        return np.zeros((len(ra_deg), len(times))), np.zeros((len(ra_deg), len(times)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = AltAz(obstime=Time(times)[None, :], location=site_location(site))
        aa = SkyCoord(ra_deg[:, None] * u.deg, dec_deg[:, None] * u.deg).transform_to(frame)
    return aa.alt.to_value(u.deg), aa.az.to_value(u.deg)
