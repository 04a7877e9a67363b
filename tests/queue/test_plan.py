"""The night plan: overheads counted, the horizon mask honoured, remade without holes; its picture."""

from __future__ import annotations

import random
import subprocess
import warnings
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, SkyCoord
from astropy.time import Time

from gozen.config import Overheads, Site
from gozen.db.states import RecipeState
from gozen.db.types import utcnow
from gozen.queue import store
from gozen.queue.plan import NightPlan, night_bounds, night_plan, plan
from gozen.queue.recipe import Recipe, parse_recipe
from gozen.queue.scheduler import Candidate, horizon_limit
from gozen.sky import site_location, zenith_radec
from gozen.web import plan_picture
from tests.conftest import gozen_cmd
from tests.queue.test_hardening import setup

SITE = Site()
NIGHT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # 23:00 at Kiso
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
OVERHEADS = Overheads(slew_rate_deg_s=1.5, slew_accel_s=3.0, settle_s=5.0, readout_s=2.0)
RANKS = {"interrupt": 0, "high": 1, "normal": 2, "low": 3}


def cand(name: str, ra: float, dec: float, priority: str = "normal", count: int = 3, **fields: Any) -> Candidate:
    r = Recipe.model_validate(
        {
            "name": name,
            "priority": priority,
            "steps": [
                {"slew": {"ra_deg": ra % 360.0, "dec_deg": dec}},
                {"expose": {"object": name, "frames": 20, "fps": 2, "count": count}},
            ],
            **fields,
        }
    )
    return Candidate(r.uuid, name, RANKS[priority], T0, r, ra % 360.0, dec)


def astropy_altaz(ra: float, dec: float, when: datetime) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aa = SkyCoord(ra * u.deg, dec * u.deg).transform_to(AltAz(obstime=Time(when), location=site_location(SITE)))
    return float(aa.alt.deg), float(aa.az.deg)


# -- overheads -------------------------------------------------------------------------------
def test_slews_settling_and_readouts_are_counted_at_the_configured_rates() -> None:
    ra0, lat = zenith_radec(SITE, NIGHT)
    a = cand("A", ra0, lat - 30, "high")  # south of the zenith
    b = cand("B", ra0, lat + 30, "normal")  # 60 deg north of A on the declination axis only
    c = cand("C", ra0 - 20, lat + 20, "low", count=5)  # 20 deg in hour angle and 10 in declination from B
    first, second, third = plan([c, b, a], SITE, NIGHT, NIGHT + timedelta(hours=2), OVERHEADS)
    assert [s.candidate.name for s in (first, second, third)] == ["A", "B", "C"]
    assert second.slew_s == pytest.approx(60 / 1.5 + 3.0)  # both axes at once: the longer move counts
    assert third.slew_s == pytest.approx(20 / 1.5 + 3.0, abs=0.05)
    assert first.slew_s == pytest.approx(30 / 1.5 + 3.0, abs=0.05)  # from park at the zenith
    for s, count in ((first, 3), (second, 3), (third, 5)):
        assert s.settle_s == 5.0 and s.readout_s == 2.0 * count
        exposing = count * 20 / 2
        assert (s.end - s.start).total_seconds() == pytest.approx(s.overhead_s + exposing)
    assert second.start == first.end and third.start == second.end  # no idle gaps


def test_without_overheads_a_recipe_takes_its_own_estimate() -> None:
    ra0, lat = zenith_radec(SITE, NIGHT)
    [s] = plan([cand("A", ra0, lat)], SITE, NIGHT, NIGHT + timedelta(hours=1))
    assert (s.end - s.start).total_seconds() == s.candidate.recipe.duration_s() and s.overhead_s == 0.0


# -- the horizon mask ------------------------------------------------------------------------
def test_the_horizon_mask_keeps_a_recipe_out_while_its_target_is_below_it() -> None:
    ra0, _ = zenith_radec(SITE, NIGHT)
    rising = cand("rising", ra0 + 60, 20.0, constraints={"min_alt_deg": 20})  # in the east, climbing
    alt, az = astropy_altaz(rising.ra_deg or 0.0, 20.0, NIGHT)
    assert 20 < alt < 50 and 60 < az < 120  # up, but behind the wall below
    walled = Site(horizon=((0.0, 0.0), (40.0, 0.0), (45.0, 60.0), (135.0, 60.0), (140.0, 0.0)))
    [free] = plan([rising], SITE, NIGHT, NIGHT + timedelta(hours=8), OVERHEADS)
    [masked] = plan([rising], walled, NIGHT, NIGHT + timedelta(hours=8), OVERHEADS)
    assert free.start == NIGHT
    assert masked.start > NIGHT + timedelta(minutes=30)
    alt, az = astropy_altaz(rising.ra_deg or 0.0, 20.0, masked.start)
    assert alt >= float(horizon_limit(walled, np.array([az]))[0]) - 0.05  # above the wall when it starts
    alt, az = astropy_altaz(rising.ra_deg or 0.0, 20.0, masked.start - timedelta(minutes=2))
    assert alt < float(horizon_limit(walled, np.array([az]))[0])  # and not idle before: behind it 2 min earlier
    never = Site(horizon=((0.0, 75.0), (180.0, 75.0)))  # higher than the target ever climbs
    assert plan([rising], never, NIGHT, NIGHT + timedelta(hours=10), OVERHEADS) == []


def test_idle_time_is_skipped_to_the_window_opening() -> None:
    opens = NIGHT + timedelta(minutes=47, seconds=13)
    ra0, lat = zenith_radec(SITE, NIGHT)
    later = cand("later", ra0 + 10, lat, window={"not_before": opens.isoformat()})
    [s] = plan([later], SITE, NIGHT, NIGHT + timedelta(hours=3), OVERHEADS, step_s=3600)
    assert s.start == opens


def test_a_thousand_recipes_fill_the_night_one_at_a_time() -> None:
    rng = random.Random(3)
    start, end = night_bounds_utc(date(2026, 11, 25))
    cs = [
        cand(f"f{i}", rng.uniform(0, 360), rng.uniform(-20, 85), rng.choice(list(RANKS)), count=rng.randint(1, 4))
        for i in range(1000)
    ]
    slots = plan(cs, SITE, start, end, OVERHEADS)
    assert len(slots) > 200 and len({s.candidate.uuid for s in slots}) == len(slots)
    assert all(a.end <= b.start for a, b in zip(slots, slots[1:], strict=False))
    assert sum(s.slew_s > 0 for s in slots) > 0.9 * len(slots)
    idle = sum((b.start - a.end).total_seconds() for a, b in zip(slots, slots[1:], strict=False))
    assert idle < 600  # plenty of targets up all night: hardly any waiting


def night_bounds_utc(night: date) -> tuple[datetime, datetime]:
    from gozen.config import Config

    return night_bounds(Config(), night)


# -- remade when the queue changes -----------------------------------------------------------
def circumpolar(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [{"slew": {"ra_deg": 10.0, "dec_deg": 85.0}}, {"expose": {"object": name, "frames": 600, "fps": 2}}],
    }


def test_a_cancelled_recipe_leaves_no_hole_in_the_next_plan(tmp_path: Path) -> None:
    _, cfg, engine = setup(tmp_path)
    night = utcnow().date() + timedelta(days=2)
    uuids = [store.submit(engine, parse_recipe(circumpolar(n)), "test", {}).uuid for n in ("one", "two", "three")]
    before = night_plan(cfg, engine, night)
    assert [s.candidate.uuid for s in before.slots] == uuids
    assert not before.safe and "no fresh safety decision" in before.unsafe_reason  # planned all the same
    assert night_plan(cfg, engine, night) is before  # nothing changed: the same plan
    store.cancel(engine, uuids[1], "test")
    after = night_plan(cfg, engine, night)
    assert [s.candidate.uuid for s in after.slots] == [uuids[0], uuids[2]]
    assert after.slots[0].start == before.slots[0].start
    assert after.slots[1].start == after.slots[0].end < before.slots[2].start  # moved up into the gap


def test_a_recipe_whose_window_closes_first_is_dropped_without_a_hole() -> None:
    ra0, lat = zenith_radec(SITE, NIGHT)
    first = cand("first", ra0, lat + 20, "high", count=30)  # ~ 10 min
    missed = cand("missed", ra0, lat - 20, window={"not_after": (NIGHT + timedelta(minutes=5)).isoformat()})
    last = cand("last", ra0, lat, "low")
    slots = plan([first, missed, last], SITE, NIGHT, NIGHT + timedelta(hours=2), OVERHEADS)
    assert [s.candidate.name for s in slots] == ["first", "last"] and slots[1].start == slots[0].end


# -- the picture -------------------------------------------------------------------------------
def a_night(n_recipes: int, safe: bool = True) -> NightPlan:
    start, end = night_bounds_utc(date(2026, 11, 25))
    rng = random.Random(7)
    cs = [cand(f"field {i:03d}", rng.uniform(0, 360), rng.uniform(0, 80), count=30) for i in range(n_recipes)]
    slots = plan(cs, SITE, start, end, OVERHEADS)
    return NightPlan(date(2026, 11, 25), start, end, slots, cs, start, safe, "" if safe else "humidity 96% > 85%", SITE)


def ids(svg: str) -> set[str]:
    return {e.get("id", "") for e in ET.fromstring(svg).iter()}


def test_the_picture_has_a_row_per_recipe_the_twilight_the_moon_and_now() -> None:
    p = a_night(12)
    svg = plan_picture.svg(p, now=p.start + timedelta(hours=3))
    got = ids(svg)
    assert svg.startswith("<svg")
    for gid in ("twilight-civil", "twilight-nautical", "twilight-astronomical", "night-dark", "moon-altitude"):
        assert gid in got
    assert "sun-altitude" in got and "now" in got and "unsafe" not in got and "more" not in got
    assert {f"row-{i}" for i in range(12)} <= got and "row-12" not in got
    assert {f"altitude-{i}" for i in range(12)} <= got and {f"limit-{i}" for i in range(12)} <= got
    planned = len(p.slots)
    assert 0 < planned <= 12
    assert {f"slot-{i}" for i in range(planned)} <= got and {f"overhead-{i}" for i in range(planned)} <= got
    for s in p.slots:
        assert s.candidate.name in svg  # names are text, at the left of their rows
    assert f"{planned} of 12 queued recipes planned" in svg


def test_the_picture_says_unsafe_now_and_how_many_more_rows_there_are() -> None:
    p = a_night(55, safe=False)
    svg = plan_picture.svg(p, now=p.start)
    got = ids(svg)
    assert "unsafe" in got and "UNSAFE NOW (humidity 96% &gt; 85%)" in svg
    assert "row-39" in got and "row-40" not in got and "more" in got and "+15 more" in svg
    height_pt = float(ET.fromstring(svg).get("height", "").removesuffix("pt"))
    assert height_pt == float(ET.fromstring(plan_picture.svg(a_night(40))).get("height", "").removesuffix("pt"))


def test_queue_plan_writes_the_picture_as_svg_and_png(tmp_path: Path) -> None:
    config_file, _, engine = setup(tmp_path)
    store.submit(engine, parse_recipe(circumpolar("pole")), "test", {})
    night = (utcnow().date() + timedelta(days=1)).isoformat()
    svg, png = tmp_path / "plan.svg", tmp_path / "plan.png"
    args = ("queue", "plan", "--night", night, "--svg", str(svg), "--png", str(png))
    p = subprocess.run(gozen_cmd(config_file, *args), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "1 of 1 queued recipes planned" in p.stdout and "pole" in p.stdout and "unsafe now" in p.stdout
    assert "slot-0" in ids(svg.read_text()) and png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    bad = subprocess.run(
        gozen_cmd(config_file, "queue", "plan", "--png", str(tmp_path / "no" / "x.png")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "--png" in bad.stderr


def test_an_empty_queue_draws_the_night_and_says_nothing_is_queued() -> None:
    start, end = night_bounds_utc(date(2026, 11, 25))
    svg = plan_picture.svg(NightPlan(date(2026, 11, 25), start, end, [], [], start, True, "", SITE))
    got = ids(svg)
    assert "empty" in got and "nothing queued" in svg and "moon-altitude" in got and "row-0" not in got


def test_tonights_plan_starts_when_the_running_recipe_ends_where_it_points(tmp_path: Path) -> None:
    _, cfg, engine = setup(tmp_path)
    night = date(2026, 11, 25)
    now = night_bounds_utc(night)[0] + timedelta(hours=2)
    running, waiting = (store.submit(engine, parse_recipe(circumpolar(n)), "test", {}).uuid for n in ("run", "wait"))
    store.set_state(engine, running, RecipeState.EXECUTING, "started", started_at=now - timedelta(minutes=2))
    p = night_plan(cfg, engine, night, now=now)
    assert p.executing is not None and p.executing.candidate.uuid == running
    assert p.executing.start == now - timedelta(minutes=2)
    exposing = 600 / 2 + cfg.queue.overheads.readout_s
    assert p.executing.end - p.executing.start == timedelta(
        seconds=p.executing.slew_s + cfg.queue.overheads.settle_s + exposing
    )
    [slot] = p.slots
    assert slot.candidate.uuid == waiting and slot.start == p.executing.end == p.start
    assert slot.slew_s == 0.0 and slot.settle_s == 0.0  # already pointing there
    svg = plan_picture.svg(p, now=now)
    assert "run (running)" in svg and "slot-0" in ids(svg) and "slot-1" in ids(svg)
