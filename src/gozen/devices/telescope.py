"""The telescope mount: where it points; slewing, parking and tracking.

`Telescope` is what gozen needs of a mount (queue:server drives it, monitor:telescope reads
it); `AlpacaTelescope` drives an ASCOM Alpaca telescope through alpyca; `SimulatedTelescope`
is the simulated observatory's mount, which `sim:alpaca` serves over Alpaca.
`telescope_from_config` picks one.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from gozen.config import AlpacaDevice, Config, Site
from gozen.devices.alpaca import ask, command, guarded
from gozen.sky import horizontal, zenith_radec

NAME = "telescope"
SETTLE_POLL_S = 0.2  # how often a slew is asked whether it is over


@dataclass(frozen=True)
class TelescopeState:
    """One reading of the mount."""

    ra_deg: float
    dec_deg: float
    alt_deg: float
    az_deg: float
    tracking: bool
    slewing: bool
    parked: bool


class TelescopeError(Exception):
    """The mount answered but would not, or did not finish in time."""


class Parked(TelescopeError):
    """Asked to move while parked: unpark first."""


class InvalidTarget(TelescopeError):
    """A position off the sky."""


class Telescope(ABC):
    """A mount. Every method raises gozen.service.DeviceUnavailable when the mount does not answer."""

    @abstractmethod
    def position(self) -> TelescopeState:
        """Where it points now, and what it is doing."""

    @abstractmethod
    def slewing(self) -> bool:
        """Moving to a target or to park (one cheap question, asked while waiting)."""

    @abstractmethod
    def at_park(self) -> bool: ...

    @abstractmethod
    def unpark(self) -> None: ...

    @abstractmethod
    def start_slew(self, ra_deg: float, dec_deg: float) -> None:
        """Start moving to (RA, Dec) and track there; Parked when parked."""

    @abstractmethod
    def start_park(self) -> None:
        """Start moving to the park position; tracking stops."""

    @abstractmethod
    def set_tracking(self, on: bool) -> None: ...

    @abstractmethod
    def abort_slew(self) -> None: ...

    def point(self, ra_deg: float, dec_deg: float, timeout_s: float, pause: Callable[[float], object]) -> None:
        """Unpark if parked, slew to (RA, Dec), and return once it is there.

        `pause(seconds)` is how the caller waits between questions (and may raise to leave).
        """
        if self.at_park():
            self.unpark()
        self.start_slew(ra_deg, dec_deg)
        self.wait_still(timeout_s, pause)

    def park(self, timeout_s: float, pause: Callable[[float], object]) -> None:
        """Park, and return once parked."""
        self.start_park()
        self.wait_still(timeout_s, pause)

    def wait_still(self, timeout_s: float, pause: Callable[[float], object]) -> None:
        """Wait for the slew in hand to end; TelescopeError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self.slewing():
            if time.monotonic() > deadline:
                raise TelescopeError(f"{NAME}: still slewing after {timeout_s:g} s")
            pause(SETTLE_POLL_S)


class AlpacaTelescope(Telescope):
    """An ASCOM Alpaca telescope (RA in hours on the wire, degrees here)."""

    def __init__(self, where: AlpacaDevice) -> None:
        from alpaca.telescope import Telescope as Client

        self.device = Client(where.address, where.device_number)

    def position(self) -> TelescopeState:
        d = self.device
        return TelescopeState(
            ra_deg=float(ask(d, "RightAscension", NAME)) * 15.0,
            dec_deg=float(ask(d, "Declination", NAME)),
            alt_deg=float(ask(d, "Altitude", NAME)),
            az_deg=float(ask(d, "Azimuth", NAME)),
            tracking=bool(ask(d, "Tracking", NAME)),
            slewing=bool(ask(d, "Slewing", NAME)),
            parked=bool(ask(d, "AtPark", NAME)),
        )

    def slewing(self) -> bool:
        return bool(ask(self.device, "Slewing", NAME))

    def at_park(self) -> bool:
        return bool(ask(self.device, "AtPark", NAME))

    def unpark(self) -> None:
        command(self.device, "Unpark", NAME)

    def start_slew(self, ra_deg: float, dec_deg: float) -> None:
        command(self.device, "SlewToCoordinatesAsync", NAME, ra_deg / 15.0, dec_deg)

    def start_park(self) -> None:
        command(self.device, "Park", NAME)

    def set_tracking(self, on: bool) -> None:
        guarded(self.device, "Tracking", NAME, lambda: setattr(self.device, "Tracking", on))

    def abort_slew(self) -> None:
        command(self.device, "AbortSlew", NAME)


SLEW_RATE_DEG_S = 3.0
SIDEREAL_DEG_PER_S = 360.0 / 86164.0905


class SimulatedTelescope(Telescope):
    """A mount that slews at SLEW_RATE_DEG_S (plus a second to settle) and parks at the zenith in
    2 s; when not tracking, the sky drifts past it. Time comes from `clock` (tests speed it up)."""

    def __init__(self, site: Site, clock: Callable[[], float] = time.time) -> None:
        self.site, self.clock = site, clock
        self.tracking = False
        self.parked = True
        self.ra_deg, self.dec_deg, self.ref_time = 0.0, 0.0, 0.0  # ra_deg true at ref_time (drifts untracked)
        self.slew_from, self.slew_start, self.slew_end = (0.0, 0.0), 0.0, 0.0
        self._park_here()

    def _park_here(self) -> None:
        now = self.clock()
        self.ra_deg, self.dec_deg = zenith_radec(self.site, datetime.fromtimestamp(now, UTC))
        self.ref_time = now

    def radec(self) -> tuple[float, float]:
        """Where it points now (degrees), without the alt/az of `position()`."""
        now = self.clock()
        if now < self.slew_end:
            f = (now - self.slew_start) / (self.slew_end - self.slew_start)
            (ra0, dec0), ra1 = self.slew_from, self.ra_deg
            dra = (ra1 - ra0 + 180) % 360 - 180
            return (ra0 + f * dra) % 360, dec0 + f * (self.dec_deg - dec0)
        if self.tracking:
            return self.ra_deg, self.dec_deg
        return (self.ra_deg + SIDEREAL_DEG_PER_S * (now - self.ref_time)) % 360, self.dec_deg

    def position(self) -> TelescopeState:
        ra, dec = self.radec()
        hz = horizontal(self.site, ra, dec, datetime.fromtimestamp(self.clock(), UTC))
        return TelescopeState(ra, dec, hz.alt_deg, hz.az_deg, self.tracking, self.slewing(), self.parked)

    def slewing(self) -> bool:
        return self.clock() < self.slew_end

    def at_park(self) -> bool:
        return self.parked

    def unpark(self) -> None:
        self.parked = False

    def start_slew(self, ra_deg: float, dec_deg: float) -> None:
        if self.parked:
            raise Parked("the telescope is parked: unpark it first")
        if not (0 <= ra_deg < 360 and -90 <= dec_deg <= 90):
            raise InvalidTarget(f"RightAscension/Declination out of range: {ra_deg / 15}h {dec_deg}")
        start = self.radec()
        now = self.clock()
        dist = math.hypot(((ra_deg - start[0] + 180) % 360 - 180) * math.cos(math.radians(dec_deg)), dec_deg - start[1])
        self.slew_from, self.slew_start, self.slew_end = start, now, now + 1.0 + dist / SLEW_RATE_DEG_S
        self.ra_deg, self.dec_deg, self.ref_time = ra_deg, dec_deg, self.slew_end
        self.tracking = True

    def start_park(self) -> None:
        self.parked, self.tracking = False, False
        start = self.radec()
        self._park_here()
        self.slew_from, self.slew_start, self.slew_end = start, self.clock(), self.clock() + 2.0
        self.parked = True

    def set_tracking(self, on: bool) -> None:
        if self.parked:
            raise Parked("the telescope is parked")
        self.ra_deg, self.dec_deg = self.radec()
        self.ref_time = self.clock()
        self.tracking = on

    def abort_slew(self) -> None:
        self.ra_deg, self.dec_deg = self.radec()
        self.slew_end = 0.0


def telescope_from_config(cfg: Config) -> Telescope:
    """The mount at `monitors.telescope`, over ASCOM Alpaca: the simulated observatory's is
    `SimulatedTelescope` served by `sim:alpaca`, so the same adapter drives both."""
    return AlpacaTelescope(cfg.monitors.telescope)
