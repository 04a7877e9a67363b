"""Positions on the sky from the site, with astropy, never touching the network.

gozen runs at observatories without reliable internet (and tests run with none): IERS
tables are never downloaded; astropy's bundled ones are used even when old, which costs
well under an arcsecond in altitude: plenty for headers and scheduling.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import astropy.units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.time import Time
from astropy.utils import iers

from gozen.config import Site

iers.conf.auto_download = False
iers.conf.auto_max_age = None
iers.conf.iers_degraded_accuracy = "ignore"


@dataclass(frozen=True)
class Horizontal:
    alt_deg: float
    az_deg: float
    airmass: float | None  # None below the horizon


@cache
def site_location(site: Site) -> EarthLocation:
    return EarthLocation(lat=site.lat_deg * u.deg, lon=site.lon_deg * u.deg, height=site.height_m * u.m)


def horizontal(site: Site, ra_deg: float, dec_deg: float, when: datetime) -> Horizontal:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = AltAz(obstime=Time(when), location=site_location(site))
        aa = SkyCoord(ra_deg * u.deg, dec_deg * u.deg).transform_to(frame)
    alt = float(aa.alt.deg)
    return Horizontal(alt, float(aa.az.deg), float(aa.secz) if alt > 0 else None)


def zenith_radec(site: Site, when: datetime) -> tuple[float, float]:
    """RA/Dec of the zenith: where a simulated telescope points when told nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lst = Time(when).sidereal_time("apparent", longitude=site.lon_deg * u.deg)
    return float(lst.deg), site.lat_deg


def format_ra(ra_deg: float) -> str:
    return SkyCoord(ra_deg * u.deg, 0 * u.deg).ra.to_string(unit=u.hourangle, sep=":", precision=2, pad=True)


def format_dec(dec_deg: float) -> str:
    return SkyCoord(0 * u.deg, dec_deg * u.deg).dec.to_string(sep=":", precision=1, alwayssign=True, pad=True)


def sun_altitude(site: Site, when: datetime) -> float:
    """The Sun's altitude in degrees (astropy's built-in ephemeris: no download)."""
    from astropy.coordinates import get_sun

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Time(when)
        aa = get_sun(t).transform_to(AltAz(obstime=t, location=site_location(site)))
    return float(aa.alt.deg)
