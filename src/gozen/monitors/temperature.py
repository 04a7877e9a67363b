"""`monitor:temperature`: camera, chips, electronics and room, from lm-sensors JSON or simulated thermometers."""

from __future__ import annotations

import json
import math
import random
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from gozen.monitors.base import DeviceError, Monitor
from gozen.monitors.board import Reading


def pick(tree: dict[str, Any], path: str) -> float:
    """chip/feature/subfeature out of `sensors -j` output."""
    node: Any = tree
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            raise DeviceError(f"sensors: no {path!r} (missing {part!r})")
        node = node[part]
    if not isinstance(node, int | float):
        raise DeviceError(f"sensors: {path!r} is not a number: {node!r}")
    return float(node)


@dataclass
class SimThermometers:
    """The camera held at -10 degC by its cooler, chips a little warmer, electronics warm, a cold dome room."""

    rng: random.Random = field(default_factory=lambda: random.Random(4))

    def values(self) -> dict[str, float]:
        t = time.time()
        room = 8.0 + 3.0 * math.sin(2 * math.pi * (t % 86400) / 86400 - 2.0) + self.rng.gauss(0, 0.05)
        return {
            "temperature.camera_c": -10.0 + self.rng.gauss(0, 0.03),
            "temperature.chips_max_c": -9.2 + self.rng.gauss(0, 0.1),
            "temperature.electronics_c": 31.0 + 0.3 * room + self.rng.gauss(0, 0.2),
            "temperature.room_c": room,
        }


@dataclass
class TemperatureMonitor(Monitor):
    command: list[str] | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    sim: SimThermometers = field(default_factory=SimThermometers)
    name: str = "monitor:temperature"
    device: str = "thermometers"

    def read(self) -> list[Reading]:
        if self.command is None:
            values = self.sim.values()
        else:
            try:
                p = subprocess.run(self.command, capture_output=True, text=True, timeout=10)
                tree = json.loads(p.stdout)
            except (OSError, subprocess.TimeoutExpired) as err:
                raise DeviceError(f"{' '.join(self.command)}: {err}") from None
            except ValueError as err:
                raise DeviceError(f"{' '.join(self.command)}: not JSON: {err}") from None
            values = {key: pick(tree, path) for key, path in self.mapping.items()}
        return [Reading(k, round(v, 3), "degC", self.max_age_s) for k, v in values.items()]
