"""The dome (ASCOM Dome): its shutter and where its slit points.

`Dome` is what gozen needs of one; `AlpacaDome` drives an ASCOM Alpaca dome; `SimulatedDome`
is a dome whose shutter takes `shutter_s` to open or close, for the simulated observatory.
"""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from gozen.config import AlpacaDevice
from gozen.devices.alpaca import ask, command

NAME = "dome"


class Shutter(enum.StrEnum):
    """ASCOM's ShutterState, in words."""

    OPEN = "open"
    CLOSED = "closed"
    OPENING = "opening"
    CLOSING = "closing"
    ERROR = "error"


@dataclass(frozen=True)
class DomeStatus:
    shutter: Shutter
    az_deg: float | None  # None for a roll-off roof, which has no azimuth
    slewing: bool
    parked: bool


class Dome(ABC):
    @abstractmethod
    def status(self) -> DomeStatus:
        """The dome now; gozen.service.DeviceUnavailable when it does not answer."""

    @abstractmethod
    def open_shutter(self) -> None:
        """Start opening the shutter (status() says when it is open)."""

    @abstractmethod
    def close_shutter(self) -> None:
        """Start closing the shutter (status() says when it is closed)."""


class AlpacaDome(Dome):
    def __init__(self, where: AlpacaDevice) -> None:
        from alpaca.dome import Dome as Client

        self.device = Client(where.address, where.device_number)

    def status(self) -> DomeStatus:
        d = self.device
        shutter = list(Shutter)[int(ask(d, "ShutterStatus", NAME))]  # ASCOM's order: open, closed, opening, ...
        az = float(ask(d, "Azimuth", NAME)) if ask(d, "CanSetAzimuth", NAME) else None
        return DomeStatus(shutter, az, bool(ask(d, "Slewing", NAME)), bool(ask(d, "AtPark", NAME)))

    def open_shutter(self) -> None:
        command(self.device, "OpenShutter", NAME)

    def close_shutter(self) -> None:
        command(self.device, "CloseShutter", NAME)


class SimulatedDome(Dome):
    """A dome parked at azimuth 0 with its shutter closed; the shutter moves in `shutter_s`."""

    def __init__(self, shutter_s: float = 20.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.shutter_s, self.clock = shutter_s, clock
        self.target = Shutter.CLOSED
        self.moved_at = float("-inf")  # when the shutter last started to move

    def status(self) -> DomeStatus:
        moving = self.clock() - self.moved_at < self.shutter_s
        if moving:
            shutter = Shutter.OPENING if self.target is Shutter.OPEN else Shutter.CLOSING
        else:
            shutter = self.target
        return DomeStatus(shutter, 0.0, slewing=False, parked=True)

    def open_shutter(self) -> None:
        self.move(Shutter.OPEN)

    def close_shutter(self) -> None:
        self.move(Shutter.CLOSED)

    def move(self, target: Shutter) -> None:
        if target is not self.target:
            self.target, self.moved_at = target, self.clock()
