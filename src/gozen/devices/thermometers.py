"""The observatory's thermometers: camera, chips, electronics and room, each by the name of its board key.

`Thermometers` is what gozen needs of them; `LmSensors` runs a command printing lm-sensors
JSON (`sensors -j`) and picks each configured chip/feature/subfeature out of it;
`SimulatedThermometers` are the simulated observatory's.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from gozen.service import DeviceUnavailable

NAME = "thermometers"


class Thermometers(ABC):
    @abstractmethod
    def temperatures(self) -> dict[str, float]:
        """Every thermometer's reading in degC, by name; gozen.service.DeviceUnavailable when unread."""


def pick(tree: dict[str, Any], path: str) -> float:
    """chip/feature/subfeature out of `sensors -j` output."""
    node: Any = tree
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            raise DeviceUnavailable(NAME, f"sensors: no {path!r} (missing {part!r})")
        node = node[part]
    if not isinstance(node, int | float):
        raise DeviceUnavailable(NAME, f"sensors: {path!r} is not a number: {node!r}")
    return float(node)


class LmSensors(Thermometers):
    """`command` prints lm-sensors JSON; `mapping` is name -> chip/feature/subfeature."""

    def __init__(self, command: list[str], mapping: dict[str, str]) -> None:
        self.command, self.mapping = command, mapping

    def temperatures(self) -> dict[str, float]:
        what = " ".join(self.command)
        try:
            p = subprocess.run(self.command, capture_output=True, text=True, timeout=10)
            tree = json.loads(p.stdout)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise DeviceUnavailable(NAME, f"{what}: {err}") from None
        except ValueError as err:
            raise DeviceUnavailable(NAME, f"{what}: not JSON: {err}") from None
        return {name: pick(tree, path) for name, path in self.mapping.items()}


@dataclass
class SimulatedThermometers(Thermometers):
    """The camera held at -10 degC by its cooler, chips a little warmer, electronics warm, a cold dome room."""

    rng: random.Random = field(default_factory=lambda: random.Random(4))

    def temperatures(self) -> dict[str, float]:
        t = time.time()
        room = 8.0 + 3.0 * math.sin(2 * math.pi * (t % 86400) / 86400 - 2.0) + self.rng.gauss(0, 0.05)
        return {
            "temperature.camera_c": -10.0 + self.rng.gauss(0, 0.03),
            "temperature.chips_max_c": -9.2 + self.rng.gauss(0, 0.1),
            "temperature.electronics_c": 31.0 + 0.3 * room + self.rng.gauss(0, 0.2),
            "temperature.room_c": room,
        }
