"""Space on DAQ volumes and storage nodes, as the pages and the janitor see it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from gozen.config import Config


@dataclass(frozen=True)
class SpaceUsage:
    kind: str  # daq | node
    name: str
    path: str
    online: bool
    total_bytes: int
    free_bytes: int

    @property
    def used_pct(self) -> float:
        return 100.0 * (self.total_bytes - self.free_bytes) / self.total_bytes if self.total_bytes else 0.0


def space(cfg: Config) -> list[SpaceUsage]:
    out = []
    for kind, items in (("daq", cfg.daq_volumes), ("node", cfg.storage_nodes)):
        for v in items:
            path = cfg.under_data_dir(v.path)
            try:
                st = os.statvfs(path)
                out.append(
                    SpaceUsage(kind, v.name, str(path), True, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)
                )
            except OSError:
                out.append(SpaceUsage(kind, v.name, str(path), False, 0, 0))
    return out
