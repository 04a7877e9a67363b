"""Where each chip sits on the focal plane, and an approximate TAN WCS for it.

Tomo-e Gozen's 84 chips fill four quadrants; in each, columns 1..4 hold 6, 6, 5 and 4
chips (detector id = quadrant*100 + column*10 + row). The layout here is a regular grid
with that shape (quadrant 1 at +x +y, 2 at -x +y, 3 at -x -y, 4 at +x -y), close enough
for headers and the simulator's star fields; distortion of the Schmidt optics is ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gozen.config import tomoe_chip_ids

PIXEL_SCALE_ARCSEC = 1.189
PITCH_X_DEG = 0.70  # chip 39.6' wide plus the gap between columns
PITCH_Y_DEG = 0.40  # chip 22.4' tall plus the gap between rows
_QUADRANT_SIGN = {1: (1, 1), 2: (-1, 1), 3: (-1, -1), 4: (1, -1)}


def chip_center_deg(det_id: int) -> tuple[float, float]:
    """Offset (x east-ish, y north) of a chip's centre from the optical axis, degrees."""
    q, col, row = det_id // 100, det_id // 10 % 10, det_id % 10
    sx, sy = _QUADRANT_SIGN[q]
    return sx * (col - 0.5) * PITCH_X_DEG, sy * (row - 0.5) * PITCH_Y_DEG


def tangent_to_sky(xi_deg: np.ndarray, eta_deg: np.ndarray, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic (TAN) plane offsets to RA/Dec, degrees."""
    xi, eta = np.radians(xi_deg), np.radians(eta_deg)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    denom = math.cos(d0) - eta * math.sin(d0)
    ra = a0 + np.arctan2(xi, denom)
    dec = np.arctan2(math.sin(d0) + eta * math.cos(d0), np.hypot(xi, denom))
    return np.degrees(ra) % 360, np.degrees(dec)


def sky_to_tangent(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    cosc = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    return np.degrees(xi), np.degrees(eta)


def chip_wcs(det_id: int, ra0: float, dec0: float, width_px: int, height_px: int) -> dict[str, object]:
    """FITS WCS keywords of one chip: one tangent plane at the pointing, shifted CRPIX per chip.

    East is left (CD1_1 < 0), north up, as on the sky seen through the telescope.
    """
    scale = PIXEL_SCALE_ARCSEC / 3600
    xc, yc = chip_center_deg(det_id)
    return {
        "WCSAXES": 2,
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "CRVAL1": round(ra0 % 360, 7),
        "CRVAL2": round(dec0, 7),
        "CRPIX1": round((width_px + 1) / 2 + xc / scale, 3),
        "CRPIX2": round((height_px + 1) / 2 - yc / scale, 3),
        "CD1_1": -scale,
        "CD1_2": 0.0,
        "CD2_1": 0.0,
        "CD2_2": scale,
    }


def sky_to_pixel(
    ra: np.ndarray, dec: np.ndarray, det_id: int, ra0: float, dec0: float, width_px: int, height_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel coordinates of sky positions on one chip (inverse of chip_wcs)."""
    w = chip_wcs(det_id, ra0, dec0, width_px, height_px)
    xi, eta = sky_to_tangent(ra, dec, ra0, dec0)
    scale = PIXEL_SCALE_ARCSEC / 3600
    px = float(w["CRPIX1"]) - xi / scale - 1  # type: ignore[arg-type]
    py = float(w["CRPIX2"]) + eta / scale - 1  # type: ignore[arg-type]
    return px, py


# The focal plane as pictures draw it (the DAQ page's map, the quick-look mosaic, the nightly report).

PX_PER_DEG = 120
CHIP_W_DEG = 2000 * PIXEL_SCALE_ARCSEC / 3600  # a Tomo-e chip's light-sensitive area
CHIP_H_DEG = 1128 * PIXEL_SCALE_ARCSEC / 3600
MARGIN_PX = 28  # room for the quadrant names above and below
GAP_PX = 8  # drawn between the quadrants, so each reads as a block


@dataclass(frozen=True)
class ChipBox:
    """Where a chip is drawn: its top-left corner and size in the picture, px."""

    det_id: int
    x: float
    y: float
    w: float
    h: float

    @property
    def place(self) -> str:
        return f"Q{self.det_id // 100}, column {self.det_id // 10 % 10}, row {self.det_id % 10}"


@dataclass(frozen=True)
class FocalPlane:
    width: float
    height: float
    boxes: list[ChipBox]
    quadrants: list[tuple[str, float, float, str]]  # name, x, y, text-anchor


def focal_plane() -> FocalPlane:
    """The 84 Tomo-e chips as on the sky: +x (east) to the left, +y (north) up."""
    centres = {d: chip_center_deg(d) for d in tomoe_chip_ids()}
    half_w, half_h = CHIP_W_DEG / 2, CHIP_H_DEG / 2
    east = max(x for x, _ in centres.values()) + half_w
    north = max(y for _, y in centres.values()) + half_h

    def box(det: int) -> ChipBox:
        x, y = centres[det]
        sx = (east - x - half_w) * PX_PER_DEG + (GAP_PX if x < 0 else 0)
        sy = (north - y - half_h) * PX_PER_DEG + MARGIN_PX + (GAP_PX if y < 0 else 0)
        return ChipBox(
            det, round(sx, 1), round(sy, 1), round(CHIP_W_DEG * PX_PER_DEG, 1), round(CHIP_H_DEG * PX_PER_DEG, 1)
        )

    boxes = [box(d) for d in centres]
    width = round(2 * east * PX_PER_DEG + GAP_PX, 1)
    height = round(2 * north * PX_PER_DEG + 2 * MARGIN_PX + GAP_PX, 1)
    quadrants = []
    for q in (1, 2, 3, 4):
        mine = [b for b in boxes if b.det_id // 100 == q]
        left = mine[0].x < width / 2
        top = mine[0].y < height / 2
        x = min(b.x for b in mine) if left else max(b.x + b.w for b in mine)
        y = MARGIN_PX - 8 if top else height - 8
        quadrants.append((f"Q{q}", x, y, "start" if left else "end"))
    return FocalPlane(width, height, boxes, quadrants)


FOCAL_PLANE = focal_plane()
