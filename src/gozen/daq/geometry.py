"""What one chip's frame holds: its size, and where the light-sensitive and reference pixels are.

`camera.readout: light` is the 2000 x 1128 light-sensitive area alone (or the configured
width_px x height_px). `full` is Tomo-e Gozen's whole 2160 x 1200 readout: the light area
framed by 36 rows of vertical optical black above and below, 80 columns of optical black
(reference pixels, covered from light) on the left and 80 columns of horizontal overscan
(read past the end of each row, bias only) on the right. Sections follow the IRAF
convention (1-based, inclusive, `[x1:x2,y1:y2]`), so ccdproc's `trim_image(fits_section=DATASEC)`
and `subtract_overscan(fits_section=BIASSEC)` work on the files as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from gozen.config import Camera

FULL_WIDTH, FULL_HEIGHT = 2160, 1200
OB_LEFT = 80  # optical-black (reference) columns before each row's light pixels
OVERSCAN_RIGHT = 80  # overscan columns after them
OB_ROWS = 36  # optical-black rows above and below the light area
# The overscan statistics use every OVERSCAN_ROW_STEP-th row of the strip (80 x 141 pixels per frame).
OVERSCAN_ROW_STEP = 8


@dataclass(frozen=True)
class Section:
    """0-based half-open pixel ranges (numpy order: rows y0:y1, columns x0:x1)."""

    x0: int
    x1: int
    y0: int
    y1: int

    @property
    def fits(self) -> str:
        """IRAF/FITS section text, 1-based and inclusive: '[x1:x2,y1:y2]'."""
        return f"[{self.x0 + 1}:{self.x1},{self.y0 + 1}:{self.y1}]"

    def of(self, frame: np.ndarray) -> np.ndarray:
        return frame[self.y0 : self.y1, self.x0 : self.x1]


@dataclass(frozen=True)
class Geometry:
    width: int  # NAXIS1 of the file
    height: int  # NAXIS2
    data: Section  # the light-sensitive pixels (DATASEC)
    bias: Section | None  # the overscan strip (BIASSEC); None for a light readout
    reference: Section | None  # the optical-black columns (reference pixels)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def frame_bytes(self) -> int:
        return self.pixels * 2

    @property
    def full(self) -> bool:
        return self.bias is not None

    def overscan_stats(self, frame: np.ndarray) -> tuple[float, float]:
        """(median, noise) of the overscan strip of one native uint16 frame (flat or 2-D), ADU; NaN for a
        light readout. Noise is 1.4826 x the median absolute deviation, on every OVERSCAN_ROW_STEP-th row:
        cheap enough for every frame of the whole camera."""
        if self.bias is None:
            return float("nan"), float("nan")
        b = self.bias
        strip = frame.reshape(self.height, self.width)[b.y0 : b.y1 : OVERSCAN_ROW_STEP, b.x0 : b.x1]
        values = strip.astype(np.float32).ravel()
        median = float(np.median(values))
        return median, float(1.4826 * np.median(np.abs(values - median)))


@cache
def _geometry(readout: str, width_px: int, height_px: int) -> Geometry:
    if readout == "light":
        return Geometry(width_px, height_px, Section(0, width_px, 0, height_px), None, None)
    data = Section(OB_LEFT, OB_LEFT + width_px, OB_ROWS, OB_ROWS + height_px)
    bias = Section(FULL_WIDTH - OVERSCAN_RIGHT, FULL_WIDTH, OB_ROWS, OB_ROWS + height_px)
    reference = Section(0, OB_LEFT, OB_ROWS, OB_ROWS + height_px)
    return Geometry(FULL_WIDTH, FULL_HEIGHT, data, bias, reference)


def geometry(camera: Camera) -> Geometry:
    """The frame geometry of this camera config."""
    return _geometry(camera.readout, camera.width_px, camera.height_px)
