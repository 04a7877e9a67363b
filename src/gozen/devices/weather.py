"""The weather station (ASCOM ObservingConditions): what the sky and the air are doing now.

`WeatherStation` is what gozen needs of one; `AlpacaWeatherStation` reads a real (or the
simulated) station over ASCOM Alpaca; `SimulatedWeatherStation` is the simulated observatory's
weather, which `sim:alpaca` serves.
"""

from __future__ import annotations

import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from gozen.config import AlpacaDevice, DeviceSimulator
from gozen.devices.alpaca import optional

NAME = "weather station"


@dataclass(frozen=True)
class Conditions:
    """One reading of the station; None where it does not measure a quantity."""

    temperature_c: float | None = None
    humidity_pct: float | None = None
    dewpoint_c: float | None = None
    pressure_hpa: float | None = None
    wind_ms: float | None = None
    wind_gust_ms: float | None = None
    wind_dir_deg: float | None = None
    rain_mmh: float | None = None
    sky_temp_c: float | None = None
    cloud_pct: float | None = None


# Conditions field -> the ObservingConditions member that measures it
MEMBERS = {
    "temperature_c": "Temperature",
    "humidity_pct": "Humidity",
    "dewpoint_c": "DewPoint",
    "pressure_hpa": "Pressure",
    "wind_ms": "WindSpeed",
    "wind_gust_ms": "WindGust",
    "wind_dir_deg": "WindDirection",
    "rain_mmh": "RainRate",
    "sky_temp_c": "SkyTemperature",
    "cloud_pct": "CloudCover",
}


class WeatherStation(ABC):
    @abstractmethod
    def conditions(self) -> Conditions:
        """The latest values; gozen.service.DeviceUnavailable when the station does not answer."""


class AlpacaWeatherStation(WeatherStation):
    """An ASCOM ObservingConditions device; quantities it does not implement are None."""

    def __init__(self, where: AlpacaDevice) -> None:
        from alpaca.observingconditions import ObservingConditions

        self.station = ObservingConditions(where.address, where.device_number)

    def conditions(self) -> Conditions:
        values = {f: optional(self.station, member, NAME) for f, member in MEMBERS.items()}
        return Conditions(**{f: None if v is None else float(v) for f, v in values.items()})


@dataclass
class SimulatedWeatherStation(WeatherStation):
    """A mountain site's weather: a daily temperature swing, wandering humidity, noise, and a
    scripted humid, windy, rainy spell every `bad_weather_every_s`. Values are keyed by their
    ObservingConditions member (lower case), as `sim:alpaca` serves them; `pinned` overrides."""

    sim: DeviceSimulator
    clock: Callable[[], float] = time.time
    pinned: dict[str, float] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    humidity: float = 55.0

    def bad_spell(self) -> bool:
        every = self.sim.bad_weather_every_s
        return bool(every) and (self.clock() % every) < self.sim.bad_weather_for_s

    def values(self) -> dict[str, float]:
        t = self.clock()
        temp = 5.0 + 4.0 * math.sin(2 * math.pi * (t % 86400) / 86400 - 2.0) + self.rng.gauss(0, 0.05)
        # humidity wanders (a bounded random walk) and soars in a scripted spell
        self.humidity = min(80.0, max(30.0, self.humidity + self.rng.gauss(0, 0.3)))
        bad = self.bad_spell()
        humidity = 96.0 + self.rng.gauss(0, 0.5) if bad else self.humidity
        v = {
            "temperature": temp,
            "humidity": min(100.0, humidity),
            "pressure": 886.0 + 2 * math.sin(t / 40000) + self.rng.gauss(0, 0.05),
            "windspeed": abs(self.rng.gauss(2.5, 1.0)) + (6.0 if bad else 0.0),
            "windgust": abs(self.rng.gauss(4.0, 1.5)) + (8.0 if bad else 0.0),
            "winddirection": (200 + self.rng.gauss(0, 20)) % 360,
            "rainrate": 0.8 if bad else 0.0,
            "skytemperature": -8.0 if bad else -30.0 + self.rng.gauss(0, 0.5),
            "cloudcover": 95.0 if bad else max(0.0, self.rng.gauss(5, 3)),
            "skybrightness": 0.0,
        }
        v.update(self.pinned)
        v["dewpoint"] = dew_point(v["temperature"], v["humidity"])
        return {k: round(x, 3) for k, x in v.items()}

    def conditions(self) -> Conditions:
        v = self.values()
        return Conditions(**{f: v[member.lower()] for f, member in MEMBERS.items()})


def dew_point(temp_c: float, humidity_pct: float) -> float:
    """Magnus formula (Alduchov & Eskridge 1996 constants)."""
    a, b = 17.625, 243.04
    g = math.log(max(humidity_pct, 0.1) / 100.0) + a * temp_c / (b + temp_c)
    return b * g / (a - g)
