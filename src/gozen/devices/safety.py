"""The safety monitor (ASCOM SafetyMonitor): the site's own yes/no on whether it is safe to open.

gozen's safety decision (`monitor:safety`) weighs this device's word with its own limits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from gozen.config import AlpacaDevice
from gozen.devices.alpaca import ask
from gozen.devices.weather import SimulatedWeatherStation

NAME = "safety monitor"


class SafetyMonitor(ABC):
    @abstractmethod
    def is_safe(self) -> bool:
        """The device's verdict; gozen.service.DeviceUnavailable when it does not answer."""


class AlpacaSafetyMonitor(SafetyMonitor):
    def __init__(self, where: AlpacaDevice) -> None:
        from alpaca.safetymonitor import SafetyMonitor as Client

        self.device = Client(where.address, where.device_number)

    def is_safe(self) -> bool:
        return bool(ask(self.device, "IsSafe", NAME))


class SimulatedSafetyMonitor(SafetyMonitor):
    """A rain and humidity sensor on the simulated weather: unsafe in rain or above 90 % humidity."""

    def __init__(self, weather: SimulatedWeatherStation) -> None:
        self.weather = weather

    def is_safe(self) -> bool:
        w = self.weather.values()
        return w["humidity"] < 90 and w["rainrate"] == 0
