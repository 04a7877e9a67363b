"""Space on DAQ volumes and storage nodes, as the pages and the janitor see it.

A volume or node with a `max_bytes` quota is shown against its quota (bytes the catalog puts
there), not against the disk it sits on; its free space is what is left of the quota, or of the
disk when that is less.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import Engine

from gozen.config import Config
from gozen.transfer.catalog import bytes_on_nodes, daq_bytes_by_volume


@dataclass(frozen=True)
class SpaceUsage:
    kind: str  # daq | node
    name: str
    path: str
    online: bool
    total_bytes: int  # the quota when there is one, else the disk's size
    free_bytes: int
    quota_bytes: int | None = None
    used_bytes: int | None = None  # with a quota: the bytes counted against it

    @property
    def used_pct(self) -> float:
        if not self.total_bytes:
            return 0.0
        used = self.used_bytes if self.used_bytes is not None else self.total_bytes - self.free_bytes
        return 100.0 * used / self.total_bytes


def space(cfg: Config, engine: Engine | None = None) -> list[SpaceUsage]:
    """Every DAQ volume and storage node; with an engine, those with a quota are measured against it."""
    held: dict[str, dict[str, int]] = {"daq": {}, "node": {}}
    if engine is not None:
        held = {"daq": daq_bytes_by_volume(engine), "node": bytes_on_nodes(engine)}
    out = []
    for kind, items in (("daq", cfg.daq_volumes), ("node", cfg.storage_nodes)):
        for v in items:
            path = cfg.under_data_dir(v.path)
            try:
                st = os.statvfs(path)
            except OSError:
                out.append(SpaceUsage(kind, v.name, str(path), False, 0, 0, v.max_bytes))
                continue
            disk_total, disk_free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
            if v.max_bytes is None or engine is None:
                out.append(SpaceUsage(kind, v.name, str(path), True, disk_total, disk_free, v.max_bytes))
                continue
            used = held[kind].get(v.name, 0)
            free = min(max(v.max_bytes - used, 0), disk_free)
            out.append(SpaceUsage(kind, v.name, str(path), True, v.max_bytes, free, v.max_bytes, used))
    return out
