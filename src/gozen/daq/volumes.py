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
QUOTA_RESCAN_S = 30.0  # how often a volume with max_bytes is measured again (files written meanwhile are added)


class NoVolume(Exception):
    """No DAQ volume can take a file: all full, failed or missing."""


@dataclass
class VolumeState:
    name: str
    path: Path
    failed_until: float = 0.0
    last_error: str = ""
    last_used: int = 0
    max_bytes: int | None = None
    used_bytes: int = 0  # with max_bytes: bytes under path when last measured, plus files chosen since
    measured_at: float = float("-inf")


class VolumeChooser:
    def __init__(self, cfg: Config, host: str) -> None:
        vols = [v for v in cfg.daq_volumes if v.host in (None, host)]
        self.volumes = [VolumeState(v.name, cfg.under_data_dir(v.path), max_bytes=v.max_bytes) for v in vols]
        self.reserve_bytes = cfg.daq.reserve_bytes
        self._turn = 0

    def free_bytes(self, v: VolumeState) -> int:
        """Free space of the disk, or, for a volume with a quota (max_bytes), of the quota if that is less."""
        st = os.statvfs(v.path)
        free = st.f_bavail * st.f_frsize
        if v.max_bytes is None:
            return free
        if time.monotonic() - v.measured_at > QUOTA_RESCAN_S:
            v.used_bytes, v.measured_at = _bytes_under(v.path), time.monotonic()
        return min(free, max(v.max_bytes - v.used_bytes, 0))

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
        best.used_bytes += need_bytes
        return best, skipped

    def mark_failed(self, v: VolumeState, why: str) -> None:
        v.failed_until = time.monotonic() + FAILED_COOLDOWN_S
        v.last_error = why
        log.error("DAQ volume failed volume=%s path=%s: %s", v.name, v.path, why)


def _bytes_under(path: Path) -> int:
    """Bytes of the files under path (the janitor deletes meanwhile: vanished files count 0)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total
