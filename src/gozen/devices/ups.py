"""The UPS, as NUT (Network UPS Tools) reports it: on line or on battery, charge, runtime, load.

`Ups` is what gozen needs of one; `NutUps` runs NUT's client `upsc ups@host` and parses its
`variable: value` lines; `SimulatedUps` prints the same lines for the simulated observatory.
"""

from __future__ import annotations

import random
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from gozen.service import DeviceUnavailable

NAME = "UPS"


@dataclass(frozen=True)
class UpsStatus:
    state: str  # NUT's ups.status flags, e.g. "OL", "OB DISCHRG", "OB LB"
    charge_pct: float | None = None
    runtime_s: float | None = None
    load_pct: float | None = None

    @property
    def on_battery(self) -> bool:
        return "OB" in self.state.split()

    @property
    def low_battery(self) -> bool:
        return "LB" in self.state.split()


class Ups(ABC):
    @abstractmethod
    def status(self) -> UpsStatus:
        """The UPS now; gozen.service.DeviceUnavailable when NUT cannot tell."""


def parse_upsc(text: str) -> dict[str, str]:
    """`upsc` prints `variable: value` lines; anything else is an error message from NUT."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if not sep or " " in key:
            continue
        out[key] = value.strip()
    if not out:
        raise DeviceUnavailable(NAME, f"upsc printed no variables: {text.strip()[:200]!r}")
    return out


def status_of(v: dict[str, str]) -> UpsStatus:
    """The status in upsc's variables; DeviceUnavailable when they make no sense."""
    if "ups.status" not in v:
        raise DeviceUnavailable(NAME, "upsc gave no ups.status")
    numbers: dict[str, float | None] = {}
    for var, name in (("battery.charge", "charge_pct"), ("battery.runtime", "runtime_s"), ("ups.load", "load_pct")):
        try:
            numbers[name] = float(v[var]) if var in v else None
        except ValueError:
            raise DeviceUnavailable(NAME, f"upsc: {var} is not a number: {v[var]!r}") from None
    return UpsStatus(v["ups.status"], **numbers)


class NutUps(Ups):
    """NUT's client: `command` is e.g. [upsc, ups@localhost]."""

    def __init__(self, command: list[str]) -> None:
        self.command = command

    def status(self) -> UpsStatus:
        what = " ".join(self.command)
        try:
            p = subprocess.run(self.command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise DeviceUnavailable(NAME, f"{what}: {err}") from None
        if p.returncode != 0:
            raise DeviceUnavailable(NAME, f"{what} exit {p.returncode}: {(p.stderr or p.stdout).strip()[:200]}")
        return status_of(parse_upsc(p.stdout))


@dataclass
class SimulatedUps(Ups):
    """A UPS on line power, lightly loaded; `outage` puts it on battery, draining."""

    outage: bool = False
    charge: float = 100.0
    rng: random.Random = field(default_factory=lambda: random.Random(3))

    def upsc(self) -> str:
        """What `upsc` would print now."""
        self.charge = max(5.0, self.charge - 0.5) if self.outage else min(100.0, self.charge + 0.2)
        status = ("OB DISCHRG" if self.charge > 20 else "OB LB") if self.outage else "OL"
        return (
            "device.mfr: gozen\ndevice.model: simulated UPS\n"
            f"battery.charge: {self.charge:.0f}\nbattery.runtime: {self.charge * 36:.0f}\n"
            f"ups.load: {20 + self.rng.gauss(0, 1):.0f}\nups.status: {status}\n"
        )

    def status(self) -> UpsStatus:
        return status_of(parse_upsc(self.upsc()))
