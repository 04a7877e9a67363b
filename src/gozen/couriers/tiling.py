"""Camera pointings over a sky map's credible region: the 84-chip footprint, most probable first.

Candidate pointings sit on a grid of half the footprint's width and height over the region (so
that a neighbour's chips can fill one pointing's gaps). A pointing's probability is that of the
map's pixels whose centres fall on one of its chips, projected on the tangent plane about it.
Pointings never observable from the site within the follow-up's window are dropped; the rest
are taken greedily, each time the one adding the most probability not yet covered, until the
tiles hold `credible_level` of the map, or `max_tiles`, or a tile would add next to nothing.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from gozen.config import CHIPS_PER_COLUMN, Site
from gozen.couriers.skymap import FlatMap
from gozen.daq.focalplane import CHIP_H_DEG, CHIP_W_DEG, chip_center_deg, sky_to_tangent

CHIP_CENTRES_DEG = np.array(
    [
        chip_center_deg(q * 100 + col * 10 + row)
        for q in (1, 2, 3, 4)
        for col, rows in enumerate(CHIPS_PER_COLUMN, start=1)
        for row in range(1, rows + 1)
    ]
)
FOOTPRINT_DEG2 = len(CHIP_CENTRES_DEG) * CHIP_W_DEG * CHIP_H_DEG  # 20.7
FOOT_W_DEG = 2 * (float(np.abs(CHIP_CENTRES_DEG[:, 0]).max()) + CHIP_W_DEG / 2)
FOOT_H_DEG = 2 * (float(np.abs(CHIP_CENTRES_DEG[:, 1]).max()) + CHIP_H_DEG / 2)
FOOT_RADIUS_DEG = math.hypot(FOOT_W_DEG, FOOT_H_DEG) / 2 + 0.1
MIN_ALT_DEG = 30.0  # the follow-up recipe's constraint too
MAX_SUN_ALT_DEG = -12.0  # nautical twilight: dark enough for a transient
STEP_MIN = 15  # how finely the window is sampled for observability
MIN_GAIN = 1e-4  # a tile adding less of the probability than this is not worth the slew


@dataclass(frozen=True)
class Tile:
    ra_deg: float
    dec_deg: float
    prob: float  # the probability it adds to the tiles before it


@dataclass(frozen=True)
class Tiling:
    tiles: list[Tile]
    covered: float  # the map's probability on the tiles' chips
    candidates: int  # pointings over the region
    observable: int  # of which observable within the window

    @property
    def reason(self) -> str:
        """Why there are no tiles (empty when there are)."""
        if self.tiles:
            return ""
        if self.candidates and not self.observable:
            return f"none of the {self.candidates} pointings over the region rises above {MIN_ALT_DEG:g} deg at night"
        return "no pointing adds to the probability covered"


def on_chips(xi_deg: np.ndarray, eta_deg: np.ndarray) -> np.ndarray:
    """Which tangent-plane offsets from the pointing fall on a chip (not in a gap)."""
    dx = np.abs(xi_deg[:, None] - CHIP_CENTRES_DEG[None, :, 0]) <= CHIP_W_DEG / 2
    dy = np.abs(eta_deg[:, None] - CHIP_CENTRES_DEG[None, :, 1]) <= CHIP_H_DEG / 2
    return np.asarray((dx & dy).any(axis=1))


def candidates(ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid pointings (half a footprint apart, rows along declination) near these positions."""
    step_dec = FOOT_H_DEG / 2
    rows = np.round(dec_deg / step_dec).astype(int)
    keys = []
    for dr in (-1, 0, 1):
        r = np.clip(rows + dr, -int(90 // step_dec), int(90 // step_dec))
        n = _columns(r * step_dec)
        c = np.round(ra_deg / (360.0 / n)).astype(int)
        for dc in (-1, 0, 1):
            keys.append(np.stack([r, (c + dc) % n], axis=1))
    r, c = np.unique(np.concatenate(keys), axis=0).T
    return (c * 360.0 / _columns(r * step_dec)) % 360.0, r * step_dec


def _columns(dec_deg: np.ndarray) -> np.ndarray:
    """Pointings around a row of declination, half a footprint apart."""
    cos = np.maximum(np.cos(np.radians(dec_deg)), 0.02)
    return np.maximum(np.ceil(360.0 * cos / (FOOT_W_DEG / 2)), 1).astype(int)


def observable(site: Site, ra_deg: np.ndarray, dec_deg: np.ndarray, start: datetime, hours: float) -> np.ndarray:
    """Which positions are at least MIN_ALT_DEG high (and above the horizon mask) with the Sun below
    MAX_SUN_ALT_DEG at some time in [start, start + hours], sampled every STEP_MIN minutes."""
    from gozen.queue.scheduler import altaz, horizon_limit, sky_at

    ok = np.zeros(ra_deg.shape, bool)
    for k in range(int(hours * 60 // STEP_MIN) + 1):
        sky = sky_at(site, start + timedelta(minutes=k * STEP_MIN))
        if sky.sun_alt_deg > MAX_SUN_ALT_DEG:
            continue
        alt, az = altaz(site, sky, ra_deg, dec_deg)
        ok |= (alt >= MIN_ALT_DEG) & (alt >= horizon_limit(site, az))
        if ok.all():
            break
    return ok


def coverage(flat: FlatMap, ra_deg: float, dec_deg: float) -> np.ndarray:
    """Positions in `flat` of the pixels whose centres fall on the chips pointing here."""
    at = flat.near(ra_deg, dec_deg, FOOT_RADIUS_DEG)
    xi, eta = sky_to_tangent(flat.ra_deg[at], flat.dec_deg[at], ra_deg, dec_deg)
    return at[on_chips(xi, eta)]


def tile(
    flat: FlatMap, region: np.ndarray, site: Site, start: datetime, hours: float, credible_level: float, max_tiles: int
) -> Tiling:
    """The tiles over `region` (a mask of `flat`), most probable first (lazy greedy: a tile's gain only shrinks)."""
    ra, dec = candidates(flat.ra_deg[region], flat.dec_deg[region])
    seen = observable(site, ra, dec, start, hours)
    ra, dec = ra[seen], dec[seen]
    covers = [coverage(flat, float(a), float(d)) for a, d in zip(ra, dec, strict=True)]
    heap = [(-float(flat.prob[c].sum()), i) for i, c in enumerate(covers)]
    heapq.heapify(heap)
    covered = np.zeros(flat.prob.size, bool)
    tiles: list[Tile] = []
    total = 0.0
    while heap and len(tiles) < max_tiles and total < credible_level:
        _, i = heapq.heappop(heap)
        gain = float(flat.prob[covers[i][~covered[covers[i]]]].sum())
        if heap and gain < -heap[0][0]:
            heapq.heappush(heap, (-gain, i))  # it was worth more before the last tile took its share
            continue
        if gain < MIN_GAIN:
            break
        covered[covers[i]] = True
        total += gain
        tiles.append(Tile(float(ra[i]), float(dec[i]), gain))
    return Tiling(tiles, total, int(seen.size), int(seen.sum()))
