"""`monitor:telescope` and `monitor:weather`: ASCOM Alpaca devices read with the alpyca client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from alpaca import exceptions as ascom
from alpaca.observingconditions import ObservingConditions
from alpaca.safetymonitor import SafetyMonitor
from alpaca.telescope import Telescope

from gozen.config import AlpacaDevice
from gozen.monitors.base import DeviceError, Monitor
from gozen.monitors.board import Reading

ASCOM_ERRORS = tuple(
    getattr(ascom, n) for n in dir(ascom) if n.endswith("Exception") and isinstance(getattr(ascom, n), type)
)


def ask(device: Any, member: str) -> Any:
    """One Alpaca property; DeviceError naming it when the device fails to answer."""
    try:
        return getattr(device, member)
    except requests.Timeout:
        raise DeviceError(f"{member}: no answer from {device.address} (timed out)") from None
    except requests.ConnectionError:
        raise DeviceError(f"{member}: cannot connect to {device.address}") from None
    except (requests.RequestException, ValueError, KeyError) as err:  # ValueError: malformed JSON
        raise DeviceError(f"{member}: bad reply from {device.address}: {err}") from None
    except ASCOM_ERRORS as err:
        raise DeviceError(f"{member}: the device says {type(err).__name__}: {err}") from None


def optional(device: Any, member: str) -> Any:
    """A property a device may not implement (ASCOM NotImplemented): None then."""
    try:
        return ask(device, member)
    except DeviceError as err:
        if "NotImplemented" in str(err):
            return None
        raise


@dataclass
class TelescopeMonitor(Monitor):
    where: AlpacaDevice = AlpacaDevice()
    name: str = "monitor:telescope"
    device: str = "telescope"

    def __post_init__(self) -> None:
        self.scope = Telescope(self.where.address, self.where.device_number)

    def read(self) -> list[Reading]:
        t, age = self.scope, self.max_age_s
        ra_h, dec = ask(t, "RightAscension"), ask(t, "Declination")
        alt, az = ask(t, "Altitude"), ask(t, "Azimuth")
        airmass = None
        if isinstance(alt, int | float) and 0 < alt <= 90:
            import math

            airmass = round(1.0 / math.sin(math.radians(alt + 244.0 / (165.0 + 47.0 * alt**1.1))), 4)  # Pickering
        return [
            Reading("telescope.ra_deg", round(float(ra_h) * 15.0, 6), "deg", age),
            Reading("telescope.dec_deg", float(dec), "deg", age),
            Reading("telescope.alt_deg", float(alt), "deg", age),
            Reading("telescope.az_deg", float(az), "deg", age),
            Reading("telescope.airmass", airmass, "", age),
            Reading("telescope.tracking", bool(ask(t, "Tracking")), "", age),
            Reading("telescope.slewing", bool(ask(t, "Slewing")), "", age),
            Reading("telescope.parked", bool(ask(t, "AtPark")), "", age),
        ]


# ObservingConditions member -> (board key, unit)
WEATHER = {
    "Temperature": ("weather.temperature_c", "degC"),
    "Humidity": ("weather.humidity_pct", "%"),
    "DewPoint": ("weather.dewpoint_c", "degC"),
    "Pressure": ("weather.pressure_hpa", "hPa"),
    "WindSpeed": ("weather.wind_ms", "m/s"),
    "WindGust": ("weather.wind_gust_ms", "m/s"),
    "WindDirection": ("weather.wind_dir_deg", "deg"),
    "RainRate": ("weather.rain_mmh", "mm/h"),
    "SkyTemperature": ("weather.sky_temp_c", "degC"),
    "CloudCover": ("weather.cloud_pct", "%"),
}


@dataclass
class WeatherMonitor(Monitor):
    where: AlpacaDevice = AlpacaDevice()
    safety: AlpacaDevice | None = None
    name: str = "monitor:weather"
    device: str = "weather station"

    def __post_init__(self) -> None:
        self.station = ObservingConditions(self.where.address, self.where.device_number)
        self.safety_monitor = SafetyMonitor(self.safety.address, self.safety.device_number) if self.safety else None

    def read(self) -> list[Reading]:
        age = self.max_age_s
        out = []
        for member, (key, unit) in WEATHER.items():
            v = optional(self.station, member)
            if v is not None:
                out.append(Reading(key, float(v), unit, age))
        if self.safety_monitor is not None:
            out.append(Reading("weather.safe", bool(ask(self.safety_monitor, "IsSafe")), "", age))
        return out
