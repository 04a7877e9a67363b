"""Which recipe runs next, and why each other one waits; and the night's plan.

Order: priority (interrupt, high, normal, low), then the window that closes first, then
submission time. The first recipe whose window is open and whose constraints hold now runs.

The sky (gozen.sky): astropy's apparent-place frame and the Sun and Moon are computed once an
hour and cached; every queued recipe's altitude, azimuth and Moon distance are then computed at
once with numpy for the very instant, agreeing with astropy's AltAz to ~0.01 arcsec and with its
topocentric Moon to arcseconds: a choice among 10,000 recipes takes a few milliseconds
(bench/queue_bench.py). A target below the site's horizon mask at its azimuth waits, whatever its
own constraints.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import numpy as np

from gozen.config import Site
from gozen.queue.recipe import Recipe
from gozen.sky import Sky, altaz, horizon_limit, moon_separation, place, sky_at

__all__ = [
    "NEVER",
    "Candidate",
    "Columns",
    "Sky",
    "Verdict",
    "altaz",
    "choose",
    "evaluate",
    "horizon_limit",
    "moon_separation",
    "order_key",
    "place",
    "sky_at",
    "verdicts",
]

NEVER = datetime.max.replace(tzinfo=None)


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
    alt, az, moon = place(site, sky, ra, dec)
    mask = horizon_limit(site, az)
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
            why = f"below the horizon mask: alt {a:.1f} deg < {round(float(mask[i]), 1):g} at az {az[i]:.0f}"
        elif a is not None and k.min_moon_sep_deg is not None and moon[i] < k.min_moon_sep_deg:
            why = f"Moon {moon[i]:.1f} deg away < {k.min_moon_sep_deg:g}"
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
    alt, az, moon = place(site, sky, cols.ra, cols.dec)
    pointed = ~np.isnan(alt)
    with np.errstate(invalid="ignore"):
        ok = (cols.begin <= now) & (now <= cols.end) & (safe | ~cols.needs_safe) & (sky.sun_alt_deg <= cols.max_sun)
        ok &= ~pointed | ((alt >= cols.min_alt) & (alt >= cols.min_alt_airmass) & (moon >= cols.min_moon))
        if site.horizon:
            ok &= ~pointed | (alt >= horizon_limit(site, az))
    runnable = cols.order[ok[cols.order]]
    return cols.cands[int(runnable[0])] if len(runnable) else None
