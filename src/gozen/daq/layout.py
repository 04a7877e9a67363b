"""Which readout reads which chip, which writer writes it, and the ring between them."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

from gozen.config import Config

SHM_DIR = Path(os.environ.get("GOZEN_SHM_DIR", "/dev/shm"))


def readout_chips(cfg: Config, readout: int) -> list[int]:
    """Contiguous, even split of the configured chips over the readouts."""
    chips, n = cfg.camera.chips, cfg.daq.readouts
    per = math.ceil(len(chips) / n)
    return chips[readout * per : (readout + 1) * per]


def writer_of(cfg: Config, det_id: int) -> int:
    """Chips are dealt round-robin over the writers."""
    return cfg.camera.chips.index(det_id) % cfg.daq.writers


def ring_chips(cfg: Config, readout: int, writer: int) -> list[int]:
    return [c for c in readout_chips(cfg, readout) if writer_of(cfg, c) == writer]


def ring_slots(cfg: Config, readout: int, writer: int) -> int:
    n = len(ring_chips(cfg, readout, writer))
    return max(4, math.ceil(n * cfg.camera.fps * cfg.daq.ring_seconds))


def frame_bytes(cfg: Config) -> int:
    return cfg.camera.width_px * cfg.camera.height_px * 2


def ring_path(cfg: Config, host: str, readout: int, writer: int) -> Path:
    # One namespace per data dir, so several observatories (or test runs) share a machine.
    tag = hashlib.sha1(str(cfg.data_dir).encode()).hexdigest()[:10]
    return SHM_DIR / f"gozen-{tag}-{host}-r{readout:02d}-w{writer:02d}.ring"


def rings_of_writer(cfg: Config, writer: int) -> list[int]:
    """Readouts that send this writer frames."""
    return [r for r in range(cfg.daq.readouts) if ring_chips(cfg, r, writer)]
