"""`gozen audit`: check the catalog against the disks: copies missing, corrupted, or not catalogued.

Every verified replica is read back and checksummed; a bad one is queued to be copied again
(with --repair) so the file regains its verified copies. Files nobody catalogued are
reported, never deleted: a person decides.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update

from gozen.config import Config
from gozen.db.events import record_event
from gozen.db.tables import exports, files, replicas
from gozen.transfer.copy import xxh3_of


@dataclass
class AuditReport:
    files: int = 0
    replicas_checked: int = 0
    bytes_read: int = 0
    missing: list[str] = field(default_factory=list)  # verified replicas that are not there (or wrong size)
    corrupted: list[str] = field(default_factory=list)  # verified replicas whose checksum is wrong
    daq_missing: list[str] = field(default_factory=list)  # DAQ copies the catalog says are present but are not
    orphans: list[str] = field(default_factory=list)  # FITS files on nodes that no replica row names
    requeued: int = 0
    elsewhere: int = 0  # verified replicas on other hosts' nodes: theirs to audit (`gozen audit --host`)
    archived: int = 0  # files the archive has acknowledged: a copy outside the observatory
    unreplicated: int = 0  # files with fewer good storage copies than required
    lost: int = 0  # files with no good copy anywhere: the figure that must be 0

    @property
    def clean(self) -> bool:
        return not (self.missing or self.corrupted or self.daq_missing or self.lost)


def _requeue(engine: Engine, replica_id: int, why: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(replicas)
            .where(replicas.c.id == replica_id)
            .values(
                state="queued", node=None, path=None, attempts=0, last_error=why, next_try_at=None, verified_at=None
            )
        )


def audit(
    cfg: Config,
    engine: Engine,
    host: str,
    repair: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """Check every catalogued file; progress(bytes_done, bytes_total) is called as it goes."""
    rep = AuditReport()
    local = {n.name for n in cfg.local_nodes(host)}
    with engine.connect() as conn:
        cat = conn.execute(select(files)).all()
        reps = conn.execute(select(replicas)).all()
        acked = set(conn.execute(select(exports.c.file_id).where(exports.c.state == "acknowledged")).scalars())
    by_file: dict[int, list[Any]] = {}
    for r in reps:
        by_file.setdefault(r.file_id, []).append(r)
    sizes = {f.id: f.size_bytes for f in cat}
    total = sum(sizes[r.file_id] for r in reps if r.state == "verified" and r.node in local)
    rep.files = len(cat)
    for f in cat:
        good, on_daq = 0, 0
        if f.daq_state == "present" and f.daq_host == host:
            if _whole(f.daq_path, f.size_bytes):
                on_daq = 1
            else:
                rep.daq_missing.append(f.daq_path)
        for r in by_file.get(f.id, []):
            if r.state != "verified":
                continue
            if r.node not in local:
                rep.elsewhere += 1
                good += 1
                continue
            rep.replicas_checked += 1
            problem = None
            if not _whole(r.path, f.size_bytes):
                problem = "missing"
                rep.missing.append(f"{r.node}:{r.path}")
            else:
                got = xxh3_of(Path(r.path))
                rep.bytes_read += f.size_bytes
                if got != f.checksum_xxh3:
                    problem = "corrupted"
                    rep.corrupted.append(f"{r.node}:{r.path}")
                else:
                    good += 1
            if progress:
                progress(rep.bytes_read, total)
            if problem and repair:
                why = f"audit: replica {problem} on {r.node} ({r.path})"
                if problem == "corrupted":
                    Path(r.path).unlink(missing_ok=True)
                _requeue(engine, r.id, why)
                rep.requeued += 1
                record_event(
                    engine,
                    host=host,
                    source="gozen audit",
                    kind=f"replica_{problem}",
                    subject=f.filename,
                    severity="error",
                    message=f"{why}: queued to be copied again",
                )
        in_archive = f.id in acked
        rep.archived += in_archive
        rep.lost += good + on_daq + in_archive == 0
        rep.unreplicated += good < cfg.transfer.replication and not in_archive
    rep.orphans = _orphans(cfg, host, {r.path for r in reps if r.path and r.state != "expired"})
    return rep


def _whole(path: str | None, size: int) -> bool:
    try:
        return path is not None and os.stat(path).st_size == size
    except OSError:
        return False


def _orphans(cfg: Config, host: str, known: set[str]) -> list[str]:
    out = []
    for n in cfg.local_nodes(host):
        root = cfg.under_data_dir(n.path)
        if root.is_dir():
            out += [str(p) for p in root.rglob("TMQ*.fits") if str(p) not in known]
    return sorted(out)
