"""Which recipe runs next, and why each other one waits; and the night's plan.

Order: priority (interrupt, high, normal, low), then the window that closes first, then
submission time. The first recipe whose window is open and whose constraints hold now runs.

The Sun and Moon are computed once per decision with astropy; target altitudes are computed
for every queued recipe at once with numpy from the local sidereal time (astropy's), which
is what keeps a choice among 10,000 recipes within a few milliseconds (bench/queue_bench.py). The
plain spherical formula ignores precession since J2000 and refraction: within 0.5 deg of
astropy's AltAz, which the tests check.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache

import numpy as np

from gozen.config import Site
from gozen.queue.recipe import Recipe
from gozen.sky import site_location  # also sets astropy's offline IERS configuration

NEVER = datetime.max.replace(tzinfo=None)


@dataclass(frozen=True)
class Sky:
    when: datetime
    lst_deg: float
    sun_alt_deg: float
    moon_alt_deg: float
    moon_ra_deg: float
    moon_dec_deg: float


def sky_at(site: Site, when: datetime) -> Sky:
    """Sidereal time for this instant; the Sun and Moon for this minute (they move < 0.25 deg in one)."""
    import astropy.units as u
    from astropy.time import Time

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lst = Time(when).sidereal_time("apparent", longitude=site.lon_deg * u.deg).deg
    sun, moon_ra, moon_dec = _sun_and_moon(site, int(when.timestamp() // 60))
    moon_alt = float(altitudes(site, float(lst), np.array([moon_ra]), np.array([moon_dec]))[0])
    return Sky(when, float(lst), sun, moon_alt, moon_ra, moon_dec)


def altaz(site: Site, sky: Sky, ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Altitude and azimuth (N=0, E=90) in degrees of ICRS positions at sky.when, without refraction."""
    lat = math.radians(site.lat_deg)
    ha = np.radians(sky.lst_deg - np.asarray(ra_deg, dtype=float))
    dec = np.radians(np.asarray(dec_deg, dtype=float))
    alt = np.arcsin(np.sin(lat) * np.sin(dec) + math.cos(lat) * np.cos(dec) * np.cos(ha))
    az = np.arctan2(-np.cos(dec) * np.sin(ha), np.sin(dec) * math.cos(lat) - np.cos(dec) * np.cos(ha) * math.sin(lat))
    return np.degrees(alt), np.degrees(az) % 360.0


def moon_separation(site: Site, sky: Sky, ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Angular distance in degrees from the Moon as seen from the site at sky.when."""
    return separation(
        np.asarray(ra_deg, dtype=float), np.asarray(dec_deg, dtype=float), sky.moon_ra_deg, sky.moon_dec_deg
    )


def horizon_limit(site: Site, az_deg: np.ndarray) -> np.ndarray:
    """The horizon mask's lowest usable altitude at each azimuth (linear around the circle); -90 without a mask."""
    az = np.asarray(az_deg, dtype=float)
    if not site.horizon:
        return np.full(az.shape, -90.0)
    azs, alts = zip(*site.horizon, strict=True)
    return np.interp(az % 360.0, azs, alts, period=360.0)


@lru_cache(maxsize=512)
def _sun_and_moon(site: Site, minute: int) -> tuple[float, float, float]:
    from astropy.coordinates import AltAz, get_body, get_sun
    from astropy.time import Time

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Time(minute * 60.0 + 30.0, format="unix")
        loc = site_location(site)
        sun = get_sun(t).transform_to(AltAz(obstime=t, location=loc)).alt.deg
        moon = get_body("moon", t, loc).icrs
    return float(sun), float(moon.ra.deg), float(moon.dec.deg)


def altitudes(site: Site, lst_deg: float, ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    lat = math.radians(site.lat_deg)
    ha = np.radians(lst_deg - ra_deg)
    dec = np.radians(dec_deg)
    return np.degrees(np.arcsin(np.sin(lat) * np.sin(dec) + math.cos(lat) * np.cos(dec) * np.cos(ha)))


def separation(ra1: np.ndarray, dec1: np.ndarray, ra2: float, dec2: float) -> np.ndarray:
    r1, d1, r2, d2 = np.radians(ra1), np.radians(dec1), math.radians(ra2), math.radians(dec2)
    c = np.sin(d1) * math.sin(d2) + np.cos(d1) * math.cos(d2) * np.cos(r1 - r2)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


@dataclass(frozen=True)
class Candidate:
    uuid: str
    name: str
    rank: int
    submitted_at: datetime
    recipe: Recipe
    ra_deg: float | None
    dec_deg: float | None

    @cached_property
    def row(self) -> tuple[float, ...]:
        """Its scheduling fields as numbers, computed once: a row of Columns."""
        w, k = self.recipe.window, self.recipe.constraints
        nan = float("nan")
        return (
            float(self.rank),
            _ts(w.not_after, float("inf")),
            _ts(w.not_before, float("-inf")),
            self.submitted_at.timestamp(),
            self.ra_deg if self.ra_deg is not None else nan,
            self.dec_deg if self.dec_deg is not None else nan,
            k.min_alt_deg if k.min_alt_deg is not None else -90.0,
            math.degrees(math.asin(1 / k.max_airmass)) if k.max_airmass is not None else -90.0,
            k.max_sun_alt_deg if k.max_sun_alt_deg is not None else 90.0,
            k.min_moon_sep_deg if k.min_moon_sep_deg is not None else 0.0,
            1.0 if k.safe_weather else 0.0,
        )


@dataclass(frozen=True)
class Verdict:
    candidate: Candidate
    runnable: bool
    reason: str  # why it waits ("" when runnable)
    alt_deg: float | None


def order_key(c: Candidate) -> tuple[int, datetime, datetime]:
    end = c.recipe.window.not_after
    return c.rank, (end.replace(tzinfo=None) if end else NEVER), c.submitted_at.replace(tzinfo=None)


def verdicts(cands: list[Candidate], sky: Sky, site: Site, safe: bool, safe_reason: str = "") -> Iterator[Verdict]:
    """Every candidate in standing order, with whether it may start now and, if not, why (lazily)."""
    ordered = sorted(cands, key=order_key)
    if not ordered:
        return
    ra = np.array([c.ra_deg if c.ra_deg is not None else np.nan for c in ordered])
    dec = np.array([c.dec_deg if c.dec_deg is not None else np.nan for c in ordered])
    alt, az = altaz(site, sky, ra, dec)
    mask = horizon_limit(site, az)
    moon = moon_separation(site, sky, ra, dec)
    for i, c in enumerate(ordered):
        w, k = c.recipe.window, c.recipe.constraints
        a = None if math.isnan(alt[i]) else float(alt[i])
        why = ""
        if w.not_before and sky.when < w.not_before:
            why = f"window opens {w.not_before:%m-%d %H:%M} UTC"
        elif w.not_after and sky.when > w.not_after:
            why = "window closed"
        elif k.safe_weather and not safe:
            why = f"unsafe weather{': ' + safe_reason if safe_reason else ''}"
        elif k.max_sun_alt_deg is not None and sky.sun_alt_deg > k.max_sun_alt_deg:
            why = f"Sun at {sky.sun_alt_deg:+.1f} deg > {k.max_sun_alt_deg:+g}"
        elif a is not None and k.min_alt_deg is not None and a < k.min_alt_deg:
            why = f"altitude {a:.1f} deg < {k.min_alt_deg:g}"
        elif a is not None and k.max_airmass is not None and (a <= 0 or 1 / math.sin(math.radians(a)) > k.max_airmass):
            why = f"airmass {1 / math.sin(math.radians(a)):.2f} > {k.max_airmass:g}" if a > 0 else "below the horizon"
        elif a is not None and a < mask[i]:
            why = f"below the horizon mask: alt {a:.1f} deg < {mask[i]:g} at az {az[i]:.0f}"
        elif a is not None and k.min_moon_sep_deg is not None and moon[i] < k.min_moon_sep_deg:
            why = f"Moon {moon[i]:.0f} deg away < {k.min_moon_sep_deg:g}"
        yield Verdict(c, not why, why, a)


def evaluate(cands: list[Candidate], sky: Sky, site: Site, safe: bool, safe_reason: str = "") -> list[Verdict]:
    return list(verdicts(cands, sky, site, safe, safe_reason))


def _ts(t: datetime | None, default: float) -> float:
    return t.timestamp() if t is not None else default


class Columns:
    """The candidates' scheduling fields as numpy columns, so one choice checks them all at once."""

    def __init__(self, cands: list[Candidate]) -> None:
        self.cands = cands
        a = np.array([c.row for c in cands], dtype=float).reshape(len(cands), 11)
        (
            self.rank,
            self.end,
            self.begin,
            self.submitted,
            self.ra,
            self.dec,
            self.min_alt,
            self.min_alt_airmass,
            self.max_sun,
            self.min_moon,
        ) = a[:, :10].T
        self.needs_safe = a[:, 10] > 0.5
        self.order = np.lexsort((self.submitted, self.end, self.rank))  # rank first, then window end, then age


def choose(cands: list[Candidate] | Columns, sky: Sky, site: Site, safe: bool) -> Candidate | None:
    """The recipe to run now: the first runnable one in standing order, every constraint checked at
    once over all candidates (the same rules as verdicts(), which also says why the others wait)."""
    cols = cands if isinstance(cands, Columns) else Columns(cands)
    if not cols.cands:
        return None
    now = sky.when.timestamp()
    alt, az = altaz(site, sky, cols.ra, cols.dec)
    moon = moon_separation(site, sky, cols.ra, cols.dec)
    pointed = ~np.isnan(alt)
    with np.errstate(invalid="ignore"):
        ok = (cols.begin <= now) & (now <= cols.end) & (safe | ~cols.needs_safe) & (sky.sun_alt_deg <= cols.max_sun)
        ok &= ~pointed | ((alt >= cols.min_alt) & (alt >= cols.min_alt_airmass) & (moon >= cols.min_moon))
        if site.horizon:
            ok &= ~pointed | (alt >= horizon_limit(site, az))
    runnable = cols.order[ok[cols.order]]
    return cols.cands[int(runnable[0])] if len(runnable) else None
