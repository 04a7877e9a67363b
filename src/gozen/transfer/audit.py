"""`gozen audit`: check the catalog against the disks: copies missing, corrupted, short, lost or not catalogued.

Every verified replica on this host's nodes is read back from the disk (its cached pages dropped
first) and checksummed, and its proof renewed (replicas.proved_at): the janitor frees DAQ copies
only on recent proofs. A replica on another host's node is proven here by an rsync `--checksum
--dry-run` pass against the DAQ copy when the DAQ copy is on this host; otherwise it is that
host's audit's to read. Whether each file has its copies, and none is lost, is counted over the
whole catalog wherever the audit runs. The scan works on a snapshot
of the catalog; whatever looked wrong is looked at again afterwards, and what moved meanwhile
(the janitor deleting, an agent copying, retention expiring) is not a problem. With --repair a
bad replica is moved off its final name (kept aside until a good copy exists elsewhere) and
queued to be copied again from any good source; copies given up or waiting after errors are
queued again. Files nobody catalogued are reported, never deleted: a person decides.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from gozen.config import Config
from gozen.db.events import record_event
from gozen.db.states import DaqCopyState, ReplicaState
from gozen.db.types import utcnow
from gozen.transfer import catalog, rsync
from gozen.transfer.copy import quarantine_path, xxh3_from_disk
from gozen.transfer.janitor import proof_cutoff

log = logging.getLogger(__name__)
SOURCE = "gozen audit"


@dataclass
class AuditReport:
    files: int = 0
    replicas_checked: int = 0
    bytes_read: int = 0
    missing: list[str] = field(default_factory=list)  # verified replicas that are not there (or wrong size)
    corrupted: list[str] = field(default_factory=list)  # verified replicas whose checksum is wrong
    daq_missing: list[str] = field(default_factory=list)  # DAQ copies the catalog says are present but are not
    orphans: list[str] = field(default_factory=list)  # FITS files on nodes that no replica row names
    quarantined: list[str] = field(default_factory=list)  # damaged replicas kept aside: no good copy yet
    quarantine_cleared: int = 0  # damaged replicas removed now that a good copy exists
    requeued: int = 0
    elsewhere: int = 0  # verified replicas on other hosts' nodes not proven here: theirs to audit
    elsewhere_hosts: dict[str, int] = field(default_factory=dict)  # of those, how many per host
    proofs_renewed: int = 0  # replicas read back whole (here, or by an rsync checksum pass): proved_at now
    rsync_checked: int = 0  # of those, replicas on other hosts' nodes proven by an rsync checksum pass
    differing: list[str] = field(default_factory=list)  # other hosts' replicas an rsync pass found different
    unreachable: list[str] = field(default_factory=list)  # nodes an rsync pass could not reach: "node: why"
    stale_proofs: int = 0  # verified replicas (whole catalog) with no proof in transfer.proof_max_age_s
    archived: int = 0  # files the archive has acknowledged: a copy outside the observatory
    unreplicated: int = 0  # files with fewer good storage copies than required (in progress included)
    in_progress: int = 0  # of those, files whose missing copies are queued or being copied: no problem
    short: list[str] = field(default_factory=list)  # files lacking copies with none under way: "name: why"
    moved: int = 0  # things that changed while they were checked: not problems, the next audit sees them
    lost_files: list[str] = field(default_factory=list)  # no good copy anywhere

    @property
    def lost(self) -> int:
        """Files with no good copy anywhere: the figure that must be 0."""
        return len(self.lost_files)

    @property
    def clean(self) -> bool:
        return not (
            self.missing or self.corrupted or self.daq_missing or self.lost_files or self.short or self.differing
        )


@dataclass(frozen=True)
class _Suspect:
    problem: str  # missing | corrupted | daq_missing
    file: Any
    replica: Any = None


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
    cat, reps = catalog.audit_snapshot(engine)
    rep.files = len(cat)
    by_file: dict[int, list[Any]] = {}
    for r in reps:
        by_file.setdefault(r.file_id, []).append(r)
    total = sum(f.size_bytes * sum(r.node in local for r in by_file.get(f.id, [])) for f in cat)
    suspects: list[_Suspect] = []
    remote: dict[tuple[Path, str, str], list[tuple[Any, Any]]] = {}  # (DAQ dir, node URL dir, node) -> (file, rep)
    for f in cat:
        daq_here = f.daq_state == DaqCopyState.PRESENT and f.daq_host == host
        if daq_here and not _whole(f.daq_path, f.size_bytes):
            suspects.append(_Suspect("daq_missing", f))
            daq_here = False
        for r in by_file.get(f.id, []):
            if r.node not in local:
                where = _rsync_dest(cfg, r) if daq_here else None
                if where is None:
                    _left(cfg, rep, r.node, 1)
                else:
                    remote.setdefault((Path(f.daq_path).parent, where, r.node), []).append((f, r))
                continue
            rep.replicas_checked += 1
            began = utcnow()
            problem = _check(r.path, f.size_bytes, f.checksum_xxh3)
            rep.bytes_read += f.size_bytes if problem != "missing" else 0
            if problem:
                suspects.append(_Suspect(problem, f, r))
            elif catalog.prove(engine, r.id, r.path, began):
                rep.proofs_renewed += 1
            if progress:
                progress(rep.bytes_read, total)
    _rsync_proofs(cfg, engine, remote, rep)
    bad_ids = _confirm(cfg, engine, host, suspects, rep, repair)
    _copies(cfg, engine, host, cat, bad_ids, rep, repair)
    _orphans(cfg, engine, host, rep, repair)
    rep.stale_proofs = catalog.stale_proofs(engine, proof_cutoff(cfg))
    return rep


# -- replicas on other hosts' nodes --------------------------------------------------
def _left(cfg: Config, rep: AuditReport, node: str, n: int) -> None:
    """n replicas on `node` not proven here: left to the audit on the node's host."""
    conf = next((c for c in cfg.storage_nodes if c.name == node), None)
    owner = cfg.host_of(conf).name if conf is not None else f"(node {node}, not configured)"
    rep.elsewhere += n
    rep.elsewhere_hosts[owner] = rep.elsewhere_hosts.get(owner, 0) + n


def _rsync_dest(cfg: Config, r: Any) -> str | None:
    """The rsync URL of the directory holding replica r on its node, or None (no daemon, not under the node)."""
    node = next((n for n in cfg.storage_nodes if n.name == r.node), None)
    url = cfg.node_rsync_url(node) if node is not None else None
    if node is None or url is None or not r.path:
        return None
    try:
        rel = Path(r.path).parent.relative_to(cfg.under_data_dir(node.path))
    except ValueError:
        return None
    return rsync.join(url, *rel.parts)


def _rsync_proofs(
    cfg: Config, engine: Engine, remote: dict[tuple[Path, str, str], list[tuple[Any, Any]]], rep: AuditReport
) -> None:
    """Prove other hosts' replicas by an rsync `--checksum --dry-run` pass against the DAQ copy here: their
    node's daemon reads each file back and compares it with the DAQ copy. One run per directory."""
    password = cfg.rsync_password()
    down: set[str] = set()
    for (daq_dir, dest, node), pairs in remote.items():
        if node in down:
            _left(cfg, rep, node, len(pairs))
            continue
        names = {Path(f.daq_path).name: r for f, r in pairs if Path(r.path).name == Path(f.daq_path).name}
        began = utcnow()
        try:
            bad = set(rsync.differing(daq_dir, sorted(names), dest, cfg.transfer.rsync_timeout_s, password))
        except rsync.RsyncError as err:
            rep.unreachable.append(f"{node}: {err.strerror or err}")
            _left(cfg, rep, node, len(pairs))
            down.add(node)
            continue
        if len(pairs) > len(names):
            _left(cfg, rep, node, len(pairs) - len(names))
        for name, r in names.items():
            rep.rsync_checked += 1
            if name in bad:
                rep.differing.append(f"{node}:{r.path}")
            elif catalog.prove(engine, r.id, r.path, began):
                rep.proofs_renewed += 1


def _check(path: str | None, size: int, checksum: str) -> str | None:
    """None if the file is there, whole and matching; else missing or corrupted."""
    if not _whole(path, size):
        return "missing"
    try:
        return None if xxh3_from_disk(Path(str(path))) == checksum else "corrupted"
    except OSError:
        return "missing"  # gone while it was read


def _whole(path: str | None, size: int) -> bool:
    try:
        return path is not None and os.stat(path).st_size == size
    except OSError:
        return False


# -- what looked wrong, looked at again ---------------------------------------
def _confirm(
    cfg: Config, engine: Engine, host: str, suspects: list[_Suspect], rep: AuditReport, repair: bool
) -> set[int]:
    """Re-read each suspect's row and file; report (and repair) only what is still wrong. Bad replica ids."""
    bad: set[int] = set()
    for s in suspects:
        f = s.file
        if s.replica is None:
            now = catalog.daq_copy_now(engine, f.id)
            still = now is not None and now.daq_state == DaqCopyState.PRESENT and now.daq_path == f.daq_path
        else:
            now = catalog.replica_now(engine, s.replica.id)
            still = now is not None and now.state == ReplicaState.VERIFIED and now.path == s.replica.path
        if still:  # the row did not move: does the file still look wrong?
            if s.replica is None:
                still = not _whole(f.daq_path, f.size_bytes)
            else:
                still = _check(s.replica.path, f.size_bytes, f.checksum_xxh3) is not None
        if not still:
            rep.moved += 1
            continue
        if s.replica is None:
            rep.daq_missing.append(f.daq_path)
            if repair:
                _mark_daq_missing(engine, host, f)
            continue
        bad.add(s.replica.id)
        where = f"{s.replica.node}:{s.replica.path}"
        (rep.missing if s.problem == "missing" else rep.corrupted).append(where)
        if repair:
            _set_aside_and_requeue(engine, host, f, s.replica, s.problem)
            rep.requeued += 1
    return bad


def _mark_daq_missing(engine: Engine, host: str, f: Any) -> None:
    """The DAQ copy is not there: copies are made from replicas or the archive from now on."""
    catalog.mark_daq_missing(engine, f.id)
    record_event(
        engine,
        host=host,
        source=SOURCE,
        kind="daq_copy_missing",
        subject=f.filename,
        severity="error",
        message=f"the DAQ copy {f.daq_path} is not there (or not whole): copies come from replicas or the archive",
    )


def _set_aside_and_requeue(engine: Engine, host: str, f: Any, r: Any, problem: str) -> None:
    """A damaged replica leaves its final name (kept until a good copy exists) and is copied again."""
    why = f"audit: replica {problem} on {r.node} ({r.path})"
    kept = ""
    if r.path and os.path.lexists(r.path):
        aside = quarantine_path(Path(r.path))
        os.replace(r.path, aside)
        kept = f"; the damaged file is kept as {aside.name} until a good copy exists"
    catalog.requeue_damaged(engine, r.id, why)
    record_event(
        engine,
        host=host,
        source=SOURCE,
        kind=f"replica_{problem}",
        subject=f.filename,
        severity="error",
        message=f"{why}: queued to be copied again from a good source{kept}",
    )


# -- does every file have its copies? -------------------------------------------
def _copies(
    cfg: Config, engine: Engine, host: str, cat: list[Any], bad: set[int], rep: AuditReport, repair: bool
) -> None:
    """Count each file's good copies from the catalog as it is now (after the scan); short and lost files."""
    ids = {f.id for f in cat}
    now, rows, acked = catalog.copies_now(engine)
    by_file: dict[int, list[Any]] = {}
    for r in rows:
        if r.file_id in ids:
            by_file.setdefault(r.file_id, []).append(r)
    for f in cat:
        mine = by_file.get(f.id, [])
        good = sum(r.state == ReplicaState.VERIFIED and r.id not in bad for r in mine)
        in_archive = f.id in acked
        rep.archived += in_archive
        daq = now.get(f.id)
        on_daq = daq is not None and daq.daq_state == DaqCopyState.PRESENT and f.daq_path not in rep.daq_missing
        if good + on_daq + in_archive == 0:
            rep.lost_files.append(f.filename)
        expired = sum(r.state == ReplicaState.EXPIRED for r in mine)
        required = 0 if in_archive else max(1, cfg.transfer.replication - expired)
        if good >= required:
            continue
        rep.unreplicated += 1
        under_way = [
            r
            for r in mine
            if r.state in (ReplicaState.COPYING, ReplicaState.COPIED)  # copied: on the node, its proof to come
            or (r.state == ReplicaState.QUEUED and not r.last_error)
        ]
        if good + len(under_way) >= required:
            rep.in_progress += 1
            continue
        stuck = [r for r in mine if r.state == ReplicaState.FAILED or (r.state == ReplicaState.QUEUED and r.last_error)]
        why = stuck[0].last_error if stuck else "no copy queued"
        rep.short.append(f"{f.filename}: {good} of {required} verified copies; {why}")
        if repair:
            rep.requeued += catalog.requeue_stuck(engine, [r.id for r in stuck if r.id not in bad])
            missing_rows = required - good - len(under_way) - len(stuck)
            if missing_rows > 0:  # replication was raised since it was catalogued
                rep.requeued += catalog.add_copies(engine, f.id, missing_rows)


# -- files on the nodes the catalog does not name -------------------------------
def _orphans(cfg: Config, engine: Engine, host: str, rep: AuditReport, repair: bool) -> None:
    """FITS files no replica names (the catalog re-read after the scan), and damaged replicas kept aside."""
    found: list[Path] = []
    aside: list[Path] = []
    local = {n.name for n in cfg.local_nodes(host)}
    for n in cfg.local_nodes(host):
        root = cfg.under_data_dir(n.path)
        if root.is_dir():
            found += root.rglob("TMQ*.fits")
            aside += root.rglob(".TMQ*.fits.bad")
    known, kept, acked = catalog.node_contents(engine)
    verified: dict[str, list[str]] = {}
    expired: dict[str, int] = {}
    for name, node, path, state in kept:
        if state == ReplicaState.EXPIRED:
            expired[name] = expired.get(name, 0) + 1
        elif node not in local or (path and Path(path).exists()):  # another host's: its audit checks it
            verified.setdefault(name, []).append(f"{node}:{path}")
    rep.orphans = sorted(str(p) for p in found if str(p) not in known and p.exists())
    for bad in aside:
        name = bad.name[1 : -len(".bad")]
        good = verified.get(name, [])
        needed = 1 if name in acked else max(1, cfg.transfer.replication - expired.get(name, 0))
        if len(good) >= needed and repair:  # the file has its copies again: the damaged one is not needed
            bad.unlink(missing_ok=True)
            rep.quarantine_cleared += 1
            log.info("removed the damaged copy %s: %s is a good copy", bad, good[0])
        else:
            rep.quarantined.append(str(bad))
