"""The dome (ASCOM Dome): its shutter and where its slit points.

`Dome` is what gozen needs of one (queue:server closes and opens it, monitor:telescope reads it);
`AlpacaDome` drives an ASCOM Alpaca dome; `SimulatedDome` is a dome whose shutter takes `shutter_s`
to open or close and can be stuck, which `sim:alpaca` serves as the simulated observatory's dome.
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
    """A dome parked at azimuth 0 with its shutter closed; the shutter moves end to end in `shutter_s`.

    `stuck` (a test's fault) stops the shutter where it is: asked to close, it says "closing" and
    never gets there until it is freed, then goes on from where it stopped.
    """

    def __init__(self, shutter_s: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.shutter_s, self.clock = shutter_s, clock
        self.target = Shutter.CLOSED
        self.opened = 0.0  # how far open (0 closed .. 1 open) at `since`
        self.since = clock()
        self._stuck = False

    def fraction_open(self) -> float:
        """How far open the shutter is now (0 closed .. 1 open)."""
        if self._stuck:
            return self.opened
        goal = 1.0 if self.target is Shutter.OPEN else 0.0
        step = (self.clock() - self.since) / self.shutter_s if self.shutter_s > 0 else 1.0
        return min(goal, self.opened + step) if goal > self.opened else max(goal, self.opened - step)

    def status(self) -> DomeStatus:
        at = self.fraction_open()
        if at == (1.0 if self.target is Shutter.OPEN else 0.0):
            shutter = self.target
        else:
            shutter = Shutter.OPENING if self.target is Shutter.OPEN else Shutter.CLOSING
        return DomeStatus(shutter, 0.0, slewing=False, parked=True)

    def open_shutter(self) -> None:
        self.move(Shutter.OPEN)

    def close_shutter(self) -> None:
        self.move(Shutter.CLOSED)

    def move(self, target: Shutter) -> None:
        self.opened, self.since, self.target = self.fraction_open(), self.clock(), target

    def retime(self, shutter_s: float) -> None:
        """From now on the shutter moves end to end in `shutter_s` (from where it is)."""
        self.opened, self.since, self.shutter_s = self.fraction_open(), self.clock(), shutter_s

    @property
    def stuck(self) -> bool:
        return self._stuck

    @stuck.setter
    def stuck(self, stuck: bool) -> None:
        self.opened, self.since = self.fraction_open(), self.clock()
        self._stuck = stuck
