"""`transfer:janitor`: free DAQ volumes, oldest first, deleting only files safely copied elsewhere."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from gozen.config import Config
from gozen.db.events import record_event
from gozen.service import Context, Service
from gozen.transfer import catalog

log = logging.getLogger(__name__)


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


def replicas_on_disk(engine: Engine, file_id: int, size_bytes: int, daq_path: str | None = None) -> int:
    """Verified replicas that are still there, whole, and not the DAQ copy itself: trusted only after a look."""
    daq = _identity(daq_path)
    n = 0
    for r in catalog.verified_replicas(engine, file_id):
        try:
            if not r["path"]:
                continue
            st = os.stat(r["path"])
        except OSError:
            continue
        if st.st_size == size_bytes and (st.st_dev, st.st_ino) != daq:
            n += 1
    return n


def _identity(path: str | None) -> tuple[int, int] | None:
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st else None


def sweep(cfg: Config, engine: Engine, host: str, dry_run: bool = False) -> list[Deletion]:
    """One pass over this host's DAQ volumes; returns what was (or, dry run, would be) deleted."""
    t = cfg.transfer
    done: list[Deletion] = []
    for v, root in cfg.daq_volume_dirs(host):
        held = catalog.daq_bytes(engine, v.name, host) if v.max_bytes else 0
        pct, total = usage(root, v.max_bytes, held)
        if pct <= t.daq_high_water_pct:
            continue
        to_free = (pct - t.daq_low_water_pct) / 100 * total
        for f in catalog.deletable_from_daq(engine, v.name, host, t.replication, t.janitor_requires_archive):
            if to_free <= 0:
                break
            have = replicas_on_disk(engine, f["id"], f["size_bytes"], f["daq_path"])
            if have < t.replication and not f["archived"]:
                log.warning(
                    "not deleting %s: %d of %d verified replicas found on disk", f["filename"], have, t.replication
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
                source="transfer:janitor",
                kind="daq_file_deleted",
                subject=f["filename"],
                message=f"deleted the DAQ copy on {v.name} ({have} verified replicas elsewhere"
                + (", archived)" if f["archived"] else ")"),
            )
    return done


class Janitor(Service):
    """`transfer:janitor`: a sweep of this host's DAQ volumes every janitor_every_s."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.period_s = ctx.cfg.transfer.janitor_every_s

    def run_once(self) -> None:
        sweep(self.ctx.cfg, self.ctx.engine, self.ctx.host)
