"""A gravitational-wave sky map: the multi-order HEALPix FITS file of an IGWN alert, read with astropy.

LVK maps come as NUNIQ-ordered tables (UNIQ, PROBDENSITY per steradian): fine pixels where the
probability is, coarse ones elsewhere. For tiling, the most probable part of the map is put on
one HEALPix order, fine enough for the camera's 22' chips and small enough to stay quick.
"""

from __future__ import annotations

import gzip
import io
import math
from dataclasses import dataclass
from functools import cached_property

import astropy.units as u
import numpy as np
from astropy.table import Table
from astropy_healpix import HEALPix, level_to_nside, nside_to_pixel_area, uniq_to_level_ipix

SKY_DEG2 = 4 * math.pi * (180 / math.pi) ** 2
# nside 1024: pixels of 3.4', a sixth of a chip's height. A coarser order overstates what the tiles
# hold (by 3 % at nside 512): the pointings chosen are those whose chips happen to catch pixel centres.
WORK_LEVEL = 10
MAX_PIXELS = 400_000  # one order coarser for each 4x more sky (1,300 deg2 at WORK_LEVEL)


class SkyMapError(ValueError):
    """A sky map that cannot be read: the message says what is wrong with it."""


@dataclass(frozen=True)
class MultiOrderMap:
    level: np.ndarray  # HEALPix order of each pixel
    ipix: np.ndarray  # its nested index at that order
    prob: np.ndarray  # the probability in it (sums to 1)
    area_deg2: np.ndarray

    @property
    def density(self) -> np.ndarray:
        return self.prob / self.area_deg2

    def credible(self, level: float) -> np.ndarray:
        """Which pixels make the smallest area holding `level` of the probability (densest first)."""
        order = np.argsort(-self.density, kind="stable")
        cum = np.cumsum(self.prob[order])
        keep = np.zeros(self.prob.size, bool)
        keep[order[: int(np.searchsorted(cum, level * cum[-1])) + 1]] = True
        return keep

    def credible_area_deg2(self, level: float) -> float:
        return float(self.area_deg2[self.credible(level)].sum())


@dataclass(frozen=True)
class FlatMap:
    """Part of a sky map on one nested HEALPix order: `ipix` sorted, with the probability in each."""

    level: int
    ipix: np.ndarray
    prob: np.ndarray
    ra_deg: np.ndarray
    dec_deg: np.ndarray

    @property
    def pixel_area_deg2(self) -> float:
        return SKY_DEG2 / (12 * 4**self.level)

    def credible(self, level: float) -> np.ndarray:
        order = np.argsort(-self.prob, kind="stable")
        cum = np.cumsum(self.prob[order])
        keep = np.zeros(self.prob.size, bool)
        keep[order[: int(np.searchsorted(cum, level)) + 1]] = True
        return keep

    @cached_property
    def _by_dec(self) -> np.ndarray:
        return np.argsort(self.dec_deg, kind="stable")

    def near(self, ra_deg: float, dec_deg: float, radius_deg: float) -> np.ndarray:
        """Positions of the pixels whose centres lie within `radius_deg` of a point (a band of declination
        first, then the exact distance: much quicker than a HEALPix cone search at nside 1024)."""
        order = self._by_dec
        lo, hi = np.searchsorted(self.dec_deg[order], [dec_deg - radius_deg, dec_deg + radius_deg])
        at = order[lo:hi]
        d0, d = math.radians(dec_deg), np.radians(self.dec_deg[at])
        cos = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(np.radians(self.ra_deg[at] - ra_deg))
        return at[cos >= math.cos(math.radians(radius_deg))]


def read_multiorder(fits_bytes: bytes) -> MultiOrderMap:
    """The sky map of a FITS file (plain or gzipped); SkyMapError saying why it is not one."""
    if fits_bytes[:2] == b"\x1f\x8b":
        try:
            fits_bytes = gzip.decompress(fits_bytes)
        except (OSError, EOFError) as err:
            raise SkyMapError(f"gzip: {err}") from None
    try:
        table = Table.read(io.BytesIO(fits_bytes), format="fits")
    except Exception as err:  # astropy raises many kinds for a file that is not FITS
        raise SkyMapError(f"not a FITS table: {type(err).__name__}: {err}") from None
    missing = [c for c in ("UNIQ", "PROBDENSITY") if c not in table.colnames]
    if missing:
        raise SkyMapError(f"no {', '.join(missing)} column (a multi-order map has UNIQ and PROBDENSITY)")
    uniq = np.asarray(table["UNIQ"], dtype=np.int64)
    density = np.asarray(table["PROBDENSITY"], dtype=float)  # per steradian
    if uniq.size == 0 or np.any(uniq < 4) or not np.all(np.isfinite(density)) or np.any(density < 0):
        raise SkyMapError("UNIQ or PROBDENSITY out of range (empty, negative or not a number)")
    level, ipix = uniq_to_level_ipix(uniq)
    area_sr = nside_to_pixel_area(level_to_nside(level)).to_value(u.sr)
    prob = density * area_sr
    total = float(prob.sum())
    if not total > 0:
        raise SkyMapError("PROBDENSITY is zero everywhere")
    return MultiOrderMap(np.asarray(level), np.asarray(ipix), prob / total, area_sr * (180 / math.pi) ** 2)


def flatten(sky: MultiOrderMap, keep: np.ndarray) -> FlatMap:
    """The kept pixels on one order: WORK_LEVEL, or coarser when they cover too much sky. Coarser
    pixels are split evenly into their children, finer ones summed into their parent."""
    area = float(sky.area_deg2[keep].sum())
    level = WORK_LEVEL
    while level > 4 and area / (SKY_DEG2 / (12 * 4**level)) > MAX_PIXELS:
        level -= 1
    parts_ipix, parts_prob = [], []
    for lv in np.unique(sky.level[keep]):
        sel = keep & (sky.level == lv)
        ipix, prob = sky.ipix[sel].astype(np.int64), sky.prob[sel]
        shift = 2 * (level - int(lv))
        if shift >= 0:
            n = 1 << shift
            parts_ipix.append(((ipix << shift)[:, None] + np.arange(n)).ravel())
            parts_prob.append(np.repeat(prob / n, n))
        else:
            parts_ipix.append(ipix >> -shift)
            parts_prob.append(prob)
    ipix, inverse = np.unique(np.concatenate(parts_ipix), return_inverse=True)
    prob = np.bincount(inverse, weights=np.concatenate(parts_prob))
    lon, lat = HEALPix(nside=int(level_to_nside(level)), order="nested").healpix_to_lonlat(ipix)
    return FlatMap(level, ipix, prob, np.asarray(lon.to_value(u.deg)), np.asarray(lat.to_value(u.deg)))
