"""`monitor:telescope` and `monitor:weather`: the mount's pointing and the dome, and the weather, on the board."""

from __future__ import annotations

import logging
import math
from dataclasses import fields

from gozen.devices.factory import dome_from_config, safety_from_config, telescope_from_config, weather_from_config
from gozen.devices.weather import Conditions
from gozen.monitors.base import Monitor
from gozen.monitors.board import Reading
from gozen.service import Context, DeviceUnavailable

log = logging.getLogger(__name__)


class TelescopeMonitor(Monitor):
    """The mount as `telescope.*`; the dome, if there is one, as `dome.shutter` (open, closed, opening,
    closing, error), `dome.az_deg`, `dome.slewing`. A dome that does not answer is told once
    (device_unreachable, subject dome) and its values go stale; the mount's are still published."""

    device = "telescope"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.telescope = telescope_from_config(ctx.cfg)
        self.dome = dome_from_config(ctx.cfg)
        self.dome_down = ctx.trouble("device_unreachable", "device_back", "dome")

    def read(self) -> list[Reading]:
        return self.read_telescope() + self.read_dome()

    def read_dome(self) -> list[Reading]:
        if self.dome is None:
            return []
        try:
            d = self.dome.status()
        except DeviceUnavailable as err:
            if self.in_start_grace():
                log.info("%s: waiting for the first reading from the dome: %s", self.ctx.program, err.why)
            else:
                self.dome_down.failing(f"the dome does not answer: {err.why}; its values will go stale")
            return []
        self.dome_down.ok(f"the dome answers again after {self.dome_down.down_for_s:.0f} s")
        age = self.max_age_s
        out = [Reading("dome.shutter", str(d.shutter), "", age), Reading("dome.slewing", d.slewing, "", age)]
        if d.az_deg is not None:
            out.append(Reading("dome.az_deg", d.az_deg, "deg", age))
        return out

    def read_telescope(self) -> list[Reading]:
        p, age = self.telescope.position(), self.max_age_s
        airmass = None
        if 0 < p.alt_deg <= 90:
            alt = p.alt_deg
            airmass = round(1.0 / math.sin(math.radians(alt + 244.0 / (165.0 + 47.0 * alt**1.1))), 4)  # Pickering
        return [
            Reading("telescope.ra_deg", round(p.ra_deg, 6), "deg", age),
            Reading("telescope.dec_deg", p.dec_deg, "deg", age),
            Reading("telescope.alt_deg", p.alt_deg, "deg", age),
            Reading("telescope.az_deg", p.az_deg, "deg", age),
            Reading("telescope.airmass", airmass, "", age),
            Reading("telescope.tracking", p.tracking, "", age),
            Reading("telescope.slewing", p.slewing, "", age),
            Reading("telescope.parked", p.parked, "", age),
        ]


UNITS = {
    "temperature_c": "degC",
    "humidity_pct": "%",
    "dewpoint_c": "degC",
    "pressure_hpa": "hPa",
    "wind_ms": "m/s",
    "wind_gust_ms": "m/s",
    "wind_dir_deg": "deg",
    "rain_mmh": "mm/h",
    "sky_temp_c": "degC",
    "cloud_pct": "%",
}


class WeatherMonitor(Monitor):
    """The weather station's values as `weather.*`, and the site's safety monitor as `weather.safe`."""

    device = "weather station"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.station = weather_from_config(ctx.cfg)
        self.safety = safety_from_config(ctx.cfg)

    def read(self) -> list[Reading]:
        age, now = self.max_age_s, self.station.conditions()
        out = [
            Reading(f"weather.{f.name}", v, UNITS[f.name], age)
            for f in fields(Conditions)
            if (v := getattr(now, f.name)) is not None
        ]
        if self.safety is not None:
            out.append(Reading("weather.safe", self.safety.is_safe(), "", age))
        return out
