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

from gozen.config import Config, StorageNode
from gozen.transfer.catalog import Reach, bytes_on_nodes

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


def node_url(cfg: Config, node: StorageNode) -> str | None:
    """The node's rsync URL: its rsync_url, else its host's gozen rsync daemon (config.node_rsync_url)."""
    return cfg.node_rsync_url(node)


def reachable_nodes(cfg: Config, host: str | None) -> list[StorageNode]:
    """Nodes an agent on `host` can write and read: rsync nodes with a URL, local ones mounted on this host."""
    out = []
    for n in cfg.storage_nodes:
        if n.transport == "rsync":
            if node_url(cfg, n):
                out.append(n)
        elif host is None or n in cfg.local_nodes(host):
            out.append(n)
    return out


def daq_url(cfg: Config, volume_name: str) -> str | None:
    """The rsync URL of a DAQ volume on its host's gozen rsync daemon (read-only), if it has one."""
    volume = next((v for v in cfg.daq_volumes if v.name == volume_name), None)
    return cfg.daq_rsync_url(volume) if volume is not None else None


def archive_source(cfg: Config, host: str) -> str | None:
    """Where an agent on `host` reads the archive's copies: a directory here, or an rsync URL."""
    return cfg.archive_dest_for(host)


def reach_of(cfg: Config, host: str) -> Reach:
    """What a copy agent on `host` can read: the DAQ copies on this machine (every host's in a one-host
    setup); with role buffer, DAQ volumes of other hosts served by their rsync daemon; the verified
    replicas on the nodes it reaches; the archive."""
    one_host = len(cfg.hosts) == 1
    me = next((h for h in cfg.hosts if h.name == host), None)
    pulled: frozenset[str] = frozenset()
    if me is not None and "buffer" in me.roles:
        away = [v for v in cfg.daq_volumes if cfg.host_of(v).name != host]
        pulled = frozenset(v.name for v in away if daq_url(cfg, v.name))
    return Reach(
        daq_hosts=None if one_host else frozenset({host}),
        daq_volumes=pulled,
        nodes=frozenset(n.name for n in reachable_nodes(cfg, host)),
        archive=archive_source(cfg, host) is not None,
    )


def prover_host(cfg: Config, node: StorageNode) -> str | None:
    """The gozen host whose storage:prover proves copies on `node` (a node without host: the first
    host's), or None when it is not a gozen host with role storage (the agent proves the copy itself)."""
    host = cfg.host_of(node)
    return host.name if "storage" in host.roles else None


class Placement:
    def __init__(self, cfg: Config, engine: Engine | None = None, host: str | None = None) -> None:
        """Places on the nodes an agent on `host` can reach (None: every node)."""
        self.nodes = [
            Node(n.name, cfg.under_data_dir(n.path), n.transport, node_url(cfg, n), n.max_bytes)
            for n in reachable_nodes(cfg, host)
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
