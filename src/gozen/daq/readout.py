"""`daq:readout-NN`: read a set of chips into the rings, never blocking on a slow writer."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine

from gozen.config import Config
from gozen.daq import catalog
from gozen.daq.catalog import ArmedExposure
from gozen.daq.cpus import cpu_sets, pin
from gozen.daq.layout import frame_bytes, readout_chips, ring_path, ring_slots, writer_of
from gozen.daq.ring import END, FLAG_DAMAGED, FLAG_MISSING, FRAME, Ring, release_rings
from gozen.daq.stop import CLEAN_STOP, exit_on_sigterm
from gozen.db.events import record_event
from gozen.db.types import utcnow
from gozen.devices.camera import Camera, ExposureSpec
from gozen.devices.simcamera import SimulatedCamera

log = logging.getLogger(__name__)
POLL_S = 0.05


class Readout:
    def __init__(self, cfg: Config, engine: Engine, index: int, host: str, camera: Camera | None = None) -> None:
        self.cfg, self.engine, self.index, self.host = cfg, engine, index, host
        self.name = f"daq:readout-{index + 1:02d}"
        self.chips = readout_chips(cfg, index)
        self.camera = camera or SimulatedCamera(cfg.camera, seed=index, gps_jitter_s=cfg.daq.gps_jitter_s)
        self.recognised = self.camera.open(self.chips)
        self.unrecognised = [c for c in self.chips if c not in self.recognised]
        self.rings: dict[int, Ring] = {}
        for w in sorted({writer_of(cfg, c) for c in self.chips}):
            ring = Ring.create_or_open(ring_path(cfg, host, index, w), ring_slots(cfg, index, w), frame_bytes(cfg))
            ring.prefault()
            self.rings[w] = ring
        self._scratch = np.empty(frame_bytes(cfg) // 2, np.uint16)
        for c in self.unrecognised:
            record_event(
                engine,
                host=host,
                source=self.name,
                kind="chip_unrecognised",
                subject=f"det {c}",
                severity="error",
                message=f"chip {c} did not answer at start: its frames are lost",
            )

    def announce(self) -> None:
        log.info("%s ready: chips %s, %d rings", self.name, self.recognised, len(self.rings))

    def read_exposure(self, exp: ArmedExposure) -> dict[int, Counter[str]]:
        """Read every frame of the exposure for our chips; returns per-chip counts."""
        chips = [c for c in self.recognised if c in exp.chips]
        counts: dict[int, Counter[str]] = {c: Counter() for c in chips}
        start_ns = int(exp.start_at.timestamp() * 1e9)
        self.camera.start_exposure(ExposureSpec(exp.exp_id, exp.n_frames, exp.fps, start_ns, exp.ra_deg, exp.dec_deg))
        for i in range(exp.n_frames):
            self.camera.wait_frame(i)
            for c in chips:
                self._read_one(exp, c, i, counts[c])
        for c in chips:  # END lets the writer close at once; if the ring is full it closes on its timeout
            ring = self.rings[writer_of(self.cfg, c)]
            seq = ring.reserve()
            if seq is not None:
                ring.publish(seq, kind=END, exp_id=exp.exp_id, det_id=c, n_frames=exp.n_frames)
        return counts

    def _read_one(self, exp: ArmedExposure, det_id: int, index: int, counts: Counter[str]) -> None:
        ring = self.rings[writer_of(self.cfg, det_id)]
        seq = ring.reserve()
        into = ring.data(seq) if seq is not None else self._scratch
        info = self.camera.read_frame(det_id, index, into)
        if info is None:
            counts["missed"] += 1
        else:
            counts["read"] += 1
            counts["damaged"] += info.link_error
        if seq is None:
            counts["dropped"] += 1  # the writer is behind: counted, never waited for
            return
        flags = FLAG_MISSING if info is None else (FLAG_DAMAGED if info.link_error else 0)
        ring.publish(
            seq,
            kind=FRAME,
            exp_id=exp.exp_id,
            det_id=det_id,
            index=index,
            n_frames=exp.n_frames,
            counter=info.counter if info else -1,
            gps_ns=info.gps_ns if info else 0,
            flags=flags,
        )

    def report(self, exp: ArmedExposure, counts: dict[int, Counter[str]], too_late: bool = False) -> None:
        rows: list[dict[str, Any]] = []
        for c in self.chips:
            if c not in exp.chips:
                continue
            k = counts.get(c, Counter())
            missed = exp.n_frames if (too_late or c in self.unrecognised) else k["missed"]
            rows.append(
                {
                    "exp_id": exp.exp_id,
                    "det_id": c,
                    "readout": self.name,
                    "recognised": c in self.recognised,
                    "frames_read": k["read"],
                    "frames_missed": missed,
                    "frames_damaged": k["damaged"],
                    "frames_dropped": k["dropped"],
                }
            )
        catalog.record_readout_reports(self.engine, rows)
        dropped = sum(r["frames_dropped"] for r in rows)
        if dropped or too_late:
            why = (
                "it was already over when this readout saw it" if too_late else f"{dropped} frames dropped (ring full)"
            )
            record_event(
                self.engine,
                host=self.host,
                source=self.name,
                kind="frames_lost",
                subject=f"exp {exp.exp_id}",
                severity="error",
                message=f"exposure {exp.exp_id}: {why}",
                data={"dropped": dropped, "missed_whole": too_late},
            )

    def run(self, stop_after: int | None = None) -> None:
        self.announce()
        # Not what this readout already reported, nor what ended long before it started.
        last = max(catalog.last_reported(self.engine, self.name), _last_finished_exposure(self.engine))
        done = 0
        while stop_after is None or done < stop_after:
            pending = catalog.armed_after(self.engine, last)
            if not pending:
                time.sleep(POLL_S)
                continue
            for exp in pending:
                end_s = exp.start_at.timestamp() + exp.n_frames / exp.fps
                too_late = time.time() > end_s
                counts = {} if too_late else self.read_exposure(exp)
                self.report(exp, counts, too_late)
                last = exp.exp_id
                done += 1


def _last_finished_exposure(engine: Engine) -> int:
    """Start after exposures that ended a while before this readout started (nothing to read there)."""
    return catalog.last_ended_before(engine, utcnow() - timedelta(seconds=60))


def run_readout(cfg: Config, engine: Engine, index: int, host: str) -> None:
    pin("readout", cpu_sets(cfg)[0])
    exit_on_sigterm()
    readout = Readout(cfg, engine, index, host)
    try:
        readout.run()
    except CLEAN_STOP:
        release_rings(list(readout.rings.values()), readout.name)
        raise
