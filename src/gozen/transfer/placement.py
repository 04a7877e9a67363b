"""Which storage node takes the next copy: the one with the most room that does not hold the file yet.

Room is the smaller of the disk's free space and what is left of the node's quota (`max_bytes`,
counted from the catalog). A local node's disk is measured here with statvfs; an rsync node's
is read from the status board, where `storage:dfmonitor` on the node's own host publishes it.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from gozen.config import Config
from gozen.transfer.catalog import bytes_on_nodes

OFFLINE_COOLDOWN_S = 30.0
CATALOG_CACHE_S = 5.0


class NoNode(Exception):
    """No storage node can take the file now (all full, offline, or already holding it)."""


@dataclass
class Node:
    name: str
    path: Path  # on the node's own host
    transport: str
    rsync_url: str | None = None
    max_bytes: int | None = None
    down_until: float = 0.0
    why_down: str = ""


class Placement:
    def __init__(self, cfg: Config, engine: Engine | None = None) -> None:
        self.nodes = [
            Node(n.name, cfg.under_data_dir(n.path), n.transport, n.rsync_url, n.max_bytes) for n in cfg.storage_nodes
        ]
        self.reserve = cfg.transfer.node_reserve_bytes
        # A node that failed is left alone this long: never longer than a copy's longest retry delay.
        self.cooldown_s = min(OFFLINE_COOLDOWN_S, cfg.transfer.retry_max_s)
        self.engine = engine
        self._held: dict[str, int] = {}
        self._held_at = -CATALOG_CACHE_S

    def held(self) -> dict[str, int]:
        if self.engine is None:
            return {}
        if time.monotonic() - self._held_at > CATALOG_CACHE_S:
            self._held, self._held_at = bytes_on_nodes(self.engine), time.monotonic()
        return self._held

    def disk_free(self, n: Node) -> int:
        """Free bytes on the node's disk; OSError when it cannot be told."""
        if n.transport == "local":
            if not n.path.is_dir():
                raise FileNotFoundError(f"{n.path} is not there (not mounted?)")
            st = os.statvfs(n.path)
            return st.f_bavail * st.f_frsize
        from gozen.monitors.board import snapshot

        if self.engine is None:
            raise OSError(f"free space unknown: no database to read df.{n.name}.free_bytes from")
        snap = snapshot(self.engine, f"df.{n.name}.")
        free, online = snap.values.get(f"df.{n.name}.free_bytes"), snap.values.get(f"df.{n.name}.online")
        if online is not None and not online.stale and online.value is False:
            raise OSError(f"its host's dfmonitor reports {n.path} offline")
        if free is None or free.stale or not isinstance(free.value, int):
            raise OSError(f"free space unknown: no fresh df.{n.name}.free_bytes (is storage:dfmonitor running there?)")
        return free.value

    def choose(self, size_bytes: int, exclude: frozenset[str]) -> Node:
        now = time.monotonic()
        best: Node | None = None
        best_rank: tuple[int, float] = (-1, 0.0)
        why: list[str] = []
        for n in self.nodes:
            if n.name in exclude:
                continue
            if n.down_until > now:
                why.append(f"{n.name}: {n.why_down}")
                continue
            try:
                free = self.disk_free(n)
            except OSError as err:
                self.mark_down(n, str(err))
                why.append(f"{n.name}: {err}")
                continue
            if free < size_bytes + self.reserve:
                why.append(f"{n.name}: full ({free // 2**20} MiB free)")
                continue
            if n.max_bytes is not None:
                left = n.max_bytes - self.held().get(n.name, 0)
                if left < size_bytes:
                    why.append(f"{n.name}: quota full ({max(left, 0) // 2**20} MiB of max_bytes left)")
                    continue
                free = min(free, left)
            # Nodes within 1 GiB of free space count as equal: pick among them at random, so agents
            # on several hosts spread the files without talking to each other.
            rank = (free >> 30, random.random())
            if best is None or rank > best_rank:
                best, best_rank = n, rank
        if best is None:
            raise NoNode("; ".join(why) or "no storage nodes configured")
        if best.max_bytes is not None:  # count it now: the catalog's sum is only re-read every few seconds
            self._held[best.name] = self._held.get(best.name, 0) + size_bytes
        return best

    def by_name(self, name: str | None) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    def mark_down(self, node: Node, why: str) -> bool:
        """Leave the node alone for a while; True if it was thought up until now (a new outage)."""
        was_up = node.down_until <= time.monotonic()
        node.down_until = time.monotonic() + self.cooldown_s
        node.why_down = why
        return was_up
