"""`monitor:power`: the UPS, from NUT's `upsc` output (or the simulated UPS, which prints the same)."""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass, field

from gozen.monitors.base import DeviceError, Monitor
from gozen.monitors.board import Reading


def parse_upsc(text: str) -> dict[str, str]:
    """`upsc` prints `variable: value` lines; anything else is an error message from NUT."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if not sep or " " in key:
            continue
        out[key] = value.strip()
    if not out:
        raise DeviceError(f"upsc printed no variables: {text.strip()[:200]!r}")
    return out


def ups_readings(v: dict[str, str], max_age_s: float) -> list[Reading]:
    status = v.get("ups.status")
    if status is None:
        raise DeviceError("upsc gave no ups.status")
    flags = status.split()
    out = [
        Reading("power.ups_state", status, "", max_age_s),
        Reading("power.on_battery", "OB" in flags, "", max_age_s),
        Reading("power.low_battery", "LB" in flags, "", max_age_s),
    ]
    for var, key, unit in (
        ("battery.charge", "power.ups_charge_pct", "%"),
        ("battery.runtime", "power.ups_runtime_s", "s"),
        ("ups.load", "power.ups_load_pct", "%"),
    ):
        if var in v:
            try:
                out.append(Reading(key, float(v[var]), unit, max_age_s))
            except ValueError:
                raise DeviceError(f"upsc: {var} is not a number: {v[var]!r}") from None
    return out


@dataclass
class SimUps:
    """A UPS on line power, lightly loaded; `outage` puts it on battery, draining."""

    outage: bool = False
    charge: float = 100.0
    rng: random.Random = field(default_factory=lambda: random.Random(3))

    def upsc(self) -> str:
        self.charge = max(5.0, self.charge - 0.5) if self.outage else min(100.0, self.charge + 0.2)
        status = ("OB DISCHRG" if self.charge > 20 else "OB LB") if self.outage else "OL"
        return (
            "device.mfr: gozen\ndevice.model: simulated UPS\n"
            f"battery.charge: {self.charge:.0f}\nbattery.runtime: {self.charge * 36:.0f}\n"
            f"ups.load: {20 + self.rng.gauss(0, 1):.0f}\nups.status: {status}\n"
        )


@dataclass
class PowerMonitor(Monitor):
    command: list[str] | None = None
    sim: SimUps = field(default_factory=SimUps)
    name: str = "monitor:power"
    device: str = "UPS"

    def read(self) -> list[Reading]:
        if self.command is None:
            return ups_readings(parse_upsc(self.sim.upsc()), self.max_age_s)
        try:
            p = subprocess.run(self.command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise DeviceError(f"{' '.join(self.command)}: {err}") from None
        if p.returncode != 0:
            raise DeviceError(f"{' '.join(self.command)} exit {p.returncode}: {(p.stderr or p.stdout).strip()[:200]}")
        return ups_readings(parse_upsc(p.stdout), self.max_age_s)
