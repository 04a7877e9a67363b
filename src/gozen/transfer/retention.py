"""`transfer:retention`: keep each storage node within its limits (max_bytes, max_age_days).

Oldest replicas go first, and only safe ones: with an archive configured, files the archive
has acknowledged; without one, files that have another verified replica on another node whose
proof is recent (transfer.proof_max_age_s, as the janitor's). Safety is checked again in the
transaction that removes the replica, so two hosts' retention never each remove the copy the
other counted on. A last copy is never removed: a node that cannot get under its limit says so
in an event, once.
Removed replicas stay in the catalog as `expired`, with the time they went.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from gozen.config import StorageNode
from gozen.db.types import utcnow
from gozen.service import Context, Service, Trouble
from gozen.transfer import catalog
from gozen.transfer.janitor import proof_cutoff

log = logging.getLogger(__name__)

# Over HIGH x max_bytes, remove down to LOW x max_bytes: room for a night's burst, and few passes.
# A quota of only a few files lowers both, so there is always room for the next copy.
HIGH, LOW = 0.9, 0.8


def marks(max_bytes: int, biggest: int) -> tuple[float, float]:
    """(start above, free down to) in bytes, for a node whose largest file is `biggest`."""
    return min(HIGH * max_bytes, max_bytes - 2 * biggest), max(0.0, min(LOW * max_bytes, max_bytes - 3 * biggest))


@dataclass(frozen=True)
class Removal:
    node: str
    path: str
    size_bytes: int
    why: str


class Retention(Service):
    """`transfer:retention`: a sweep of this host's storage nodes every retention_every_s."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cfg, self.engine, self.host = ctx.cfg, ctx.engine, ctx.host
        self.period_s = self.cfg.transfer.retention_every_s
        self.blocked: dict[str, Trouble] = {}  # per node: over its limit with only unsafe replicas left

    def run_once(self) -> None:
        self.sweep()

    def nodes(self) -> list[StorageNode]:
        return [n for n in self.cfg.local_nodes(self.host) if n.max_bytes or n.max_age_days]

    def sweep_node(self, node: StorageNode, dry_run: bool = False) -> list[Removal]:
        rows = catalog.node_replicas(self.engine, node.name, self.cfg.archive is not None, proof_cutoff(self.cfg))
        held = sum(r.size_bytes for r in rows)
        to_free = 0.0
        if node.max_bytes and rows:
            high, low = marks(node.max_bytes, max(r.size_bytes for r in rows))
            to_free = held - low if held > high else 0.0
        cutoff = utcnow() - timedelta(days=node.max_age_days) if node.max_age_days else None
        done: list[Removal] = []
        unsafe = 0
        for r in rows:
            too_old = cutoff is not None and r.verified_at < cutoff
            if to_free <= 0 and not too_old:
                break
            if not r.safe:
                unsafe += 1
                continue
            why = "older than max_age_days" if too_old and to_free <= 0 else "over max_bytes"
            if not dry_run and not self.expire(r.id, r.path, node.name):
                continue
            done.append(Removal(node.name, r.path, r.size_bytes, why))
            to_free -= r.size_bytes
        if not dry_run:
            self.report(node, done, unsafe, to_free > 0)
        return done

    def expire(self, replica_id: int, path: str, node: str) -> bool:
        """The catalog first (so an audit never counts a verified replica that is going), then the file;
        False (nothing removed) when it is no longer verified or no longer safe to remove."""
        has_archive = self.cfg.archive is not None
        if not catalog.expire_if_safe(self.engine, replica_id, node, has_archive, proof_cutoff(self.cfg)):
            return False
        Path(path).unlink(missing_ok=True)
        return True

    def report(self, node: StorageNode, done: list[Removal], unsafe: int, still_over: bool) -> None:
        if done:
            mb = sum(d.size_bytes for d in done) / 1e6
            log.info("%s: removed %d replicas (%.1f MB)", node.name, len(done), mb)
            why = f"removed {len(done)} replicas ({mb:.1f} MB), oldest first: {done[0].why}"
            self.ctx.event("replicas_expired", node.name, why)
        if node.name not in self.blocked:
            self.blocked[node.name] = self.ctx.trouble("retention_blocked", "retention_ok", node.name, "warning")
        blocked = self.blocked[node.name]
        if still_over and unsafe > 0:
            safe_means = (
                "acknowledged by the archive" if self.cfg.archive else "with a recently proven replica elsewhere"
            )
            blocked.failing(f"over its limit, but {unsafe} replicas are not yet {safe_means}: they stay")
        else:
            blocked.ok("within its limits again")

    def sweep(self, dry_run: bool = False) -> list[Removal]:
        """One pass over this host's nodes with limits; what was (or, dry run, would be) removed."""
        return [r for n in self.nodes() for r in self.sweep_node(n, dry_run)]
