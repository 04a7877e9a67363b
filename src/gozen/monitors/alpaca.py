"""`monitor:telescope` and `monitor:weather`: ASCOM Alpaca devices read with the alpyca client."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests
from alpaca import exceptions as ascom
from alpaca.observingconditions import ObservingConditions
from alpaca.safetymonitor import SafetyMonitor
from alpaca.telescope import Telescope
from urllib3.exceptions import ProtocolError

from gozen.config import AlpacaDevice
from gozen.monitors.base import DeviceError, Monitor
from gozen.monitors.board import Reading

log = logging.getLogger(__name__)
ASCOM_ERRORS = tuple(
    getattr(ascom, n) for n in dir(ascom) if n.endswith("Exception") and isinstance(getattr(ascom, n), type)
)


def dropped_kept_alive(err: requests.ConnectionError) -> bool:
    """The server closed a kept-alive connection as the request went out: nothing was read, asking again is safe."""
    return bool(err.args) and isinstance(err.args[0], ProtocolError)


def ask(device: Any, member: str) -> Any:
    """One Alpaca property; DeviceError naming it when the device fails to answer.

    A reading is a GET: one dropped kept-alive connection is asked again on a new one
    (a server may close an idle connection just as our next poll goes out).
    """
    for attempt in (1, 2):
        try:
            return getattr(device, member)
        except requests.Timeout:
            raise DeviceError(f"{member}: no answer from {device.address} (timed out)") from None
        except requests.ConnectionError as err:
            if attempt == 1 and dropped_kept_alive(err):
                log.info("%s at %s dropped a kept-alive connection: asking again", member, device.address)
                continue
            raise DeviceError(f"{member}: cannot connect to {device.address} ({reason(err)})") from None
        except (requests.RequestException, ValueError, KeyError) as err:  # ValueError: malformed JSON
            raise DeviceError(f"{member}: bad reply from {device.address}: {err}") from None
        except ASCOM_ERRORS as err:
            raise DeviceError(f"{member}: the device says {type(err).__name__}: {err}") from None
    raise AssertionError("unreachable")


def reason(err: requests.ConnectionError) -> str:
    """The innermost cause in a few words: "Connection refused", "Connection reset by peer"."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        inner = getattr(cause, "reason", None)  # urllib3's MaxRetryError
        if not isinstance(inner, BaseException):
            inner = next((a for a in reversed(cause.args) if isinstance(a, BaseException)), None)
        if inner is None:
            text = str(cause)
            errno_text = text.rsplit("] ", 1)[-1] if "[Errno" in text else text.rsplit(": ", 1)[-1]
            return errno_text.strip("\"')(")[:120] or type(cause).__name__
        cause = inner
    return type(err).__name__


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
