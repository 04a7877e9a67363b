"""Which DAQ volume gets the next file: the healthy one with the most free space."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from gozen.config import Config

log = logging.getLogger(__name__)
FAILED_COOLDOWN_S = 30.0


class NoVolume(Exception):
    """No DAQ volume can take a file: all full, failed or missing."""


@dataclass
class VolumeState:
    name: str
    path: Path
    failed_until: float = 0.0
    last_error: str = ""
    last_used: int = 0


class VolumeChooser:
    def __init__(self, cfg: Config, host: str) -> None:
        vols = [v for v in cfg.daq_volumes if v.host in (None, host)]
        self.volumes = [VolumeState(v.name, cfg.under_data_dir(v.path)) for v in vols]
        self.reserve_bytes = cfg.daq.reserve_bytes
        self._turn = 0

    def free_bytes(self, v: VolumeState) -> int:
        st = os.statvfs(v.path)
        return st.f_bavail * st.f_frsize

    def choose(self, need_bytes: int) -> tuple[VolumeState, list[str]]:
        """The volume for a file of need_bytes, and the reasons others were skipped (for events)."""
        now = time.monotonic()
        best: VolumeState | None = None
        best_rank: tuple[int, int] = (-1, 0)
        skipped: list[str] = []
        for v in self.volumes:
            if v.failed_until > now:
                skipped.append(f"{v.name}: failed ({v.last_error}), retried after a pause")
                continue
            try:
                v.path.mkdir(parents=True, exist_ok=True)
                free = self.free_bytes(v)
            except OSError as err:
                self.mark_failed(v, f"{err.strerror}")
                skipped.append(f"{v.name}: {err.strerror}")
                continue
            if free < need_bytes + self.reserve_bytes:
                skipped.append(
                    f"{v.name}: full ({free // 2**20} MiB free, need {(need_bytes + self.reserve_bytes) // 2**20})"
                )
                continue
            # Volumes within 1 GiB of free space count as equal and take turns (striping).
            rank = (free >> 30, -v.last_used)
            if best is None or rank > best_rank:
                best, best_rank = v, rank
        if best is None:
            raise NoVolume("; ".join(skipped) or "no DAQ volumes configured for this host")
        self._turn += 1
        best.last_used = self._turn
        return best, skipped

    def mark_failed(self, v: VolumeState, why: str) -> None:
        v.failed_until = time.monotonic() + FAILED_COOLDOWN_S
        v.last_error = why
        log.error("DAQ volume failed volume=%s path=%s: %s", v.name, v.path, why)
