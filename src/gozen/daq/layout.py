"""Which DAQ host and readout read which chip, which writer writes it, and the ring between them.

Each DAQ host reads its own chips (`hosts[].chips`, all of camera.chips on a lone DAQ host)
with `daq.readouts` readouts and `daq.writers` writers of its own.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

from gozen.config import Config
from gozen.daq.geometry import geometry

SHM_DIR = Path(os.environ.get("GOZEN_SHM_DIR", "/dev/shm"))


def readout_chips(cfg: Config, host: str, readout: int) -> list[int]:
    """Contiguous, even split of the host's chips over its readouts."""
    chips, n = cfg.chips_of(host), cfg.daq.readouts
    per = math.ceil(len(chips) / n) if chips else 0
    return chips[readout * per : (readout + 1) * per]


def writer_of(cfg: Config, host: str, det_id: int) -> int:
    """The host's chips are dealt round-robin over its writers."""
    return cfg.chips_of(host).index(det_id) % cfg.daq.writers


def ring_chips(cfg: Config, host: str, readout: int, writer: int) -> list[int]:
    return [c for c in readout_chips(cfg, host, readout) if writer_of(cfg, host, c) == writer]


def ring_slots(cfg: Config, host: str, readout: int, writer: int) -> int:
    n = len(ring_chips(cfg, host, readout, writer))
    return max(4, math.ceil(n * cfg.camera.fps * cfg.daq.ring_seconds))


def frame_bytes(cfg: Config) -> int:
    return geometry(cfg.camera).frame_bytes


def ring_path(cfg: Config, host: str, readout: int, writer: int) -> Path:
    # One namespace per data dir, so several observatories (or test runs) share a machine.
    tag = hashlib.sha1(str(cfg.data_dir).encode()).hexdigest()[:10]
    return SHM_DIR / f"gozen-{tag}-{host}-r{readout:02d}-w{writer:02d}.ring"


def rings_of_writer(cfg: Config, host: str, writer: int) -> list[int]:
    """Readouts that send this writer frames."""
    return [r for r in range(cfg.daq.readouts) if ring_chips(cfg, host, r, writer)]
