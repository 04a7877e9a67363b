"""Ordering and constraint decisions, checked against astropy; a night's plan in simulated time."""

from __future__ import annotations

import random
import warnings
from datetime import UTC, datetime, timedelta

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import ICRS, AltAz, SkyCoord, get_body
from astropy.time import Time

from gozen.config import Site
from gozen.queue.plan import plan
from gozen.queue.recipe import Recipe
from gozen.queue.scheduler import Candidate, altaz, choose, evaluate, sky_at
from gozen.sky import site_location

SITE = Site()
NIGHT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # 23:00 at Kiso
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def astropy_alt(ra: float, dec: float, when: datetime) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Time(when)
        return float(
            SkyCoord(ra * u.deg, dec * u.deg).transform_to(AltAz(obstime=t, location=site_location(SITE))).alt.deg
        )


def cand(name: str, ra: float, dec: float, priority: str = "normal", minute: int = 0, **recipe: object) -> Candidate:
    r = Recipe.model_validate(
        {
            "name": name,
            "priority": priority,
            "steps": [{"slew": {"ra_deg": ra, "dec_deg": dec}}, {"expose": {"object": name, "frames": 120, "fps": 2}}],
            **recipe,
        }
    )
    rank = {"interrupt": 0, "high": 1, "normal": 2, "low": 3}[priority]
    return Candidate(r.uuid, name, rank, T0 + timedelta(minutes=minute), r, ra, dec)


def test_altitudes_agree_with_astropy_within_an_arcsecond() -> None:
    rng = random.Random(5)
    for _ in range(40):
        ra, dec = rng.uniform(0, 360), rng.uniform(-60, 89)
        when = NIGHT + timedelta(minutes=rng.uniform(0, 600))
        alt, _ = altaz(SITE, sky_at(SITE, when), np.array([ra]), np.array([dec]))
        assert alt[0] == pytest.approx(astropy_alt(ra, dec, when), abs=1 / 3600)


def test_priority_then_window_end_then_submission() -> None:
    sky = sky_at(SITE, NIGHT)
    up_ra, up_dec = sky.lst_deg, SITE.lat_deg  # the zenith: every constraint holds
    end = (NIGHT + timedelta(hours=1)).isoformat()
    cs = [
        cand("low", up_ra, up_dec, "low", 0),
        cand("normal-late", up_ra, up_dec, "normal", 1),
        cand("normal-early", up_ra, up_dec, "normal", 2),
        cand("normal-closing", up_ra, up_dec, "normal", 3, window={"not_after": end}),
        cand("high", up_ra, up_dec, "high", 4),
        cand("toO", up_ra, up_dec, "interrupt", 5),
    ]
    order = [v.candidate.name for v in evaluate(cs, sky, SITE, safe=True)]
    assert order == ["toO", "high", "normal-closing", "normal-late", "normal-early", "low"]
    assert choose(cs, sky, SITE, safe=True).name == "toO"


def test_constraints_decided_as_astropy_says() -> None:
    sky = sky_at(SITE, NIGHT)
    rng = random.Random(9)
    checked = 0
    while checked < 30:
        ra, dec = rng.uniform(0, 360), rng.uniform(-40, 89)
        alt = astropy_alt(ra, dec, NIGHT)
        if abs(alt - 40) < 1 / 3600:
            continue  # closer to the limit than the agreement promised
        [v] = evaluate([cand("t", ra, dec, constraints={"min_alt_deg": 40})], sky, SITE, safe=True)
        assert v.runnable == (alt > 40), (ra, dec, alt, v.reason)
        if not v.runnable:
            assert v.reason.startswith("altitude")
        checked += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = AltAz(obstime=Time(NIGHT), location=site_location(SITE), pressure=0)
        moon = get_body("moon", Time(NIGHT), site_location(SITE)).transform_to(frame)  # as seen from Kiso
        beside = moon.directional_offset_by(0 * u.deg, 3 * u.deg).transform_to(ICRS())
    near = cand("near-moon", float(beside.ra.deg), float(beside.dec.deg), constraints={"min_moon_sep_deg": 20})
    [v] = evaluate([near], sky, SITE, safe=True)
    assert not v.runnable and v.reason.startswith("Moon 3.0 deg away"), v.reason
    later = cand("later", sky.lst_deg, SITE.lat_deg, window={"not_before": (NIGHT + timedelta(hours=2)).isoformat()})
    assert evaluate([later], sky, SITE, safe=True)[0].reason.startswith("window opens")
    day = cand("dark-only", sky.lst_deg, SITE.lat_deg, constraints={"max_sun_alt_deg": -18})
    noon = sky_at(SITE, datetime(2026, 11, 26, 3, 0, tzinfo=UTC))
    assert evaluate([day], noon, SITE, safe=True)[0].reason.startswith("Sun at +")
    assert evaluate([day], sky, SITE, safe=False, safe_reason="humidity 96% > 85%")[0].reason == (
        "unsafe weather: humidity 96% > 85%"
    )


def test_a_nights_plan_runs_each_recipe_only_when_it_may_run() -> None:
    start, end = datetime(2026, 11, 25, 9, 0, tzinfo=UTC), datetime(2026, 11, 25, 20, 30, tzinfo=UTC)
    cs = [cand(f"field-{h:02d}", (h * 15.0) % 360, 30.0, minute=h) for h in range(24)]
    cs.append(cand("toO", 60.0, 20.0, "interrupt", 30, constraints={"min_alt_deg": 20}))
    slots = plan(cs, SITE, start, end)
    assert slots[0].candidate.name == "toO" or astropy_alt(60.0, 20.0, start) < 20.5
    for a, b in zip(slots, slots[1:], strict=False):
        assert a.end <= b.start  # one at a time
    for s in slots:
        c = s.candidate
        limit = c.recipe.constraints.min_alt_deg or 0
        assert astropy_alt(c.ra_deg, c.dec_deg, s.start) > limit - 0.5, (c.name, s.start)
    names = {s.candidate.name for s in slots}
    assert len(names) == len(slots) and len(slots) >= 12  # a night's worth, none twice
