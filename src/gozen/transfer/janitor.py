"""`transfer:janitor`: free DAQ volumes, oldest first, deleting only files whose copies are proven.

A copy counts when the catalog says it is verified and its last proof is recent (transfer.proof_max_age_s):
a checksum read from the node's disk on the node's own host (storage:prover, `gozen audit`), or an rsync
checksum pass. The janitor runs on the DAQ host, which cannot see the storage hosts' disks: it trusts
those proofs, not a look of its own.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from gozen.config import Config
from gozen.db.events import record_event
from gozen.db.types import utcnow
from gozen.service import Context, Service
from gozen.transfer import catalog

log = logging.getLogger(__name__)
SOURCE = "transfer:janitor"


@dataclass(frozen=True)
class Deletion:
    volume: str
    path: str
    size_bytes: int
    replicas: int


def usage(path: Path, quota: int | None = None, held: int = 0) -> tuple[float, int]:
    """(used %, size in bytes) of a volume: its disk's, or its quota's when that is fuller."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    pct = 100.0 * (total - st.f_bavail * st.f_frsize) / total if total else 0.0
    if quota is not None and 100.0 * held / quota > pct:
        return 100.0 * held / quota, quota
    return pct, total


def proof_cutoff(cfg: Config) -> datetime:
    """Proofs older than this do not count (transfer.proof_max_age_s before now)."""
    return utcnow() - timedelta(seconds=cfg.transfer.proof_max_age_s)


def is_daq_copy(cfg: Config, host: str, node: str | None, path: str | None, daq_path: str | None) -> bool:
    """Is a "replica" the DAQ copy itself? Only a node whose disk is on this host can hold it: same path,
    or (a link, a bind mount) the same file. A node on another host has its own disk."""
    if not path or not daq_path or node not in {n.name for n in cfg.local_nodes(host)}:
        return False
    if os.path.realpath(path) == os.path.realpath(daq_path):
        return True
    try:
        return os.path.samefile(path, daq_path)
    except OSError:
        return False


def proven_copies(cfg: Config, engine: Engine, host: str, f: dict[str, Any], proved_after: datetime) -> int:
    """Verified replicas of a file proven since proved_after, the DAQ copy itself not counted. The proof
    is the catalog's (a checksum read on the node's own host, or an rsync checksum pass): this host need
    not see the node's disk."""
    return sum(
        not is_daq_copy(cfg, host, r.node, r.path, f["daq_path"])
        for r in catalog.proven_replicas(engine, f["id"], proved_after)
    )


def _age(when: datetime | None) -> str:
    if when is None:
        return "never proven"
    days = (utcnow() - when).total_seconds() / 86400
    return f"last proof {days:.1f} days ago"


def sweep(
    cfg: Config, engine: Engine, host: str, dry_run: bool = False, told: set[int] | None = None
) -> list[Deletion]:
    """One pass over this host's DAQ volumes; returns what was (or, dry run, would be) deleted.

    A file goes when the archive acknowledged it, or when `replication` of its replicas are verified with a
    proof younger than transfer.proof_max_age_s. A file kept for want of proof is told once (per `told`,
    the file ids already told): a warning and an event `daq_file_kept`.
    """
    t = cfg.transfer
    told = set() if told is None else told
    done: list[Deletion] = []
    for v, root in cfg.daq_volume_dirs(host):
        held = catalog.daq_bytes(engine, v.name, host) if v.max_bytes else 0
        pct, total = usage(root, v.max_bytes, held)
        if pct <= t.daq_high_water_pct:
            continue
        to_free = (pct - t.daq_low_water_pct) / 100 * total
        after = proof_cutoff(cfg)
        for f in catalog.deletable_from_daq(engine, v.name, host, t.replication, after, t.janitor_requires_archive):
            if to_free <= 0:
                break
            have = proven_copies(cfg, engine, host, f, after) if f["proven"] else 0
            if have < t.replication and not f["archived"]:
                _kept(
                    engine,
                    host,
                    f["id"],
                    f["filename"],
                    told,
                    f"{have} of {t.replication} proven replicas besides the DAQ copy itself",
                )
                continue
            done.append(Deletion(v.name, f["daq_path"], f["size_bytes"], have))
            to_free -= f["size_bytes"]
            if dry_run:
                continue
            # The catalog first: whoever reads it (gozen audit) never sees a present copy that is not there.
            catalog.mark_daq_deleted(engine, f["id"])
            try:
                Path(f["daq_path"]).unlink(missing_ok=True)
            except OSError as err:
                catalog.mark_daq_present(engine, f["id"])
                log.error("could not delete %s: %s", f["daq_path"], err.strerror or err)
                done.pop()
                continue
            record_event(
                engine,
                host=host,
                source=SOURCE,
                kind="daq_file_deleted",
                subject=f["filename"],
                message=f"deleted the DAQ copy on {v.name} ({have} proven replicas elsewhere"
                + (", archived)" if f["archived"] else ")"),
            )
        if to_free > 0 and not t.janitor_requires_archive:
            for u in catalog.unproven_on_daq(engine, v.name, host, t.replication, after):
                why = (
                    f"{u.verified} verified replicas but {u.proven} proven in the last "
                    f"{t.proof_max_age_s / 86400:g} days ({_age(u.last_proof)}; `gozen audit` on the storage "
                    "hosts renews proofs)"
                )
                _kept(engine, host, u.id, u.filename, told, why)
    return done


def _kept(engine: Engine, host: str, file_id: int, filename: str, told: set[int], why: str) -> None:
    """A file the volume needs gone stays for want of proven copies: said once per file."""
    if file_id in told:
        return
    told.add(file_id)
    log.warning("not deleting %s: %s", filename, why)
    record_event(
        engine,
        host=host,
        source=SOURCE,
        kind="daq_file_kept",
        subject=filename,
        severity="warning",
        message=f"kept the DAQ copy: {why}",
    )


class Janitor(Service):
    """`transfer:janitor`: a sweep of this host's DAQ volumes every janitor_every_s."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.period_s = ctx.cfg.transfer.janitor_every_s
        self.told: set[int] = set()  # files kept for want of proof, already told

    def run_once(self) -> None:
        sweep(self.ctx.cfg, self.ctx.engine, self.ctx.host, told=self.told)
