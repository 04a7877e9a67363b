"""`storage:prover`: on a storage node's own host, proves each copied replica by reading it from the disk.

Copy agents leave a replica `copied` once rsync has written it and fsynced it on the node. The
prover drops the file's pages from the page cache, reads it back from the disk and compares its
xxh3 with the catalog's: whole, it becomes `verified` with `proved_at`; missing or damaged, it is
set aside (`.NAME.bad`) and queued to be copied again, with a `replica_mismatch` event. With no copy
waiting, it renews the oldest proofs on its nodes (older than half of transfer.proof_max_age_s), a few
per pass, so the janitor can still free DAQ files kept longer than that without a manual audit.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from gozen.config import Config, StorageNode
from gozen.db.types import utcnow
from gozen.service import Context, Service
from gozen.transfer import catalog
from gozen.transfer.copy import fsync_dir, quarantine_path, xxh3_from_disk
from gozen.transfer.placement import prover_host

log = logging.getLogger(__name__)

BATCH = 8  # copies claimed per pass
RENEW_PER_PASS = 4  # old proofs renewed per idle pass


def proven_here(cfg: Config, host: str) -> list[StorageNode]:
    """The nodes whose copies this host proves: its own (a node without a host: the first host's)."""
    return [n for n in cfg.storage_nodes if prover_host(cfg, n) == host]


class Prover(Service):
    """Reads copied replicas on this host's nodes back from disk and settles them verified or re-queued."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cfg, self.engine, self.host = ctx.cfg, ctx.engine, ctx.host
        self.prover_id = f"{self.host}:{ctx.program}:{os.getpid()}"
        self.nodes = {n.name: self.cfg.under_data_dir(n.path) for n in proven_here(self.cfg, self.host)}
        self.lease = timedelta(seconds=self.cfg.transfer.lease_s)
        self.period_s = self.cfg.transfer.poll_s
        self.renew_after = timedelta(seconds=self.cfg.transfer.proof_max_age_s / 2)

    def run_once(self) -> bool:
        """Prove up to BATCH copies; False when none were waiting."""
        # A node whose directory is not there (not mounted) is left alone: its copies are not missing.
        mounted = [name for name, path in self.nodes.items() if path.is_dir()]
        if not mounted:
            return False
        todo = catalog.claim_copied(self.engine, self.prover_id, mounted, self.lease, BATCH)
        for copied in todo:
            self.prove(copied)
        if not todo:
            self.renew(mounted)
        return bool(todo)

    def renew(self, nodes: list[str]) -> int:
        """Read back the verified replicas with the oldest proofs and renew them; how many were renewed."""
        renewed = 0
        for r in catalog.old_proofs(self.engine, nodes, utcnow() - self.renew_after, RENEW_PER_PASS):
            path = Path(r.path)
            try:
                got: str | None = xxh3_from_disk(path)
            except FileNotFoundError:
                got = None
            except OSError as err:
                log.warning("%s: proof not renewed, cannot be read: %s", path, err.strerror or err)
                continue
            if got == r.checksum_xxh3:
                renewed += catalog.prove(self.engine, r.replica_id, r.path, utcnow())
                continue
            why = f"{path} is not on {r.node}" if got is None else f"{path} on {r.node} reads checksum {got} from disk"
            if got is not None:
                os.replace(path, quarantine_path(path))
            catalog.requeue_damaged(self.engine, r.replica_id, why)
            self.ctx.event("replica_mismatch", r.filename, f"{why}: set aside and queued to be copied again", "error")
        return renewed

    def prove(self, c: catalog.Copied) -> None:
        path = Path(c.path)
        try:
            got = xxh3_from_disk(path)
        except FileNotFoundError:
            self.damaged(c, f"{path} is not on {c.node}")
            return
        except OSError as err:  # a read error is a damaged copy too: another is made
            self.damaged(c, f"{path} on {c.node} cannot be read: {err.strerror or err}")
            return
        if got != c.checksum_xxh3:
            self.damaged(c, f"{path} on {c.node} reads checksum {got} from disk, the catalog says {c.checksum_xxh3}")
            return
        fsync_dir(path.parent)  # the file was fsynced by rsync; its name is made durable here
        if catalog.proven(self.engine, c, self.prover_id):
            quarantine_path(path).unlink(missing_ok=True)  # an earlier damaged copy kept aside: a good one is here
        else:
            log.warning("%s: proven, but no longer this prover's to settle (its lease ran out)", c.filename)

    def damaged(self, c: catalog.Copied, why: str) -> None:
        """Set the copy aside off its name (it may still be the only evidence) and have it copied again."""
        path = Path(c.path)
        try:
            os.replace(path, quarantine_path(path))
        except FileNotFoundError:
            pass
        if catalog.disproven(self.engine, c, self.prover_id, why):
            self.ctx.event("replica_mismatch", c.filename, f"{why}: set aside and queued to be copied again", "error")
