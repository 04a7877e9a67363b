"""The observatory's status at exposure start: what the FITS headers say about it.

The values come from the monitors' status board. Only in the simulated observatory
(`monitors.simulator.enabled`) do the simulated telescope, weather station, GPS clock,
thermometers and UPS fill what the board lacks, saying so in `source`: on a real site a
reading the board lacks is absent, and the header says UNKNOWN and why.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from gozen.config import Config
from gozen.sky import horizontal, zenith_radec


@dataclass(frozen=True)
class StatusValue:
    value: float | str | bool | None
    unit: str
    source: str
    time: str  # ISO UTC of the reading
    stale: bool = False


@dataclass(frozen=True)
class StatusSnapshot:
    time: str
    values: dict[str, StatusValue]

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "values": {k: asdict(v) for k, v in self.values.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StatusSnapshot:
        return cls(data["time"], {k: StatusValue(**v) for k, v in data["values"].items()})

    def get(self, key: str) -> StatusValue | None:
        return self.values.get(key)

    def number(self, key: str) -> float | None:
        """A numeric reading, or None when absent or not a number."""
        sv = self.values.get(key)
        return float(sv.value) if sv is not None and isinstance(sv.value, int | float) else None


def simulated_snapshot(cfg: Config, when: datetime, ra_deg: float | None, dec_deg: float | None) -> StatusSnapshot:
    """Status from the simulators: pointing where asked (else the zenith), calm weather."""
    if ra_deg is None or dec_deg is None:
        ra_deg, dec_deg = zenith_radec(cfg.site, when)
    hz = horizontal(cfg.site, ra_deg, dec_deg, when)
    rng = random.Random(int(when.timestamp()))
    t = when.isoformat()

    def v(value: float | str | bool | None, unit: str, source: str) -> StatusValue:
        return StatusValue(value, unit, f"simulator:{source}", t)

    temp = round(5.0 + 3 * math.sin(when.timestamp() / 7200) + rng.gauss(0, 0.1), 2)
    humidity = round(55 + rng.gauss(0, 1), 1)
    return StatusSnapshot(
        t,
        {
            "telescope.ra_deg": v(round(ra_deg % 360, 6), "deg", "telescope"),
            "telescope.dec_deg": v(round(dec_deg, 6), "deg", "telescope"),
            "telescope.alt_deg": v(round(hz.alt_deg, 4), "deg", "telescope"),
            "telescope.az_deg": v(round(hz.az_deg, 4), "deg", "telescope"),
            "telescope.airmass": v(round(hz.airmass, 4) if hz.airmass else None, "", "telescope"),
            "telescope.tracking": v(True, "", "telescope"),
            "weather.temperature_c": v(temp, "degC", "weather"),
            "weather.humidity_pct": v(humidity, "%", "weather"),
            "weather.pressure_hpa": v(round(886 + rng.gauss(0, 0.3), 1), "hPa", "weather"),
            "weather.wind_ms": v(round(abs(rng.gauss(2, 1)), 1), "m/s", "weather"),
            "weather.dewpoint_c": v(round(temp - (100 - humidity) / 5, 2), "degC", "weather"),
            "weather.sky_temp_c": v(round(-30 + rng.gauss(0, 0.5), 1), "degC", "weather"),
            "gps.fix": v(True, "", "gpstime"),
            "gps.offset_ms": v(round(rng.gauss(0, 0.05), 3), "ms", "gpstime"),
            "temperature.camera_c": v(round(-10 + rng.gauss(0, 0.05), 2), "degC", "temperature"),
            "temperature.room_c": v(round(12 + rng.gauss(0, 0.1), 2), "degC", "temperature"),
            "power.ups_state": v("OL", "", "power"),
            "power.ups_charge_pct": v(100.0, "%", "power"),
        },
    )


def take_snapshot(
    cfg: Config, engine: Engine, when: datetime, ra_deg: float | None, dec_deg: float | None
) -> StatusSnapshot:
    """The status at exposure start: the monitors' board, and in the simulated observatory the
    simulators for what the board lacks (never on a real site: invented weather in a FITS file
    is worse than none).

    A value on the board keeps its time and staleness, so a monitor that stopped shows up in
    the headers as STALE instead of being papered over by a simulator.
    """
    from gozen.monitors.board import snapshot as board_snapshot

    board = board_snapshot(engine)
    if not cfg.monitors.simulator.enabled:
        return StatusSnapshot(when.isoformat(), board.values)
    simulated = simulated_snapshot(cfg, when, ra_deg, dec_deg)
    return StatusSnapshot(simulated.time, simulated.values | board.values)
