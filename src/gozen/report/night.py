"""Nights: local noon to local noon at the site, named by the local date of the evening, and
when each one's morning twilight comes."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from gozen.config import Config, Site

NIGHT_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TWILIGHT_STEP_S = 300.0  # the Sun's altitude is sampled this often after midnight, then the crossing interpolated


class BadNight(ValueError):
    """A night name that is not a date YYYY-MM-DD."""


@dataclass(frozen=True)
class Night:
    """One night: its name and the span reported (UTC, start included, end excluded)."""

    name: str
    start_at: datetime
    end_at: datetime


def parse_night(name: str) -> date:
    """The evening's date of a night name; BadNight naming what is wrong."""
    if not NIGHT_NAME.match(name):
        raise BadNight(f"night {name!r} is not a date YYYY-MM-DD")
    try:
        return date.fromisoformat(name)
    except ValueError as err:
        raise BadNight(f"night {name!r}: {err}") from None


def night_of(when: datetime, tz: ZoneInfo) -> str:
    """The night `when` belongs to: the local date twelve hours earlier (noon to noon)."""
    return (when.astimezone(tz) - timedelta(hours=12)).date().isoformat()


def night_span(name: str, tz: ZoneInfo) -> Night:
    """Local noon of the evening to local noon of the next day, in UTC."""
    evening = parse_night(name)
    start = datetime.combine(evening, time(12), tz)
    end = datetime.combine(evening + timedelta(days=1), time(12), tz)
    return Night(name, start.astimezone(UTC), end.astimezone(UTC))


def morning_twilight(site: Site, name: str, tz: ZoneInfo, twilight_deg: float) -> datetime:
    """When the Sun rises above `twilight_deg` after local midnight of the night (at the latest: local noon)."""
    return _morning_twilight(site, name, tz.key, twilight_deg)


@lru_cache(maxsize=64)
def _morning_twilight(site: Site, name: str, tz_name: str, twilight_deg: float) -> datetime:
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import AltAz, get_sun
    from astropy.time import Time

    from gozen.sky import site_location

    tz = ZoneInfo(tz_name)
    midnight = datetime.combine(parse_night(name) + timedelta(days=1), time(0), tz).astimezone(UTC)
    steps = np.arange(0.0, 12 * 3600 + 1, TWILIGHT_STEP_S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Time(midnight) + steps * u.s
        alt = get_sun(t).transform_to(AltAz(obstime=t, location=site_location(site))).alt.deg
    above = np.nonzero(alt > twilight_deg)[0]
    if len(above) == 0:
        return midnight + timedelta(hours=12)
    i = int(above[0])
    if i == 0:
        return midnight
    f = (twilight_deg - alt[i - 1]) / (alt[i] - alt[i - 1])
    return midnight + timedelta(seconds=float(steps[i - 1] + f * TWILIGHT_STEP_S))


def latest_finished_night(cfg: Config, now: datetime) -> str:
    """The latest night whose morning twilight has passed at `now`."""
    tz = cfg.local_tz
    name = night_of(now, tz)
    if now >= morning_twilight(cfg.site, name, tz, cfg.reports.twilight_deg):
        return name
    return (parse_night(name) - timedelta(days=1)).isoformat()
