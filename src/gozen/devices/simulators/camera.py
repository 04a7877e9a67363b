"""A simulated Tomo-e Gozen camera: sky-like frames at full rate, with injectable faults.

Frames are cheap enough for the whole camera at 2 fps: a small pool of pre-made noise
frames (bias + sky + Poisson and read noise) is copied into the reader's buffer, and a
per-chip star overlay, made once per exposure from the pointing, is added in place.
Stars come from a fixed pseudo-random sky (seeded per 0.5-degree cell), so they follow
the pointing from one exposure to the next.

A full readout (`camera.readout: full`) frames the light area with optical black (bias, read
noise and a little dark signal) and overscan columns (bias and read noise only). Each chip has
its own bias level, which wanders by a few ADU from frame to frame; it is added in the same
numpy pass that copies the pool frame, so it costs nothing.
"""

from __future__ import annotations

import math
import random
import time

import numpy as np

from gozen.config import Camera as CameraConfig
from gozen.daq.focalplane import PITCH_X_DEG, chip_center_deg, sky_to_pixel, tangent_to_sky
from gozen.daq.geometry import Geometry, geometry
from gozen.devices.camera import Camera, ExposureSpec, FrameInfo

POOL_FRAMES = 8
BIAS_ADU = 1000.0
SKY_ADU = 300.0
READ_NOISE_ADU = 4.4  # Tomo-e Gozen at mid gain: 4.1 e- read noise, 0.94 e-/ADU
OPTICAL_BLACK_DARK_ADU = 1.0  # dark signal of the covered pixels in one frame
CHIP_BIAS_SPREAD_ADU = 30  # each chip's bias level is within this of BIAS_ADU
BIAS_DRIFT_ADU = 3.0  # and wanders this much ...
BIAS_DRIFT_FRAMES = 600  # ... over this many frames (5 minutes at 2 fps)
# The pool is made this far below BIAS_ADU; each frame's own bias offset (never negative) is added back.
BIAS_HEADROOM_ADU = CHIP_BIAS_SPREAD_ADU + 10
CELL_DEG = 0.5
STARS_PER_DEG2 = 400
PSF_SIGMA_PX = 1.1
STAMP_HALF = 5
ZERO_POINT_MAG = 24.0  # magnitude giving 1 ADU per frame
MAX_STAR_PEAK_ADU = 60000


def _noise_frame(geo: Geometry, rng: np.random.Generator) -> np.ndarray:
    """One flat frame at BIAS_ADU - BIAS_HEADROOM_ADU: read noise everywhere, sky on the light area,
    a little dark signal on the optical black (the covered pixels around it), bias alone in the overscan."""
    base = BIAS_ADU - BIAS_HEADROOM_ADU
    frame = rng.normal(base, READ_NOISE_ADU, size=(geo.height, geo.width))
    if geo.full:
        frame += OPTICAL_BLACK_DARK_ADU
        assert geo.bias is not None
        b = geo.bias
        frame[:, b.x0 : b.x1] -= OPTICAL_BLACK_DARK_ADU  # the overscan columns: read past the pixels, no dark
    d = geo.data
    sky = rng.normal(base + SKY_ADU, math.sqrt(SKY_ADU + READ_NOISE_ADU**2), size=(d.y1 - d.y0, d.x1 - d.x0))
    frame[d.y0 : d.y1, d.x0 : d.x1] = sky
    return np.clip(np.rint(frame), 0, 65535).astype(np.uint16).ravel()


def _noise_pool(geo: Geometry, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [_noise_frame(geo, rng) for _ in range(POOL_FRAMES)]


def chip_bias_adu(det_id: int) -> int:
    """The chip's own bias level, less BIAS_ADU (fixed per chip, within CHIP_BIAS_SPREAD_ADU)."""
    return (det_id * 7919) % (2 * CHIP_BIAS_SPREAD_ADU + 1) - CHIP_BIAS_SPREAD_ADU


def bias_offset(det_id: int, counter: int) -> np.uint16:
    """What a frame adds to the pool frame: the headroom back, the chip's level and its slow drift."""
    drift = BIAS_DRIFT_ADU * math.sin(2 * math.pi * counter / BIAS_DRIFT_FRAMES + det_id)
    return np.uint16(BIAS_HEADROOM_ADU + chip_bias_adu(det_id) + round(drift))


def stars_in_field(ra0: float, dec0: float, radius_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RA, Dec and magnitude of the fixed pseudo-random stars within radius of a position."""
    ras, decs, mags = [], [], []
    dec_cells = range(math.floor((dec0 - radius_deg) / CELL_DEG), math.floor((dec0 + radius_deg) / CELL_DEG) + 1)
    for j in dec_cells:
        cos_dec = max(0.05, math.cos(math.radians(min(89.9, abs(j * CELL_DEG)))))
        ra_half = min(180.0, radius_deg / cos_dec)
        for i in range(math.floor((ra0 - ra_half) / CELL_DEG), math.floor((ra0 + ra_half) / CELL_DEG) + 1):
            cell_rng = random.Random(f"{i % int(360 / CELL_DEG)}:{j}")
            n = int(STARS_PER_DEG2 * CELL_DEG * CELL_DEG * cos_dec)
            for _ in range(n):
                ras.append((i + cell_rng.random()) * CELL_DEG % 360)
                decs.append((j + cell_rng.random()) * CELL_DEG)
                # More faint stars than bright ones, roughly as on the sky.
                mags.append(18.5 - 8 * cell_rng.random() ** 2.5)
    return np.array(ras), np.array(decs), np.array(mags)


def star_overlay(det_id: int, ra0: float, dec0: float, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices and ADU of the stars on one chip (indices unique, ready for `+=`)."""
    xc, yc = chip_center_deg(det_id)
    cra, cdec = tangent_to_sky(np.array([xc]), np.array([yc]), ra0, dec0)
    ra, dec, mag = stars_in_field(float(cra[0]), float(cdec[0]), PITCH_X_DEG)
    if ra.size == 0:
        return np.empty(0, np.intp), np.empty(0, np.uint16)
    px, py = sky_to_pixel(ra, dec, det_id, ra0, dec0, width, height)
    inside = (px >= STAMP_HALF) & (px < width - STAMP_HALF) & (py >= STAMP_HALF) & (py < height - STAMP_HALF)
    px, py, mag = px[inside], py[inside], mag[inside]
    ix, iy = px.astype(np.intp), py.astype(np.intp)
    d = np.arange(-STAMP_HALF, STAMP_HALF + 1)
    gx = np.exp(-0.5 * ((d[None, :] + ix[:, None] - px[:, None]) / PSF_SIGMA_PX) ** 2)
    gy = np.exp(-0.5 * ((d[None, :] + iy[:, None] - py[:, None]) / PSF_SIGMA_PX) ** 2)
    psf = gy[:, :, None] * gx[:, None, :]
    psf *= (10 ** (-0.4 * (mag - ZERO_POINT_MAG)) / psf.sum(axis=(1, 2)))[:, None, None]
    flat = (iy[:, None, None] + d[None, :, None]) * width + (ix[:, None, None] + d[None, None, :])
    idx, inverse = np.unique(flat.ravel(), return_inverse=True)
    adu = np.bincount(inverse, weights=psf.ravel())
    keep = adu >= 1.0
    return idx[keep], np.minimum(adu[keep], MAX_STAR_PEAK_ADU).astype(np.uint16)


class SimulatedCamera(Camera):
    """Behaves like the camera and its frame grabbers: timing, noise, stars and faults."""

    def __init__(self, cfg: CameraConfig, seed: int = 0, gps_jitter_s: float = 0.0002) -> None:
        self.cfg = cfg
        self.geometry = geometry(cfg)
        self._pool = _noise_pool(self.geometry, seed)
        self._rng = random.Random(seed)
        self._jitter_ns = int(gps_jitter_s * 1e9)
        self._counters: dict[int, int] = {}
        self._overlays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._spec: ExposureSpec | None = None
        self._pointing: tuple[object, ...] | None = None
        faults = cfg.faults
        self._missed = {(f.det_id, f.frame) for f in faults.missed}
        self._corrupted = {(f.det_id, f.frame) for f in faults.corrupted}

    def open(self, det_ids: list[int]) -> list[int]:
        bad = set(self.cfg.faults.unrecognised)
        ok = [d for d in det_ids if d not in bad]
        for d in ok:
            self._counters.setdefault(d, 0)
        return ok

    def start_exposure(self, spec: ExposureSpec) -> None:
        self._spec = spec
        pointing = (spec.ra_deg, spec.dec_deg, tuple(self._counters))
        if pointing != self._pointing:  # the same field again (or sim:alpaca's every frame): the same stars
            self._pointing = pointing
            self._overlays = {d: self._stars(d, spec.ra_deg, spec.dec_deg) for d in self._counters}

    def _stars(self, det_id: int, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
        """The chip's star overlay, its indices in the frame (the light area is DATASEC of a full readout)."""
        geo, cam = self.geometry, self.cfg
        idx, adu = star_overlay(det_id, ra0, dec0, cam.width_px, cam.height_px)
        if geo.full:
            y, x = np.divmod(idx, cam.width_px)
            idx = (y + geo.data.y0) * geo.width + x + geo.data.x0
        return idx, adu

    def frame_start_ns(self, index: int) -> int:
        assert self._spec is not None, "start_exposure first"
        return self._spec.start_ns + round(index * 1e9 / self._spec.fps)

    def wait_frame(self, index: int) -> None:
        ready_ns = self.frame_start_ns(index + 1)  # read out once the frame's time has passed
        delay = (ready_ns - time.time_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)

    def read_frame(self, det_id: int, index: int, into: np.ndarray) -> FrameInfo | None:
        counter = self._counters[det_id]
        self._counters[det_id] = counter + 1  # a missed frame still advances the chip's counter
        f = self.cfg.faults
        if (det_id, index) in self._missed or (f.missed_rate and self._rng.random() < f.missed_rate):
            return None
        np.add(self._pool[(det_id * 3 + counter) % POOL_FRAMES], bias_offset(det_id, counter), out=into)
        idx, adu = self._overlays.get(det_id, (None, None))
        if idx is not None and idx.size:
            into[idx] += adu
        damaged = (det_id, index) in self._corrupted or bool(f.corrupted_rate and self._rng.random() < f.corrupted_rate)
        if damaged:
            # What a link error leaves: a run of garbage bytes somewhere in the frame.
            start = self._rng.randrange(0, into.size - 4096)
            into[start : start + 4096] = 0xDEAD
        jitter = self._rng.randint(-self._jitter_ns, self._jitter_ns) if self._jitter_ns else 0
        return FrameInfo(det_id, counter, self.frame_start_ns(index) + jitter, damaged)
