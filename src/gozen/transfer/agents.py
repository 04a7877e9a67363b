"""`transfer:push` registers DAQ files; `transfer:pop-NN` copies them to storage nodes and verifies them."""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from gozen.config import Config
from gozen.db.events import Severity, record_event
from gozen.transfer import catalog, rsync
from gozen.transfer.copy import ReplicaMismatch, copy_verified, xxh3_of
from gozen.transfer.placement import NoNode, Placement

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


def run_push(cfg: Config, engine: Engine, host: str) -> None:
    next_scan = 0.0
    while True:
        scan = time.monotonic() >= next_scan
        if scan:
            next_scan = time.monotonic() + cfg.transfer.scan_every_s
        if push_once(cfg, engine, host, scan) == 0:
            time.sleep(cfg.transfer.poll_s)


# -- pop ---------------------------------------------------------------------
def rsync_verified(src: Path, dest_dir: str, checksum: str, timeout_s: float) -> None:
    """src -> dest_dir/NAME by rsync (a temporary name there, renamed by rsync), then proved by checksum."""
    got = xxh3_of(src)
    if got != checksum:
        raise ReplicaMismatch(f"the DAQ copy {src} reads {got}, catalog says {checksum}")
    rsync.send(src.parent, [src.name], dest_dir, timeout_s)
    if rsync.differing(src.parent, [src.name], dest_dir, timeout_s):
        raise ReplicaMismatch(f"{dest_dir}/{src.name}: the copy's checksum differs from the DAQ copy's")


class CopyAgent:
    def __init__(self, cfg: Config, engine: Engine, host: str, name: str) -> None:
        self.cfg, self.engine, self.host, self.name = cfg, engine, host, name
        self.agent_id = f"{host}:{name}:{os.getpid()}"
        self.placement = Placement(cfg, engine)
        self.t = cfg.transfer

    def retry_in(self, attempts: int) -> timedelta | None:
        if attempts >= self.t.max_attempts:
            return None
        return timedelta(seconds=self.t.retry_base_s * 2 ** (attempts - 1))

    def work_once(self) -> bool:
        """Copy and verify one replica; False when there was nothing to do."""
        job = catalog.claim(self.engine, self.agent_id, timedelta(seconds=self.t.lease_s))
        if job is None:
            return False
        src = Path(job.daq_path)
        if job.previous_path:  # taken over from an agent that died mid-copy: its partial file goes
            stale = Path(job.previous_path)
            stale.with_name(f".{stale.name}.part").unlink(missing_ok=True)
        exclude = set(job.nodes_taken)
        while True:
            try:
                node = self.placement.choose(job.size_bytes, frozenset(exclude))
            except NoNode as err:
                catalog.failed(self.engine, job, f"no node can take it: {err}", timedelta(seconds=self.t.retry_base_s))
                return True
            dst = node.path / job.filename[4:12] / job.filename
            if catalog.place(self.engine, job, node.name, str(dst), node.max_bytes):
                break
            exclude.add(node.name)  # another copy of this file was just placed there, or its quota is full
        try:
            if node.transport == "rsync":
                assert node.rsync_url is not None  # the config requires it
                dest_dir = rsync.join(node.rsync_url, dst.parent.name)
                rsync_verified(src, dest_dir, job.checksum_xxh3, self.t.rsync_timeout_s)
            elif dst.exists() and xxh3_of(dst) == job.checksum_xxh3:
                pass  # an agent died after the rename, before the row: it is there already
            else:
                copy_verified(src, dst, job.checksum_xxh3)
        except ReplicaMismatch as err:
            self.settle_failure(job, str(err), "replica_mismatch")
            return True
        except FileNotFoundError as err:
            if not src.exists():
                self.settle_failure(job, f"the DAQ copy {src} is gone: {err.strerror}", "source_missing", final=True)
            else:
                self.placement.mark_down(node, str(err))
                self.settle_failure(job, f"{node.name}: {err}", "node_failed")
            return True
        except OSError as err:
            self.placement.mark_down(node, err.strerror or str(err))
            self.settle_failure(job, f"{node.name}: {err.strerror or err}", "node_failed")
            return True
        catalog.verified(self.engine, job, node.name, str(dst))
        return True

    def settle_failure(self, job: catalog.Job, why: str, kind: str, final: bool = False) -> None:
        retry = None if final else self.retry_in(job.attempts)
        catalog.failed(self.engine, job, why, retry)
        severity: Severity = "error" if retry is None else "warning"
        tail = "gave up" if retry is None else f"retry in {retry.total_seconds():.0f} s"
        _event(self.engine, self.host, self.name, kind, job.filename, f"{why} ({tail})", severity)

    def run(self) -> None:
        while True:
            if not self.work_once():
                time.sleep(self.t.poll_s)
