"""`daq:readout-NN`: read a set of chips into the rings, never blocking on a slow writer nor on the database."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gozen.config import Config
from gozen.daq import announce, catalog
from gozen.daq.backlog import Backlog, DatabaseAway, DatabaseWatch, spool_path, tell
from gozen.daq.catalog import ArmedExposure
from gozen.daq.cpus import cpu_sets, pin
from gozen.daq.cube import to_fits_order
from gozen.daq.geometry import geometry
from gozen.daq.headers import ExposureInfo
from gozen.daq.layout import frame_bytes, readout_chips, ring_path, ring_slots, writer_of
from gozen.daq.ring import END, FLAG_DAMAGED, FLAG_MISSING, FRAME, Ring, release_rings
from gozen.db.types import utcnow
from gozen.devices.camera import Camera, ExposureSpec
from gozen.devices.factory import camera_from_config
from gozen.monitors.board import Reading, publish
from gozen.service import Context, stop_on_signals

log = logging.getLogger(__name__)
POLL_S = 0.05
# A frame read out longer ago than this when the readout comes to its exposure is gone (the grabber
# keeps a few seconds; a readout restarted mid-exposure must not invent the frames it missed). No more
# than LATE_START_RING of the ring either: the frames still there are read in one burst, which must fit.
LATE_START_S = 3.0
LATE_START_RING = 0.75
# How often the look-out thread puts the ring fill and frame rate on the status board.
RATES_EVERY_S = 5.0
# How often the look-out asks whether the exposure in hand was asked to stop, in frames (at most
# STOP_POLL_S): a stop must be seen before the first frame past it is read out, a frame later.
STOP_POLL_FRAMES = 0.4
STOP_POLL_S = 0.5


class Readout:
    def __init__(
        self,
        cfg: Config,
        engine: Engine,
        index: int,
        host: str,
        camera: Camera | None = None,
        ctx: Context | None = None,
    ) -> None:
        self.cfg, self.engine, self.index, self.host = cfg, engine, index, host
        self.name = f"daq:readout-{index + 1:02d}"
        self.ctx = ctx or Context(cfg, host, engine, self.name)
        self.db = DatabaseWatch(self.ctx)
        # Reports wait here (and in a spool file while the database is away).
        self.reports = Backlog(
            spool_path(self.ctx, "reports"), self.db, lambda rows: catalog.record_readout_reports(engine, rows)
        )
        self.chips = readout_chips(cfg, host, index)
        self.camera = camera or camera_from_config(cfg, index)
        self.recognised = self.camera.open(self.chips)
        self.unrecognised = [c for c in self.chips if c not in self.recognised]
        self.rings: dict[int, Ring] = {}
        for w in sorted({writer_of(cfg, host, c) for c in self.chips}):
            ring = Ring.create_or_open(
                ring_path(cfg, host, index, w), ring_slots(cfg, host, index, w), frame_bytes(cfg)
            )
            ring.prefault()
            self.rings[w] = ring
        self._scratch = np.empty(frame_bytes(cfg) // 2, np.uint16)
        self.geometry = geometry(cfg.camera)
        self.feed: ArmedFeed | None = None  # while running
        # The exposure in hand and the frames it keeps: the frame loop compares `cut` alone; the
        # look-out lowers it when the exposure is asked to stop (stop_reading).
        self.reading: ArmedExposure | None = None
        self.cut = 0
        self.stop_reason = ""
        self._cut_lock = threading.Lock()
        self.kept: dict[int, int] = {}  # exposure -> frames it kept, as read (for its report)
        self.handled: dict[int, datetime] = {}  # exposure -> the start it was read (or reported) for
        self.rates = Rates(self)
        for c in self.unrecognised:
            why = self.camera.unrecognised_reason(c)
            tell(self.ctx, "chip_unrecognised", f"det {c}", f"chip {c}: {why}; its frames are lost")

    def announce(self) -> None:
        log.info("%s ready: chips %s, %d rings", self.name, self.recognised, len(self.rings))

    def read_exposure(self, exp: ArmedExposure, info: ExposureInfo | None = None) -> dict[int, Counter[str]]:
        """Read every frame of the exposure for our chips, announced first in each ring (`info`: the
        exposure as the writers' headers need it; None: asked of the database here); per-chip counts.

        A stop of this program ends it after the frame in hand: the frames not read are counted
        missed. A stop of the exposure (catalog.stop_exposure) ends it before the first frame that
        began after the stop, on every DAQ host alike: the frames past it are not read, nor missed.
        """
        chips = [c for c in self.recognised if c in exp.chips]
        counts: dict[int, Counter[str]] = {c: Counter() for c in chips}
        with self._cut_lock:
            self.reading, self.cut, self.stop_reason = exp, exp.frames_kept, exp.stop_reason or ""
        try:
            if self.cut > 0:
                self.read_frames(exp, chips, counts, info)
        finally:
            with self._cut_lock:
                self.reading = None
                self.kept[exp.exp_id] = self.cut
                if len(self.kept) > 256:
                    self.kept.pop(next(iter(self.kept)))
        return counts

    def read_frames(
        self, exp: ArmedExposure, chips: list[int], counts: dict[int, Counter[str]], info: ExposureInfo | None
    ) -> None:
        self.announce_in_rings(exp, chips, info if info is not None else self.exposure_info(exp))
        start_ns = int(exp.start_at.timestamp() * 1e9)
        self.camera.start_exposure(ExposureSpec(exp.exp_id, exp.n_frames, exp.fps, start_ns, exp.ra_deg, exp.dec_deg))
        # A readout that starts (or restarts) mid-exposure finds the frames read out before it gone.
        first = min(self.first_readable(exp), self.cut)
        if first:
            for c in chips:
                counts[c]["missed"] += first
            tell(
                self.ctx,
                "frames_lost",
                f"exp {exp.exp_id}",
                f"exposure {exp.exp_id}: this readout started {first} frames into it; those frames of chips "
                f"{chips} are counted missing",
                missed=first * len(chips),
                late_start=True,
            )
        for i in range(first, exp.n_frames):
            if i >= self.cut:  # the exposure was stopped: frame i began after the stop
                break
            if self.ctx.stopping:
                for c in chips:
                    counts[c]["missed"] += max(0, self.cut - i)
                break
            self.camera.wait_frame(i)
            if i >= self.cut:  # stopped while frame i was being exposed
                break
            for c in chips:
                self.read_one(exp, c, i, counts[c])
            for det_id, err in self.camera.take_faults().items():
                tell(
                    self.ctx,
                    "camera_fault",
                    f"det {det_id}",
                    f"exposure {exp.exp_id}: {err}; its frames are missed",
                    det_id=det_id,
                    exp_id=exp.exp_id,
                )
        self.end_in_rings(exp, chips)

    def end_in_rings(self, exp: ArmedExposure, chips: list[int]) -> None:
        """END lets the writer close at once (if the ring is full it closes on its timeout). The END of
        an exposure cut short says how many frames it kept and carries the reason of the stop."""
        kept = self.cut
        reason = self.stop_reason.encode("utf-8", "replace")[:1000] if kept < exp.n_frames else b""
        for c in chips:
            ring = self.rings[writer_of(self.cfg, self.host, c)]
            if kept < exp.n_frames:
                ring.publish_bytes(END, reason, exp_id=exp.exp_id, det_id=c, n_frames=kept)
                continue
            seq = ring.reserve()
            if seq is not None:
                ring.publish(seq, kind=END, exp_id=exp.exp_id, det_id=c, n_frames=exp.n_frames)

    def stop_reading(self, exp_id: int, stop_at: datetime, why: str | None) -> None:
        """The exposure in hand was asked to stop (seen by the look-out): read no frame that began after it."""
        with self._cut_lock:
            exp = self.reading
            if exp is None or exp.exp_id != exp_id:
                return  # over already
            cut = catalog.frames_kept(exp.n_frames, exp.fps, exp.start_at, stop_at)
            if cut < self.cut:
                self.cut, self.stop_reason = cut, why or ""
                log.info(
                    "%s: exposure %d stopped: %d of %d frames kept (%s)", self.name, exp_id, cut, exp.n_frames, why
                )

    def exposure_info(self, exp: ArmedExposure) -> ExposureInfo | None:
        """The exposure for its announcement, when the caller did not bring it (None: the database is away)."""
        try:
            info = self.db.call(partial(catalog.exposure_info, self.engine, exp.exp_id))
        except (SQLAlchemyError, DatabaseAway) as err:
            log.warning("%s: exposure %d not announced (%s): its writers ask the database", self.name, exp.exp_id, err)
            return None
        return info if info.start_at == exp.start_at else None  # armed anew meanwhile

    def announce_in_rings(self, exp: ArmedExposure, chips: list[int], info: ExposureInfo | None) -> None:
        """A BEGIN slot before the exposure's frames in each ring that will carry some."""
        if info is None:
            return
        for w in sorted({writer_of(self.cfg, self.host, c) for c in chips}):
            if not announce.announce(self.rings[w], info):
                log.warning(
                    "%s: exposure %d not announced to writer %d (ring full): it asks the database",
                    self.name,
                    exp.exp_id,
                    w + 1,
                )

    def first_readable(self, exp: ArmedExposure) -> int:
        """The first frame not yet gone: those read out longer than LATE_START_S ago (or than
        LATE_START_RING of daq.ring_seconds) are; a readout reading on time is at most a frame behind."""
        kept_s = min(LATE_START_S, LATE_START_RING * self.cfg.daq.ring_seconds)
        late_s = time.time() - exp.start_at.timestamp() - kept_s
        return min(exp.n_frames, max(0, math.floor(late_s * exp.fps)))

    def read_one(self, exp: ArmedExposure, det_id: int, index: int, counts: Counter[str]) -> None:
        w = writer_of(self.cfg, self.host, det_id)
        ring = self.rings[w]
        seq = ring.reserve()
        self.rates.saw_fill(w, ring.fill())
        into = ring.data(seq) if seq is not None else self._scratch
        info = self.camera.read_frame(det_id, index, into)
        if info is None:
            counts["missed"] += 1
        else:
            counts["read"] += 1
            counts["damaged"] += info.link_error
            self.rates.frames += 1
        if seq is None:
            counts["dropped"] += 1  # the writer is behind: counted, never waited for
            return
        overscan = (math.nan, math.nan)
        if info is not None:
            overscan = self.geometry.overscan_stats(into)  # on the native pixels, before the conversion
            # Converted here, on the readout's CPU (it has room), so the writer writes the ring's memory as it
            # is: `bench/daq_bench.py --readout full` showed the writers' core at 49 % before, 40 % after
            # (the readout's 12 % -> 24 %).
            to_fits_order(into)
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
            fits_order=1,
            os_median=overscan[0],
            os_noise=overscan[1],
        )

    def report(self, exp: ArmedExposure, counts: dict[int, Counter[str]], too_late: bool = False) -> None:
        """Record what this readout saw of each chip (kept in the spool while the database is away)."""
        rows: list[dict[str, Any]] = []
        kept = self.kept.get(exp.exp_id, exp.frames_kept)  # a stop's uncut frames are not missed
        for c in self.chips:
            if c not in exp.chips:
                continue
            k = counts.get(c, Counter())
            missed = kept if (too_late or c in self.unrecognised) else min(k["missed"], kept)
            # A stop seen late: frames past it were read, and the writer dropped them; the report is of those kept.
            read = min(k["read"], kept - missed)
            rows.append(
                {
                    "exp_id": exp.exp_id,
                    "det_id": c,
                    "readout": self.name,
                    "daq_host": self.host,
                    "recognised": c in self.recognised,
                    "frames_read": read,
                    "frames_missed": missed,
                    "frames_damaged": k["damaged"],
                    "frames_dropped": k["dropped"],
                    "created_at": utcnow(),
                }
            )
        self.reports.add(rows)
        self.reports.flush()
        dropped = sum(r["frames_dropped"] for r in rows)
        if dropped or too_late:
            why = (
                "it was already over when this readout saw it" if too_late else f"{dropped} frames dropped (ring full)"
            )
            tell(
                self.ctx,
                "frames_lost",
                f"exp {exp.exp_id}",
                f"exposure {exp.exp_id}: {why}",
                dropped=dropped,
                missed_whole=too_late,
            )

    def run(self) -> None:
        """Until stopped: read each armed exposure as it comes, learnt by a thread of its own (ArmedFeed)."""
        self.announce()
        self.feed = feed = ArmedFeed(self)
        feed.start()
        failing = self.ctx.trouble("pass_failed", "pass_ok", self.name)
        while not self.ctx.stopping:
            try:
                exp, info = feed.exposures.get(timeout=POLL_S)
            except queue.Empty:
                self.reports.flush()  # what waited for the database
                continue
            if self.handled.get(exp.exp_id) == exp.start_at:
                continue  # seen again after the look-out went back for a requeued exposure
            self.handled[exp.exp_id] = exp.start_at
            if len(self.handled) > 256:
                self.handled.pop(next(iter(self.handled)))
            try:
                kept = exp.frames_kept  # a stopped exposure is over after its last kept frame
                too_late = kept > 0 and time.time() > exp.start_at.timestamp() + kept / exp.fps
                if too_late and self.requeued(exp):
                    feed.rewind(exp.exp_id)  # to read it when it is armed anew
                    continue
                self.report(exp, {} if too_late else self.read_exposure(exp, info), too_late)
            except Exception as err:  # one exposure's fault: tell once, read the next
                log.exception("%s: exposure %d failed", self.name, exp.exp_id)
                failing.failing(f"exposure {exp.exp_id}: {type(err).__name__}: {err}"[:1000])
                continue
            if failing.active:
                failing.ok("exposures are read again")
        feed.join(timeout=10)
        release_rings(list(self.rings.values()), self.name)

    def requeued(self, exp: ArmedExposure) -> bool:
        """An exposure this readout saw only after it was over because the database was away (armed
        just before it went): queued again if no chip of it was read. Missed for another reason (this
        readout was not running), it is reported missed as it is."""
        end = exp.start_at + timedelta(seconds=exp.n_frames / exp.fps)
        if not self.db.was_away_during(exp.start_at, end):
            return False
        try:
            missed = self.db.call(partial(catalog.requeue_missed, self.engine, exp.exp_id, exp.start_at))
        except (SQLAlchemyError, DatabaseAway):
            return False  # it is reported missed (and the report kept until the database answers)
        if missed == catalog.Missed.REQUEUED:
            tell(
                self.ctx,
                "exposure_requeued",
                f"exp {exp.exp_id}",
                f"exposure {exp.exp_id} was armed to start at {exp.start_at.isoformat()} but was over before "
                "any readout could see it (the database was away): queued again, to be armed anew",
                "warning",
            )
        return missed != catalog.Missed.KEPT


class ArmedFeed(threading.Thread):
    """The readout's look-out for armed exposures: it asks the database while the readout reads,
    so the next exposure is known before this one ends, and an outage that begins then loses
    nothing already armed."""

    def __init__(self, readout: Readout) -> None:
        super().__init__(name=f"{readout.name}-feed", daemon=True)
        self.readout = readout
        self.exposures: queue.Queue[tuple[ArmedExposure, ExposureInfo | None]] = queue.Queue()
        self.last: int | None = None  # the newest exposure it has queued (None: not asked yet)
        self._lock = threading.Lock()
        self.next_stop_check = 0.0  # monotonic

    def rewind(self, exp_id: int) -> None:
        """Look again from this exposure on (it was queued again, to be armed anew)."""
        with self._lock:
            if self.last is not None:
                self.last = min(self.last, exp_id - 1)

    def run(self) -> None:
        r = self.readout
        while not r.ctx.stopping:
            r.rates.publish_when_due()
            try:
                self.watch_stop()
                if self.last is None:
                    self.last = r.db.call(self.start_after)
                since = self.last
                armed = r.db.call(partial(catalog.armed_after, r.engine, since))
                infos = [r.db.call(partial(catalog.exposure_info, r.engine, exp.exp_id)) for exp in armed]
                with self._lock:
                    if self.last == since:  # not rewound meanwhile
                        for exp, info in zip(armed, infos, strict=True):
                            self.exposures.put((exp, info if info.start_at == exp.start_at else None))
                            self.last = exp.exp_id
                r.db.heartbeat(POLL_S)
            except (SQLAlchemyError, DatabaseAway):
                pass  # noted by the watch; what is armed already is in the queue
            except Exception as err:  # not the database: the loop goes on, the log has it
                log.exception("%s: looking for armed exposures failed: %s", r.name, err)
            r.ctx.sleep(POLL_S)

    def watch_stop(self) -> None:
        """Ask, every STOP_POLL_FRAMES frames, whether the exposure the readout reads was asked to stop
        (one small query; the frame loop itself only compares a frame index)."""
        r = self.readout
        exp = r.reading
        now = time.monotonic()
        if exp is None or exp.stop_at is not None or r.cut < exp.n_frames or now < self.next_stop_check:
            return
        self.next_stop_check = now + min(STOP_POLL_S, STOP_POLL_FRAMES / exp.fps)
        stop_at, why = r.db.call(partial(catalog.stop_of, r.engine, exp.exp_id))
        if stop_at is not None:
            r.stop_reading(exp.exp_id, stop_at, why)

    def start_after(self) -> int:
        """Not what this readout already reported (in the database or its spool), nor what ended
        long before it started (nothing to read there)."""
        r = self.readout
        spooled = max((int(row["exp_id"]) for row in r.reports.read_spool()), default=0)
        ended = catalog.last_ended_before(r.engine, utcnow() - timedelta(seconds=60))
        return max(catalog.last_reported(r.engine, r.name, r.host), ended, spooled)


class Rates:
    """What the readout puts on the status board every RATES_EVERY_S: frames read per second and the
    fullest each ring was (`daq.<host>.readout-NN.frames_per_s`, `daq.<host>.ring.rNNwMM.fill_pct`).
    The frame loop only counts; the look-out thread publishes, without history (the DAQ page shows
    the current values; drops are in the readout reports)."""

    def __init__(self, readout: Readout) -> None:
        self.readout = readout
        self.frames = 0
        self.peak: dict[int, int] = {}  # writer -> most slots in use since the last publish
        self.since = time.monotonic()

    def saw_fill(self, writer: int, fill: int) -> None:
        if fill > self.peak.get(writer, 0):
            self.peak[writer] = fill

    def publish_when_due(self) -> None:
        r = self.readout
        span_s = time.monotonic() - self.since
        if span_s < RATES_EVERY_S:
            return
        frames, peak = self.frames, self.peak
        self.frames, self.peak, self.since = 0, {}, time.monotonic()
        n = f"{r.index + 1:02d}"
        max_age_s = 3 * RATES_EVERY_S
        readings = [Reading(f"daq.{r.host}.readout-{n}.frames_per_s", round(frames / span_s, 2), "1/s", max_age_s)]
        for w, ring in r.rings.items():
            pct = 100 * max(peak.get(w, 0), ring.fill()) / ring.n_slots
            readings.append(Reading(f"daq.{r.host}.ring.r{n}w{w + 1:02d}.fill_pct", round(pct, 1), "%", max_age_s))
        try:
            r.db.call(partial(publish, r.engine, r.name, readings, history=False), wrote=True)
        except (SQLAlchemyError, DatabaseAway):
            pass  # a stale value on the board is the truth: this readout cannot reach the database


def main(ctx: Context) -> None:
    """`daq:readout-NN` (args: index, from 0): SIGTERM finishes the frame in hand, then lets go of the rings."""
    stop_on_signals(ctx)
    pin("readout", cpu_sets(ctx.cfg)[0])
    Readout(ctx.cfg, ctx.engine, int(ctx.args["index"]), ctx.host, ctx=ctx).run()
