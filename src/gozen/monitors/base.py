"""What every `monitor:*` program does: read a device, check the values, publish, notice silence.

Each is a `gozen.service.Service` reading its device (through `gozen.devices`) every
`monitors.every_s`. A device that does not answer (refused, timed out, malformed reply)
publishes nothing, so its values go stale on the board after their max age; the first failure
and the recovery are events (`device_unreachable`, `device_back`), once each. Right after the
program starts, a device that has not answered yet is waited for (`start_grace_s`: its
simulator or server may still be starting) before it counts as unreachable. A value that is
NaN, infinite or outside its plausible range is rejected with a logged reason and not
published; the rest of the reading still is.
"""

from __future__ import annotations

import logging
import math
import time
from fnmatch import fnmatch

from gozen.monitors.board import Reading, publish
from gozen.service import Context, DeviceUnavailable, Service

log = logging.getLogger(__name__)

# Plausible ranges: outside them a sensor is broken, not the weather.
RANGES: dict[str, tuple[float, float]] = {
    "telescope.ra_deg": (0.0, 360.0),
    "telescope.dec_deg": (-90.0, 90.0),
    "telescope.alt_deg": (-90.0, 90.0),
    "telescope.az_deg": (0.0, 360.0),
    "telescope.airmass": (1.0, 100.0),
    "dome.az_deg": (0.0, 360.0),
    "weather.temperature_c": (-60.0, 60.0),
    "weather.dewpoint_c": (-90.0, 60.0),
    "weather.humidity_pct": (0.0, 100.0),
    "weather.pressure_hpa": (500.0, 1100.0),
    "weather.wind_ms": (0.0, 90.0),
    "weather.wind_gust_ms": (0.0, 120.0),
    "weather.wind_dir_deg": (0.0, 360.0),
    "weather.rain_mmh": (0.0, 500.0),
    "weather.sky_temp_c": (-100.0, 60.0),
    "weather.cloud_pct": (0.0, 100.0),
    "gps.offset_ms": (-86_400_000.0, 86_400_000.0),
    "gps.satellites": (0.0, 200.0),
    "temperature.*": (-150.0, 150.0),
    "power.ups_charge_pct": (0.0, 100.0),
    "power.ups_runtime_s": (0.0, 10_000_000.0),
    "power.ups_load_pct": (0.0, 200.0),
}


def rejection(r: Reading) -> str | None:
    """Why a reading cannot be published, or None when it can."""
    v = r.value
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return None
    if not math.isfinite(v):
        return f"{r.key}: {v} is not a number"
    for pattern, (lo, hi) in RANGES.items():
        if fnmatch(r.key, pattern) and not lo <= v <= hi:
            return f"{r.key}: {v} {r.unit} is outside its plausible range [{lo:g}, {hi:g}]"
    return None


class Monitor(Service):
    """A `monitor:*` program: subclasses set `device` (the events' subject) and write read()."""

    device: str = "device"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.period_s = ctx.cfg.monitors.every_s
        self.start_grace_s = ctx.cfg.monitors.start_grace_s
        self.started_at = time.monotonic()
        self.answered = False  # the device has answered since the program started
        self.rejected: list[str] = []
        self.down = ctx.trouble("device_unreachable", "device_back", self.device)

    @property
    def max_age_s(self) -> float:
        return 3 * self.period_s + 2

    def read(self) -> list[Reading]:
        """The device's values now; gozen.service.DeviceUnavailable when it does not answer."""
        raise NotImplementedError

    def in_start_grace(self) -> bool:
        """True while the program is young and its device has never answered: silence is not news yet."""
        return not self.answered and time.monotonic() - self.started_at < self.start_grace_s

    def run_once(self) -> None:
        self.step()

    def step(self) -> list[Reading]:
        """One reading: the values published (an empty list when the device failed)."""
        try:
            readings = self.read()
        except DeviceUnavailable as err:
            if self.in_start_grace():
                log.info("%s: waiting for the first reading from %s: %s", self.ctx.program, self.device, err.why)
            else:
                self.down.failing(f"{self.device} does not answer: {err.why}; its values will go stale")
            return []
        self.answered = True
        self.down.ok(f"{self.device} answers again after {self.down.down_for_s:.0f} s")
        good = []
        self.rejected = []
        for r in readings:
            refused = rejection(r)
            if refused:
                self.rejected.append(refused)
                log.warning("%s: rejected %s", self.ctx.program, refused)
            else:
                good.append(r)
        publish(self.ctx.engine, self.ctx.program, good)
        return good
