"""The scheduler's sky against astropy's: altitudes to an arcsecond, the topocentric Moon and the Sun to
0.01 deg, at random targets and instants over years; and the decisions that follow from them (the Moon
near or opposite a target, targets an arcsecond either side of the altitude limit, the horizon mask)."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import ICRS, AltAz, SkyCoord, get_body
from astropy.time import Time

from gozen.config import Site
from gozen.queue.recipe import Recipe
from gozen.queue.scheduler import (
    Candidate,
    altaz,
    choose,
    evaluate,
    horizon_limit,
    moon_separation,
    place,
    sky_at,
)
from gozen.sky import site_location

SITE = Site()  # Kiso
ARCSEC = 1 / 3600
NIGHT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


def frame(when: datetime | Time, site: Site = SITE) -> AltAz:
    return AltAz(obstime=Time(when), location=site_location(site), pressure=0)  # no refraction


def to_icrs(alt: float, az: float, when: datetime) -> tuple[float, float]:
    """The ICRS position that astropy puts at (alt, az) at this instant."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = SkyCoord(az * u.deg, alt * u.deg, frame=frame(when)).transform_to(ICRS())
    return float(c.ra.deg), float(c.dec.deg)


def moon_altaz(when: datetime) -> SkyCoord:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_body("moon", Time(when), site_location(SITE)).transform_to(frame(when))


def cand(name: str, ra: float, dec: float, priority: str = "normal", **constraints: float) -> Candidate:
    r = Recipe.model_validate(
        {
            "name": name,
            "priority": priority,
            "constraints": constraints,
            "steps": [{"slew": {"ra_deg": ra, "dec_deg": dec}}, {"expose": {"object": name, "frames": 12}}],
        }
    )
    rank = {"interrupt": 0, "high": 1, "normal": 2, "low": 3}[priority]
    return Candidate(r.uuid, name, rank, NIGHT - timedelta(hours=1), r, ra, dec)


def test_300_random_targets_and_instants_agree_with_astropy() -> None:
    rng = np.random.default_rng(15)
    n = 300
    start = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    stamps = start + rng.uniform(0, 7 * 365.25 * 86400, n)  # 2024-2030, any second
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))  # uniform over the sphere
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Time(stamps, format="unix")
        where = frame(t)
        target = SkyCoord(ra * u.deg, dec * u.deg).transform_to(where)
        moon = get_body("moon", t, site_location(SITE))
        moon_seen = moon.transform_to(where)
        sun_alt = get_body("sun", t, site_location(SITE)).transform_to(where).alt.deg
        sep_seen = moon_seen.separation(target).deg  # both in the site's AltAz frame
        sep_gcrs = moon.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg  # astropy's own separation
    ours = np.zeros((n, 6))
    for i in range(n):
        sky = sky_at(SITE, datetime.fromtimestamp(stamps[i], UTC))
        alt, az = altaz(SITE, sky, ra[i : i + 1], dec[i : i + 1])
        sep = moon_separation(SITE, sky, ra[i : i + 1], dec[i : i + 1])
        ours[i] = alt[0], az[0], sep[0], sky.sun_alt_deg, sky.moon_alt_deg, sky.moon_az_deg
    d_alt = np.abs(ours[:, 0] - target.alt.deg)
    d_az = np.abs((ours[:, 1] - target.az.deg + 180) % 360 - 180) * np.cos(target.alt.rad)
    d_sep = np.abs(ours[:, 2] - sep_seen)
    d_sun = np.abs(ours[:, 3] - sun_alt)
    d_moon = np.hypot(ours[:, 4] - moon_seen.alt.deg, ((ours[:, 5] - moon_seen.az.deg + 180) % 360 - 180))
    print(
        f'max errors over {n}: alt {d_alt.max() * 3600:.4f}", az*cos(alt) {d_az.max() * 3600:.4f}", '
        f'Moon separation {d_sep.max() * 3600:.3f}", Sun alt {d_sun.max() * 3600:.4f}", '
        f'Moon alt/az {d_moon.max() * 3600:.3f}"'
    )
    assert d_alt.max() < ARCSEC, stamps[d_alt.argmax()]
    assert d_az.max() < ARCSEC, stamps[d_az.argmax()]
    assert d_sep.max() < 0.01, stamps[d_sep.argmax()]
    assert np.abs(ours[:, 2] - sep_gcrs).max() < 0.01
    assert d_sun.max() < 0.01, stamps[d_sun.argmax()]
    assert d_moon.max() < 0.01 / np.cos(np.radians(80))
    assert np.abs(ours[:, 4] - moon_seen.alt.deg).max() < 0.01
    up = target.alt.deg > 5
    airmass = 1 / np.sin(np.radians(ours[up, 0]))
    assert np.abs(airmass - target.secz[up]).max() < 1e-4  # airmass as astropy's secz


def test_sky_follows_the_earth_turning_within_a_minute() -> None:
    # The Earth turns 15 arcsec a second: each instant gets its own altitudes, not its minute's.
    ra, dec = to_icrs(45.0, 100.0, NIGHT)  # rising in the east
    for seconds in (0.0, 1.0, 29.5, 59.9):
        when = NIGHT + timedelta(seconds=seconds)
        alt, _ = altaz(SITE, sky_at(SITE, when), np.array([ra]), np.array([dec]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = SkyCoord(ra * u.deg, dec * u.deg).transform_to(frame(when)).alt.deg
        assert alt[0] == pytest.approx(want, abs=ARCSEC)
        assert want - 45.0 == pytest.approx(seconds * 0.003337, abs=3e-4)  # it did move: 12"/s at this az


def test_targets_an_arcsecond_either_side_of_the_altitude_limit_are_decided_as_astropy_says() -> None:
    when = NIGHT + timedelta(minutes=7, seconds=37.5)
    sky = sky_at(SITE, when)
    cands = []
    for az in (20.0, 100.0, 200.0, 290.0):
        for side in (-1, 1):
            ra, dec = to_icrs(40.0 + side * 2 * ARCSEC, az, when)
            cands.append(cand(f"az{az:.0f}{'+' if side > 0 else '-'}", ra, dec, min_alt_deg=40))
    verdicts = {v.candidate.name: v for v in evaluate(cands, sky, SITE, safe=True)}
    assert sorted(n for n, v in verdicts.items() if v.runnable) == sorted(["az20+", "az100+", "az200+", "az290+"])
    assert all(v.reason == "altitude 40.0 deg < 40" for v in verdicts.values() if not v.runnable)
    for c in cands:  # choose() agrees: alone, each runs exactly when its verdict says so
        assert (choose([c], sky, SITE, safe=True) is not None) == verdicts[c.name].runnable


def first_time(moon_alt_from: float, moon_alt_to: float) -> datetime:
    """The first hour after NIGHT when the Moon, seen from Kiso, is within these altitudes."""
    for h in range(24 * 30):
        when = NIGHT + timedelta(hours=h)
        if moon_alt_from <= moon_altaz(when).alt.deg <= moon_alt_to:
            return when
    raise AssertionError(f"no Moon between {moon_alt_from} and {moon_alt_to} deg in 30 days")


def test_a_target_10_deg_from_the_moon_waits_for_a_20_deg_limit() -> None:
    when = first_time(25, 60)
    moon = moon_altaz(when)
    beside = moon.directional_offset_by(0 * u.deg, 10 * u.deg).transform_to(ICRS())  # 10 deg above it
    c = cand("beside the Moon", float(beside.ra.deg), float(beside.dec.deg), min_moon_sep_deg=20, min_alt_deg=20)
    sky = sky_at(SITE, when)
    [v] = evaluate([c], sky, SITE, safe=True)
    assert not v.runnable
    assert v.reason == "Moon 10.0 deg away < 20", v.reason
    assert choose([c], sky, SITE, safe=True) is None
    [ok] = evaluate([cand("beside, 5 deg will do", c.ra_deg, c.dec_deg, min_moon_sep_deg=5)], sky, SITE, safe=True)
    assert ok.runnable, ok.reason


def test_a_target_opposite_the_moon_runs() -> None:
    when = first_time(-40, -20)  # the Moon down; 170 deg from it over the zenith is up
    moon = moon_altaz(when)
    far = moon.directional_offset_by(0 * u.deg, 170 * u.deg)
    assert far.alt.deg > 30
    far_icrs = far.transform_to(ICRS())
    ra, dec = float(far_icrs.ra.deg), float(far_icrs.dec.deg)
    sky = sky_at(SITE, when)
    cs = [
        cand("opposite", ra, dec, min_moon_sep_deg=20),
        cand("opposite, 165", ra, dec, min_moon_sep_deg=165),
        cand("opposite, 175", ra, dec, min_moon_sep_deg=175),
    ]
    got = {v.candidate.name: v for v in evaluate(cs, sky, SITE, safe=True)}
    assert got["opposite"].runnable and got["opposite, 165"].runnable, got
    assert got["opposite, 175"].reason == "Moon 170.0 deg away < 175"
    assert choose(cs, sky, SITE, safe=True) is not None
    assert moon_separation(SITE, sky, np.array([ra]), np.array([dec]))[0] == pytest.approx(170, abs=0.01)


MASKED = Site(horizon=((0, 15), (80, 40), (120, 40), (200, 10), (350, 25)))


def test_horizon_limit_interpolates_around_the_circle() -> None:
    az = np.array([0, 40, 80, 100, 160, 200, 275, 350, 355, 359.999, 360, 720 + 80])
    assert horizon_limit(MASKED, az) == pytest.approx(
        [15, 27.5, 40, 40, 25, 10, 17.5, 25, 20, 15.0006, 15, 40], abs=1e-3
    )
    assert horizon_limit(Site(), az) == pytest.approx([-90] * len(az))
    assert horizon_limit(Site(horizon=((90, 20),)), az) == pytest.approx([20] * len(az))


def test_a_target_below_the_horizon_mask_waits_and_the_same_altitude_where_the_mask_is_low_runs() -> None:
    when = NIGHT + timedelta(seconds=20)
    sky = sky_at(MASKED, when)
    east = cand("behind the trees", *to_icrs(30.0, 100.0, when), priority="high", min_alt_deg=20)
    south = cand("over the valley", *to_icrs(30.0, 200.0, when), min_alt_deg=20)
    got = {v.candidate.name: v for v in evaluate([east, south], sky, MASKED, safe=True)}
    assert got["behind the trees"].reason == "below the horizon mask: alt 30.0 deg < 40 at az 100"
    assert got["over the valley"].runnable
    assert choose([east, south], sky, MASKED, safe=True) is south  # the higher priority one is masked
    # Without a mask both run, and the higher priority one goes first.
    assert choose([east, south], sky_at(SITE, when), SITE, safe=True) is east


def test_place_matches_altaz_and_moon_separation_and_keeps_nan() -> None:
    sky = sky_at(SITE, NIGHT)
    ra = np.array([10.0, np.nan, 250.0])
    dec = np.array([20.0, np.nan, -10.0])
    alt, az, sep = place(SITE, sky, ra, dec)
    assert np.array_equal(np.isnan(alt), [False, True, False])
    a2, z2 = altaz(SITE, sky, ra, dec)
    np.testing.assert_allclose(alt, a2, atol=1e-12)
    np.testing.assert_allclose(az, z2, atol=1e-12)
    np.testing.assert_allclose(sep, moon_separation(SITE, sky, ra, dec), atol=1e-12)
