"""Which storage node takes the next copy: the one with the most room that does not hold the file yet."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from gozen.config import Config

OFFLINE_COOLDOWN_S = 30.0


class NoNode(Exception):
    """No storage node can take the file now (all full, offline, or already holding it)."""


@dataclass
class Node:
    name: str
    path: Path
    transport: str
    down_until: float = 0.0
    why_down: str = ""


class Placement:
    def __init__(self, cfg: Config) -> None:
        self.nodes = [Node(n.name, cfg.under_data_dir(n.path), n.transport) for n in cfg.storage_nodes]
        self.reserve = cfg.transfer.node_reserve_bytes

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
            if n.transport != "local":
                why.append(f"{n.name}: transport {n.transport!r} is not available yet")
                continue
            try:
                if not n.path.is_dir():
                    raise FileNotFoundError(f"{n.path} is not there (not mounted?)")
                st = os.statvfs(n.path)
            except OSError as err:
                self.mark_down(n, str(err))
                why.append(f"{n.name}: {err}")
                continue
            free = st.f_bavail * st.f_frsize
            if free < size_bytes + self.reserve:
                why.append(f"{n.name}: full ({free // 2**20} MiB free)")
                continue
            # Nodes within 1 GiB of free space count as equal: pick among them at random, so agents
            # on several hosts spread the files without talking to each other.
            rank = (free >> 30, random.random())
            if best is None or rank > best_rank:
                best, best_rank = n, rank
        if best is None:
            raise NoNode("; ".join(why) or "no storage nodes configured")
        return best

    def mark_down(self, node: Node, why: str) -> None:
        node.down_until = time.monotonic() + OFFLINE_COOLDOWN_S
        node.why_down = why
