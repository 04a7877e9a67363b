"""`transfer:push` registers DAQ files; `transfer:pop-NN` copies them to storage nodes, durably.

A copy to a local node is proven here at once (read back from the disk); one to an rsync node is
sent with others of the same night in one rsync run, fsynced on the node, and proven there by
`storage:prover` (or, for a node on no gozen storage host, by an rsync checksum pass from here).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gozen.config import Config
from gozen.db.events import Severity, record_event
from gozen.db.states import DaqCopyState
from gozen.service import Context, Service, first_line
from gozen.transfer import catalog, rsync
from gozen.transfer.copy import BadSource, ReplicaMismatch, copy_verified, quarantine_path, xxh3_from_disk, xxh3_of
from gozen.transfer.placement import Node, NoNode, Placement, archive_source, daq_url, prover_host, reach_of

log = logging.getLogger(__name__)


def _event(
    engine: Engine, host: str, source: str, kind: str, subject: str, message: str, severity: Severity = "error"
) -> None:
    log.log(logging.ERROR if severity == "error" else logging.WARNING, "%s: %s", subject, message)
    record_event(engine, host=host, source=source, kind=kind, subject=subject, message=message, severity=severity)


# -- push --------------------------------------------------------------------
def push_once(cfg: Config, engine: Engine, host: str, scan: bool) -> int:
    """Register new DAQ files from daq_files rows and, with scan, from the DAQ volumes themselves."""
    rows = [
        {
            "filename": r["filename"],
            "daq_file_id": r["id"],
            "exp_id": r["exp_id"],
            "det_id": r["det_id"],
            "size_bytes": r["size_bytes"],
            "checksum_xxh3": r["checksum_xxh3"],
            "daq_host": r["daq_host"],
            "daq_volume": r["daq_volume"],
            "daq_path": r["path"],
        }
        for r in catalog.unregistered_daq_files(engine)
    ]
    new = catalog.register(engine, rows, cfg.transfer.replication)
    if scan:
        new += scan_volumes(cfg, engine, host)
    return new


def scan_volumes(cfg: Config, engine: Engine, host: str) -> int:
    """The safety net: FITS files on DAQ volumes that no row knows of (written while the database was away)."""
    new = 0
    for v, root in cfg.daq_volume_dirs(host):
        paths = {p.name: p for p in root.rglob("TMQ*.fits")}
        for name in sorted(set(paths) - catalog.known_filenames(engine, list(paths))):
            p = paths[name]
            row = {
                "filename": name,
                "daq_file_id": None,
                "exp_id": None,
                "det_id": None,
                "size_bytes": p.stat().st_size,
                "checksum_xxh3": xxh3_of(p),
                "daq_host": host,
                "daq_volume": v.name,
                "daq_path": str(p),
            }
            if catalog.register(engine, [row], cfg.transfer.replication):
                new += 1
                _event(
                    engine,
                    host,
                    "transfer:push",
                    "file_found_by_scan",
                    name,
                    f"{p} was on {v.name} without a DAQ row: catalogued from the file itself",
                    "warning",
                )
    return new


class Pusher(Service):
    """`transfer:push`: registers new DAQ rows every poll_s, and scans the volumes every scan_every_s."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.period_s = ctx.cfg.transfer.poll_s
        self.next_scan = 0.0  # time.monotonic() of the next scan: the first pass scans

    def run_once(self) -> bool:
        scan = time.monotonic() >= self.next_scan
        new = push_once(self.ctx.cfg, self.ctx.engine, self.ctx.host, scan)
        if scan:  # only once it is done: a scan cut short by an outage is made again on the next pass
            self.next_scan = time.monotonic() + self.ctx.cfg.transfer.scan_every_s
        return new > 0


# -- pop ---------------------------------------------------------------------
BATCH_FILES = 8  # copies to one rsync node sent by one rsync run
BATCH_BYTES = 512 * 2**20


@dataclass
class SourceNotes:
    """Why the sources of a copy could not be used: gone, damaged, or out of reach for now."""

    gone: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [*self.unreachable, *self.bad, *self.gone]
        return "; ".join(parts) if parts else "no source: the DAQ copy is gone, no verified replica, not archived"


class CopyAgent(Service):
    """`transfer:pop-NN`: claims copy jobs it can read the source of, places, copies and settles them."""

    batch_files, batch_bytes = BATCH_FILES, BATCH_BYTES
    rsync_fsync = True  # the receiver fsyncs each file before its rename

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cfg, self.engine, self.host, self.name = ctx.cfg, ctx.engine, ctx.host, ctx.program
        self.agent_id = f"{self.host}:{self.name}:{os.getpid()}"
        self.placement = Placement(self.cfg, self.engine, self.host)
        self.reach = reach_of(self.cfg, self.host)
        self.password = self.cfg.rsync_password()
        self.proven_by_host = {n.name: prover_host(self.cfg, n) is not None for n in self.cfg.storage_nodes}
        self.t = self.cfg.transfer
        self.lease = timedelta(seconds=self.t.lease_s)
        self.period_s = self.t.poll_s
        self.staging = self.cfg.data_dir / "transfer-staging"
        self.failing: set[str] = set()  # nodes whose last copy from this agent failed: one event per outage
        self.in_hand: list[catalog.Job] = []  # claimed by this pass, settled or not
        self.unsettled: tuple[list[catalog.Job], str] | None = None  # claimed by a pass that died, and why

    def retry_in(self, attempts: int) -> timedelta:
        """Capped exponential backoff: retry_base_s, doubling, never more than retry_max_s."""
        return timedelta(seconds=min(self.t.retry_max_s, self.t.retry_base_s * 2 ** min(max(attempts - 1, 0), 40)))

    def run_once(self) -> bool:
        """Copy one job (with the batch that goes along to the same node); False when there was nothing to do."""
        self.release_unsettled()
        job = catalog.claim(self.engine, self.agent_id, self.lease, self.reach)
        if job is None:
            return False
        self.in_hand = [job]
        try:
            return self.work(job)
        except Exception as err:  # the database went away, or a bug: the runner waits and calls again
            self.unsettled = (self.in_hand, f"the pass copying it failed: {type(err).__name__}: {first_line(err)}")
            raise

    def release_unsettled(self) -> None:
        """Jobs of a pass that died go back to the queue after their retry delay, not when the lease runs out
        (a job the pass settled is no longer this agent's: releasing it changes nothing)."""
        if self.unsettled is not None:
            dropped, why = self.unsettled
            for job in dropped:
                catalog.release(self.engine, job, why, self.retry_in(job.attempts))
            self.unsettled = None

    def teardown(self) -> None:
        try:
            self.release_unsettled()
        except SQLAlchemyError as err:  # the database is still away: another agent takes it when the lease runs out
            log.warning("%s: left claimed until its lease runs out: %s", self.name, type(err).__name__)

    def work(self, job: catalog.Job) -> bool:
        """Copy a claimed job from the first source that works, and settle it."""
        if job.previous_path:  # taken over from an agent that died mid-copy: its partial file goes
            stale = Path(job.previous_path)
            stale.with_name(f".{stale.name}.part").unlink(missing_ok=True)
        placed = self.place(job)
        if placed is None:
            return True
        node, dst = placed
        if node.transport == "rsync" and job.daq_state == DaqCopyState.PRESENT and self.daq_is_here(job):
            self.send_batch(job, node, dst)
        else:
            self.copy_one(job, node, dst, SourceNotes())
        return True

    def copy_one(self, job: catalog.Job, node: Node, dst: Path, notes: SourceNotes, daq: bool = True) -> None:
        """Copy from the first source that works (the DAQ copy first, unless `daq` is False) and settle."""
        try:
            for label, src in self.sources(job, notes, daq):
                try:
                    self.copy(job, node, src, dst)
                except BadSource as err:
                    notes.bad.append(f"{label}: {err}")
                    continue
                except OSError:
                    if src.exists():
                        raise  # the node's fault
                    notes.gone.append(f"{label} {src} went away while copying")
                    continue
                self.copy_done(job, node)
                return
        except ReplicaMismatch as err:
            self.node_failure(job, node, str(err), "replica_mismatch", mark_down=False)
            return
        except OSError as err:
            self.node_failure(job, node, f"{node.name}: {err.strerror or err}", "node_failed")
            return
        finally:
            staged = self.staged(job.filename)
            staged.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not there, or another fetched copy is in it
                staged.parent.rmdir()
        self.no_source(job, notes)

    def copy_done(self, job: catalog.Job, node: Node) -> None:
        self.clear_quarantine(job.filename)
        self.node_back(node)

    def place(self, job: catalog.Job) -> tuple[Node, Path] | None:
        """A node and path for the copy, recorded in the catalog; None (job back in the queue) if no node can.

        Where a pass that died was copying it to comes first: the copy may be whole there already.
        """
        exclude = set(job.nodes_taken)
        before = self.placement.by_name(job.previous_node)
        if before is not None and job.previous_path and before.name not in exclude:
            if catalog.place(self.engine, job, before.name, job.previous_path, before.max_bytes):
                return before, Path(job.previous_path)
            exclude.add(before.name)
        while True:
            try:
                node = self.placement.choose(job.size_bytes, frozenset(exclude))
            except NoNode as err:
                catalog.failed(self.engine, job, f"no node can take it: {err}", self.retry_in(job.attempts))
                return None
            dst = node.path / job.filename[4:12] / job.filename
            if catalog.place(self.engine, job, node.name, str(dst), node.max_bytes):
                return node, dst
            exclude.add(node.name)  # another copy of this file was just placed there, or its quota is full

    def copy(self, job: catalog.Job, node: Node, src: Path, dst: Path) -> None:
        """One copy from src, settled in the catalog: verified (proven here), or copied (proven on the node)."""
        if dst.exists() and os.path.samefile(src, dst):  # a node on the DAQ volume: not a second copy
            raise OSError(errno.EINVAL, f"{dst} is its own source (the node's path is on a DAQ volume?)")
        if node.transport == "rsync":
            bad = self.send(node, [(job, src)])
            if bad:
                raise BadSource(bad[job.replica_id])
            damaged = self.landed(node, [(job, src)])
            if damaged:
                raise ReplicaMismatch(damaged[job.replica_id])
            return
        if not (dst.exists() and dst.stat().st_size == src.stat().st_size and xxh3_from_disk(dst) == job.checksum_xxh3):
            copy_verified(src, dst, job.checksum_xxh3)  # else an agent died after the rename, before the row
        catalog.verified(self.engine, job, node.name, str(dst))

    # -- rsync nodes: one run per batch, fsynced, the source checked as it is read ---------------
    def send_batch(self, first: catalog.Job, node: Node, first_dst: Path) -> None:
        """The job and more of the same night whose DAQ copies are here, to `node` in one rsync run."""
        night = first.filename[4:12]
        batch = [(first, first_dst)]
        if self.batch_files > 1:
            more = catalog.claim_batch(
                self.engine,
                self.agent_id,
                self.lease,
                self.reach.daq_hosts,
                node.name,
                night,
                self.batch_files - 1,
                self.batch_bytes - first.size_bytes,
            )
            self.in_hand += more
            for job in more:
                dst = node.path / night / job.filename
                if catalog.place(self.engine, job, node.name, str(dst), node.max_bytes):
                    batch.append((job, dst))
                else:  # the node's quota is full: it goes back, untried
                    catalog.unclaim(self.engine, job)
        ready: list[tuple[catalog.Job, Path]] = []
        others: list[tuple[catalog.Job, Path, SourceNotes]] = []
        for job, dst in batch:
            notes = SourceNotes()
            daq = list(self._local("the DAQ copy", Path(job.daq_path), job.size_bytes, notes))
            if daq:
                ready.append((job, daq[0][1]))
            else:
                others.append((job, dst, notes))
        try:
            bad = self.send(node, ready) if ready else {}
            damaged = self.landed(node, [(job, src) for job, src in ready if job.replica_id not in bad])
        except OSError as err:
            for job, _ in ready:
                self.node_failure(job, node, f"{node.name}: {err.strerror or err}", "node_failed")
            return
        for job, _ in ready:
            if job.replica_id in damaged:
                self.node_failure(job, node, damaged[job.replica_id], "replica_mismatch", mark_down=False)
            elif job.replica_id not in bad:
                self.copy_done(job, node)
        by_id = {job.replica_id: dst for job, dst in batch}
        for job, _ in ready:
            if job.replica_id in bad:
                others.append((job, by_id[job.replica_id], SourceNotes(bad=[f"the DAQ copy: {bad[job.replica_id]}"])))
        for job, dst, notes in others:  # from a replica or the archive, one at a time
            self.copy_one(job, node, dst, notes, daq=False)

    def send(self, node: Node, items: list[tuple[catalog.Job, Path]]) -> dict[int, str]:
        """Send the sources to the node in one rsync run; {replica id: why} of those whose source read wrong
        (taken off the node again). Raises OSError when the node cannot take them."""
        assert node.rsync_url is not None  # placement reaches only rsync nodes with a URL
        night = items[0][0].filename[4:12]
        dest = rsync.join(node.rsync_url, night)
        sums = rsync.send_durable(
            [src for _, src in items], dest, self.t.rsync_timeout_s, self.password, fsync=self.rsync_fsync
        )
        bad = {}
        for job, src in items:
            got = sums.get(src.name)
            if got != job.checksum_xxh3:
                what = f"reads checksum {got}" if got else "was not sent"
                bad[job.replica_id] = f"{src} {what} (rsync's xxh3), the catalog says {job.checksum_xxh3}"
        if bad:
            names = [src.name for job, src in items if job.replica_id in bad]
            rsync.remove(dest, names, self.t.rsync_timeout_s, self.password)
        return bad

    def landed(self, node: Node, items: list[tuple[catalog.Job, Path]]) -> dict[int, str]:
        """The copies are on the node, fsynced: copied (the node's host proves them), or proven here by an
        rsync checksum pass and verified. {replica id: why} of those that pass found different."""
        if not items:
            return {}
        night = items[0][0].filename[4:12]
        by_host = self.proven_by_host.get(node.name, False)
        differ: set[str] = set()
        if not by_host:
            assert node.rsync_url is not None
            dest = rsync.join(node.rsync_url, night)
            for parent in {src.parent for _, src in items}:
                names = [src.name for _, src in items if src.parent == parent]
                differ.update(rsync.differing(parent, names, dest, self.t.rsync_timeout_s, self.password))
        bad = {}
        for job, src in items:
            dst = str(node.path / night / job.filename)
            if src.name in differ:
                bad[job.replica_id] = f"{node.name}:{dst}: the copy's checksum differs from its source's"
            elif by_host:
                catalog.copied(self.engine, job, node.name, dst)
            else:
                catalog.verified(self.engine, job, node.name, dst)
        return bad

    # -- where the bytes come from -------------------------------------------
    def daq_is_here(self, job: catalog.Job) -> bool:
        return self.reach.daq_hosts is None or job.daq_host in self.reach.daq_hosts

    def sources(self, job: catalog.Job, notes: SourceNotes, daq: bool = True) -> Iterator[tuple[str, Path]]:
        """The DAQ copy, then any verified replica, then the archive's copy: each a local path, whole in size."""
        night = job.filename[4:12]
        if daq and job.daq_state == DaqCopyState.PRESENT:
            if self.daq_is_here(job):
                yield from self._local("the DAQ copy", Path(job.daq_path), job.size_bytes, notes)
            elif job.daq_volume in self.reach.daq_volumes:
                yield from self._fetched("the DAQ copy", self.daq_copy_url(job), job, notes)
        for r in catalog.verified_replicas(self.engine, job.file_id):
            node = self.placement.by_name(r["node"])
            label = f"the replica on {r['node']}"
            if node is None or not r["path"]:
                notes.unreachable.append(f"{label}: not a node this agent reaches")
            elif node.transport == "local":
                yield from self._local(label, Path(r["path"]), job.size_bytes, notes)
            else:
                assert node.rsync_url is not None
                yield from self._fetched(label, rsync.join(node.rsync_url, night, job.filename), job, notes)
        archive = archive_source(self.cfg, self.host)
        if archive is not None and catalog.is_archived(self.engine, job.file_id):
            if archive.startswith("rsync://") or ":" in archive.split("/", 1)[0]:
                url = rsync.join(archive, night, job.filename)
                yield from self._fetched("the archive's copy", url, job, notes)
            else:
                path = Path(archive) / night / job.filename
                yield from self._local("the archive's copy", path, job.size_bytes, notes)

    def daq_copy_url(self, job: catalog.Job) -> str:
        """The DAQ copy on its host's rsync daemon: the volume's module, and the path under the volume."""
        volume = next(v for v in self.cfg.daq_volumes if v.name == job.daq_volume)
        url = daq_url(self.cfg, job.daq_volume)
        assert url is not None  # reach_of pulls only volumes with a URL
        return rsync.join(url, str(Path(job.daq_path).relative_to(self.cfg.under_data_dir(volume.path))))

    def _local(self, label: str, path: Path, size: int, notes: SourceNotes) -> Iterator[tuple[str, Path]]:
        try:
            got = path.stat().st_size
        except FileNotFoundError:
            notes.gone.append(f"{label} {path} is gone")
            return
        except OSError as err:
            notes.unreachable.append(f"{label} {path}: {err.strerror or err}")
            return
        if got != size:
            notes.bad.append(f"{label} {path} is {got} bytes, the catalog says {size}")
            return
        yield label, path

    def staged(self, filename: str) -> Path:
        """Where a fetched source waits, under its own name (rsync sends it on by that name)."""
        return self.staging / str(os.getpid()) / filename

    def _fetched(self, label: str, url: str, job: catalog.Job, notes: SourceNotes) -> Iterator[tuple[str, Path]]:
        """A remote copy brought here first (and checked), to be copied on from here."""
        dest = self.staged(job.filename)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not rsync.fetch(url, dest, self.t.rsync_timeout_s, self.password):
                notes.gone.append(f"{label} {url} is gone")
                return
        except OSError as err:
            notes.unreachable.append(f"{label} {url}: {err.strerror or err}")
            return
        got = xxh3_of(dest)
        if got != job.checksum_xxh3:
            notes.bad.append(f"{label} {url} reads checksum {got}, the catalog says {job.checksum_xxh3}")
            return
        yield label, dest

    # -- settling ----------------------------------------------------------------
    def node_failure(self, job: catalog.Job, node: Node, why: str, kind: str, mark_down: bool = True) -> None:
        """The node could not take the copy now: it waits and is tried again, for as long as it takes."""
        if mark_down:
            self.placement.mark_down(node, why)
        retry = self.retry_in(job.attempts)
        catalog.failed(self.engine, job, why, retry)
        message = f"{why} (retry in {retry.total_seconds():.1f} s; the copy waits for a node)"
        if node.name not in self.failing or not mark_down:  # an outage is told once, a bad copy every time
            self.failing.add(node.name)
            _event(self.engine, self.host, self.name, kind, job.filename, message, "warning")
        else:
            log.warning("%s: %s", job.filename, message)

    def node_back(self, node: Node) -> None:
        if node.name in self.failing:
            self.failing.discard(node.name)
            _event(self.engine, self.host, self.name, "node_ok", node.name, "copies to it work again", "info")

    def no_source(self, job: catalog.Job, notes: SourceNotes) -> None:
        """No source could be copied. Out of reach: wait; gone or damaged: a few tries, then failed for good."""
        why = notes.summary()
        if notes.unreachable or job.attempts < self.t.max_attempts:
            retry = self.retry_in(job.attempts)
            catalog.failed(self.engine, job, why, retry)
            message = f"{why} (retry in {retry.total_seconds():.0f} s)"
            if job.attempts == 1:
                _event(self.engine, self.host, self.name, "source_unavailable", job.filename, message, "warning")
            else:
                log.warning("%s: %s", job.filename, message)
            return
        catalog.failed(self.engine, job, why, None)
        kind = "replica_mismatch" if notes.bad else "source_missing"
        _event(self.engine, self.host, self.name, kind, job.filename, f"{why} (gave up after {job.attempts} tries)")

    def clear_quarantine(self, filename: str) -> None:
        """A good copy exists now: damaged replicas of the file kept aside on this host's nodes can go."""
        for n in self.placement.nodes:
            bad = quarantine_path(n.path / filename[4:12] / filename)
            if n.transport == "local" and bad.is_file():
                bad.unlink(missing_ok=True)
                log.info("removed the damaged copy %s: a verified copy exists now", bad)
