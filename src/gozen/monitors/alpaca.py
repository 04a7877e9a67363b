"""`monitor:telescope` and `monitor:weather`: the mount's pointing and the weather, on the board."""

from __future__ import annotations

import math
from dataclasses import fields

from gozen.devices.factory import safety_from_config, telescope_from_config, weather_from_config
from gozen.devices.weather import Conditions
from gozen.monitors.base import Monitor
from gozen.monitors.board import Reading
from gozen.service import Context


class TelescopeMonitor(Monitor):
    device = "telescope"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.telescope = telescope_from_config(ctx.cfg)

    def read(self) -> list[Reading]:
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
