"""What every `monitor:*` program does: read a device, check the values, publish, notice silence.

A device that does not answer (refused, timed out, malformed reply) publishes nothing, so its
values go stale on the board after their max age; the first failure and the recovery are
events, once each. Right after the program starts, a device that has not answered yet is
waited for (`start_grace_s`: its simulator or server may still be starting) before it counts
as unreachable. A value that is NaN, infinite or outside its plausible range is rejected
with a logged reason and not published; the rest of the reading still is.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from fnmatch import fnmatch

from sqlalchemy import Engine

from gozen.db.events import record_event
from gozen.monitors.board import Reading, publish

log = logging.getLogger(__name__)

# Plausible ranges: outside them a sensor is broken, not the weather.
RANGES: dict[str, tuple[float, float]] = {
    "telescope.ra_deg": (0.0, 360.0),
    "telescope.dec_deg": (-90.0, 90.0),
    "telescope.alt_deg": (-90.0, 90.0),
    "telescope.az_deg": (0.0, 360.0),
    "telescope.airmass": (1.0, 100.0),
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


class DeviceError(Exception):
    """The device did not answer usefully; the message says how."""


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


@dataclass
class Monitor:
    """Subclasses set name, device and read(); run() publishes every `every_s`."""

    engine: Engine
    host: str
    every_s: float
    name: str = "monitor"
    device: str = "device"
    start_grace_s: float = 0.0  # the programs get monitors.start_grace_s
    down_since: float | None = None
    rejected: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    answered: bool = False  # the device has answered since the program started

    @property
    def max_age_s(self) -> float:
        return 3 * self.every_s + 2

    def read(self) -> list[Reading]:
        raise NotImplementedError

    def in_start_grace(self) -> bool:
        """True while the program is young and its device has never answered: silence is not news yet."""
        return not self.answered and time.monotonic() - self.started_at < self.start_grace_s

    def step(self) -> list[Reading]:
        """One reading: the values published (an empty list when the device failed)."""
        try:
            readings = self.read()
        except DeviceError as err:
            if self.in_start_grace():
                log.info("%s: waiting for the first reading from %s: %s", self.name, self.device, err)
            else:
                self.went_down(str(err))
            return []
        self.answered = True
        self.came_back()
        good = []
        self.rejected = []
        for r in readings:
            why = rejection(r)
            if why:
                self.rejected.append(why)
                log.warning("%s: rejected %s", self.name, why)
            else:
                good.append(r)
        publish(self.engine, self.name, good)
        return good

    def went_down(self, why: str) -> None:
        log.error("%s: %s", self.name, why)
        if self.down_since is None:
            self.down_since = time.monotonic()
            record_event(
                self.engine,
                host=self.host,
                source=self.name,
                kind="device_unreachable",
                subject=self.device,
                severity="error",
                message=f"{self.device} does not answer: {why}; its values will go stale",
            )

    def came_back(self) -> None:
        if self.down_since is not None:
            gone = time.monotonic() - self.down_since
            self.down_since = None
            record_event(
                self.engine,
                host=self.host,
                source=self.name,
                kind="device_back",
                subject=self.device,
                message=f"{self.device} answers again after {gone:.0f} s",
            )

    def run(self) -> None:
        while True:
            t0 = time.monotonic()
            self.step()
            time.sleep(max(0.1, self.every_s - (time.monotonic() - t0)))
