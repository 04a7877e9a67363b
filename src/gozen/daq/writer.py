"""`daq:writer-NN`: turn each chip's frames from the rings into one FITS cube per exposure."""

from __future__ import annotations

import logging
import mmap
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from sqlalchemy import Engine

from gozen.config import Config
from gozen.daq import catalog
from gozen.daq.announce import Announcements
from gozen.daq.backlog import Backlog, DatabaseAway, DatabaseWatch, spool_path, tell
from gozen.daq.cube import CubeFile, CubeResult
from gozen.daq.flusher import Flusher
from gozen.daq.geometry import geometry
from gozen.daq.headers import (
    BLOCK,
    ExposureInfo,
    HeaderTemplate,
    bare,
    fitting,
    header_text_problems,
    padded,
    tomoe_filename,
)
from gozen.daq.layout import frame_bytes, ring_path, ring_slots, rings_of_writer
from gozen.daq.recovery import find_stale_parts, salvage
from gozen.daq.ring import BEGIN, END, FLAG_MISSING, FRAME, Ring, SlotMeta, release_rings
from gozen.daq.volumes import NoVolume, VolumeChooser, VolumeState
from gozen.db.events import Severity
from gozen.db.states import DaqFileState
from gozen.db.types import utcnow
from gozen.service import Context, is_outage, stop_on_signals

log = logging.getLogger(__name__)
# A ring slot that this many writer processes died on is skipped by the next one.
POISON_AFTER_CRASHES = 2
DB_AWAY_SLEEP_S = 0.5
IDLE_SLEEP_S = 0.002


class HeaderFailed(Exception):
    """No header could be made for an exposure, not even one without its doubtful values."""


class PoisonSlot(Exception):
    """A ring slot that writers died on while handling it."""


@dataclass
class OpenCube:
    cube: CubeFile
    exp: ExposureInfo
    det_id: int
    volume: VolumeState
    header_len: int
    deadline: float  # monotonic: close it incomplete after this
    kept: int | None = None  # its exposure was stopped: the frames it keeps (END said so)
    stop_reason: str = ""


@dataclass
class Writer:
    cfg: Config
    engine: Engine
    index: int
    host: str
    name: str = ""
    rings: list[Ring] = field(default_factory=list)
    open: dict[tuple[int, int], OpenCube] = field(default_factory=dict)
    closed: set[tuple[int, int]] = field(default_factory=set)
    exposures: dict[int, ExposureInfo] = field(default_factory=dict)
    templates: dict[int, HeaderTemplate] = field(default_factory=dict)
    flusher: Flusher = field(default_factory=Flusher)
    quarantined: int = 0
    repeated: int = 0  # frames a restarted readout sent again (the file has them already): skipped
    db_away: bool = False  # a ring slot waits for the database
    ctx: Context | None = None  # the program's; without one (tests, benches) a context of its own

    def __post_init__(self) -> None:
        self.name = f"daq:writer-{self.index + 1:02d}"
        self.context = self.ctx or Context(self.cfg, self.host, self.engine, self.name)
        self.db = DatabaseWatch(self.context)
        # File rows wait here (and in a spool file while the database is away); written once per loop.
        self.files = Backlog(
            spool_path(self.context, "files"), self.db, lambda rows: catalog.record_files(self.engine, rows)
        )
        self.volumes = VolumeChooser(self.cfg, self.host)
        self.announcements = Announcements()
        self.geometry = geometry(self.cfg.camera)
        self.pixels = frame_bytes(self.cfg) // 2
        self.scratch = huge_page_buffer(self.pixels * 2).view(np.uint16)
        self.fsync = self.cfg.daq.fsync == "file"
        self.remove_stale_parts()

    def attach(self, timeout_s: float | None = 120) -> bool:
        """Open the rings the readouts make, waiting for them (None: until stopped); False when stopped."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for r in rings_of_writer(self.cfg, self.host, self.index):
            path = ring_path(self.cfg, self.host, r, self.index)
            while True:
                try:
                    self.rings.append(
                        Ring.wait_open(path, ring_slots(self.cfg, self.host, r, self.index), frame_bytes(self.cfg), 1)
                    )
                    break
                except FileNotFoundError:
                    if deadline is not None and time.monotonic() > deadline:
                        raise
                    log.info("%s: waiting for %s (its readout makes it)", self.name, path)
                if self.context.stopping:
                    return False
        log.info("%s ready: attached to %d rings", self.name, len(self.rings))
        return True

    # -- events and records -------------------------------------------------
    def event(self, kind: str, subject: str, message: str, severity: Severity = "error", **data: Any) -> None:
        tell(self.context, kind, subject, message, severity, **data)

    @property
    def unrecorded(self) -> list[dict[str, Any]]:
        """File rows not written yet (besides those in the spool file)."""
        return self.files.rows

    def record(self, row: dict[str, Any]) -> None:
        """Queue the file's row; rows are inserted together once per loop (one commit, not one per file)."""
        self.files.add([{"created_at": utcnow(), **row}])

    def flush_records(self) -> None:
        """Insert the queued rows; while the database is away they wait in the spool (files are safe on disk)."""
        # A row the database refuses is set aside with the reason: retrying it would hold back the rest.
        for r in self.files.flush() or []:
            self.event(
                "file_row_refused",
                f"exp {r.row.get('exp_id')} det {r.row.get('det_id')}",
                f"the database refused the row of {r.row.get('filename')} ({r.why}); the file stays at "
                f"{r.row.get('path')} for transfer:push's scan of the DAQ volumes",
                exp_id=r.row.get("exp_id"),
                det_id=r.row.get("det_id"),
            )

    def remove_stale_parts(self) -> None:
        """Partial files of a writer that died: keep those that are whole, remove the rest and say so."""
        for stale in find_stale_parts(self.cfg, self.host, self.index, self.volumes.volumes):
            subject = f"exp {stale.exp_id} det {stale.det_id}"
            row = salvage(stale, self.cfg, self.host, self.name)
            if row is not None:
                self.record(row)
                self.closed.add((stale.exp_id, stale.det_id))
                self.event(
                    "partial_file_salvaged",
                    subject,
                    f"{row['filename']} was whole but unnamed when its writer stopped: named and recorded",
                    severity="warning",
                    exp_id=stale.exp_id,
                    det_id=stale.det_id,
                )
                continue
            size = stale.path.stat().st_size
            stale.path.unlink()
            self.event(
                "partial_file_removed",
                subject,
                f"removed {stale.path} ({size} bytes) left by a writer that stopped mid-file; "
                "its frames are counted missing",
                exp_id=stale.exp_id,
                det_id=stale.det_id,
                path=str(stale.path),
            )

    # -- files --------------------------------------------------------------
    def exposure(self, exp_id: int) -> ExposureInfo:
        """Known from its BEGIN slot; asked of the database only when that was not seen (this writer
        started after it was taken, or the readout could not announce it)."""
        if exp_id not in self.exposures:
            self.remember(self.db.call(partial(catalog.exposure_info, self.engine, exp_id)))
        return self.exposures[exp_id]

    def remember(self, exp: ExposureInfo) -> None:
        known = self.exposures.get(exp.exp_id)
        if known is not None and known.start_at != exp.start_at:  # armed anew: a new header
            self.templates.pop(exp.exp_id, None)
        self.exposures[exp.exp_id] = exp
        if len(self.exposures) > 64:
            self.exposures.pop(next(iter(self.exposures)))

    def template(self, exp: ExposureInfo) -> HeaderTemplate:
        if exp.exp_id not in self.templates:
            self.templates[exp.exp_id] = self.make_template(exp)
            if len(self.templates) > 8:
                self.templates.pop(next(iter(self.templates)))
        return self.templates[exp.exp_id]

    def make_template(self, exp: ExposureInfo) -> HeaderTemplate:
        """The exposure's header; if a value cannot go in one, the header with it made to fit, or without it."""
        why = "; ".join(header_text_problems(exp))
        if not why:
            try:
                return HeaderTemplate(self.cfg, exp, self.host)
            except Exception as err:  # astropy refuses a value: a header must never stop the DAQ
                why = f"{type(err).__name__}: {err}"
        for fallback, what in ((fitting(exp), "transliterated or cut"), (bare(exp), "dropped")):
            try:
                template = HeaderTemplate(self.cfg, fallback, self.host)
            except Exception as err:
                why += f"; with values {what}: {type(err).__name__}: {err}"
                continue
            self.event(
                "header_values_replaced",
                f"exp {exp.exp_id}",
                f"header values {what} ({why})"[:1000],
                severity="warning",
                exp_id=exp.exp_id,
            )
            return template
        raise HeaderFailed(f"no header could be made: {why}"[:1000])

    def open_cube(self, exp: ExposureInfo, det_id: int, volume: VolumeState | None = None) -> OpenCube:
        filename = tomoe_filename(det_id, exp.exp_id, exp.start_at, self.cfg.site.lon_deg)
        need = padded(self.pixels * 2 * exp.n_frames) + 40 * BLOCK
        if volume is None:
            volume, skipped = self.volumes.choose(need)
            for why in skipped:
                self.event("volume_skipped", volume.name, f"{filename}: skipped {why}", severity="warning")
        header = self.template(exp).render(det_id, volume.name, filename)
        day_dir = volume.path / filename[4:12]
        day_dir.mkdir(parents=True, exist_ok=True)
        cube = CubeFile(day_dir / filename, header, self.pixels, exp.n_frames, self.fsync)
        deadline = (
            time.monotonic()
            + max(0.0, exp.start_at.timestamp() + exp.n_frames / exp.fps - time.time())
            + self.cfg.daq.frame_timeout_s
        )
        return OpenCube(cube, exp, det_id, volume, len(header), deadline)

    def close(self, key: tuple[int, int]) -> None:
        """Finish the cube here; the flusher makes it durable and named, then poll() records it."""
        oc = self.open.pop(key)
        self.closed.add(key)
        for _ in range(len(self.volumes.volumes) + 1):
            try:
                if oc.kept is not None and oc.kept < oc.cube.n_frames:
                    header = self.template(oc.exp).cut_short(oc.cube.header, oc.kept, oc.stop_reason)
                    oc.cube.cut(oc.kept, header)
                res = oc.cube.finish(self.scratch)
                self.flusher.submit(oc.cube, (oc, res))
                return
            except OSError as err:
                try:
                    oc = self.move_to_another_volume(oc, err)
                except NoVolume as no_room:
                    oc.cube.abandon()
                    self.record_lost(oc.exp, oc.det_id, f"its volume failed ({err.strerror}) and {no_room}")
                    return
            except Exception as err:  # not the disk: the file cannot be finished, the writer goes on
                oc.cube.abandon()
                self.record_lost(oc.exp, oc.det_id, f"it could not be finished: {type(err).__name__}: {err}")
                return

    def collect_committed(self) -> None:
        for (oc, res), err in self.flusher.collect():
            if err is None:
                self.record_result(oc, oc.cube.committed(res))
                continue
            # fsync or rename failed: the volume went bad under a whole file; carry it elsewhere.
            key = (oc.exp.exp_id, oc.det_id)
            try:
                self.open[key] = self.move_to_another_volume(oc, err if isinstance(err, OSError) else OSError(str(err)))
            except NoVolume as no_room:
                oc.cube.abandon()
                self.record_lost(oc.exp, oc.det_id, f"it could not be made durable ({err}) and {no_room}")
                continue
            self.closed.discard(key)
            self.close(key)

    def record_result(self, oc: OpenCube, res: CubeResult) -> None:
        self.record(
            {
                "exp_id": oc.exp.exp_id,
                "det_id": oc.det_id,
                "state": DaqFileState.WRITTEN,
                "path": str(res.path),
                "filename": res.path.name,
                "daq_host": self.host,
                "daq_volume": oc.volume.name,
                "size_bytes": res.size_bytes,
                "checksum_xxh3": res.checksum_xxh3,
                # A cube cut short by a stop expects the frames it kept: those never read are not missing.
                "frames_expected": oc.cube.n_frames,
                "frames_written": res.frames_written,
                "frames_missing": res.frames_missing,
                "frames_damaged": res.frames_damaged,
                "naxis1": self.geometry.width,
                "naxis2": self.geometry.height,
                "naxis3": oc.cube.n_frames,
                "overscan_median": res.overscan_median,
                "overscan_noise": res.overscan_noise,
                "writer": self.name,
            }
        )

    def record_lost(self, exp: ExposureInfo, det_id: int, why: str, n_frames: int | None = None) -> None:
        """No file of the chip (`n_frames`: the frames it was to hold, when a stop cut it short)."""
        filename = tomoe_filename(det_id, exp.exp_id, exp.start_at, self.cfg.site.lon_deg)
        self.event("file_lost", f"exp {exp.exp_id} det {det_id}", f"{filename}: {why}")
        naxis = (self.geometry.width, self.geometry.height)
        frames = exp.n_frames if n_frames is None else n_frames
        self.record(catalog.lost_file_row(exp.exp_id, det_id, filename, self.host, self.name, frames, naxis))
        self.closed.add((exp.exp_id, det_id))

    def move_to_another_volume(self, oc: OpenCube, err: OSError) -> OpenCube:
        """The volume failed or filled under a file: carry what it holds to another volume."""
        self.volumes.mark_failed(oc.volume, err.strerror or str(err))
        self.event(
            "volume_failed", oc.volume.name, f"{oc.cube.final.name}: {err.strerror}; moving the file to another volume"
        )
        new = self.open_cube(oc.exp, oc.det_id)
        new.kept, new.stop_reason = oc.kept, oc.stop_reason
        frame_len = self.pixels * 2
        try:
            with open(oc.cube.part, "rb") as old:
                for i in range(oc.cube.next_index):
                    old.seek(oc.header_len + i * frame_len)
                    raw = old.read(frame_len)
                    row = oc.cube.rows[i]
                    if len(raw) == frame_len and not row["FLAGS"] & FLAG_MISSING:
                        new.cube.write_converted(
                            i,
                            np.frombuffer(raw, np.uint8),
                            self.scratch,
                            int(row["COUNTER"]),
                            float(row["GPSTIME"]),
                            int(row["FLAGS"]),
                            (float(row["OSMED"]), float(row["OSNOISE"])),
                        )
        except OSError as read_err:
            log.error("could not read back %s: %s; those frames are counted missing", oc.cube.part, read_err)
        oc.cube.abandon()
        return new

    # -- the loop -----------------------------------------------------------
    def handle(self, meta: SlotMeta, ring: Ring) -> None:
        if meta.kind == BEGIN:
            exp = self.announcements.take(ring, meta)
            if exp is not None:
                self.remember(exp)
            return
        key = (meta.exp_id, meta.det_id)
        if key in self.closed:
            return  # a late frame or END for a file already closed on its timeout
        if meta.kind == END:
            self.end(meta, ring)
            return
        if meta.kind != FRAME:
            return
        if key not in self.open:
            exp = self.exposure(meta.exp_id)
            try:
                self.open[key] = self.open_cube(exp, meta.det_id)
            except NoVolume as err:
                self.record_lost(exp, meta.det_id, f"no DAQ volume can take it: {err}")
                return
        oc = self.open[key]
        if meta.index < oc.cube.next_index:  # a restarted readout sent it again: the file has it
            self.repeated += 1
            log.debug("%s: exp %d det %d frame %d again, skipped", self.name, meta.exp_id, meta.det_id, meta.index)
            return
        for _attempt in range(len(self.volumes.volumes) + 1):
            try:
                self.write(oc, meta, ring)
                break
            except OSError as err:
                try:
                    oc = self.open[key] = self.move_to_another_volume(oc, err)
                except NoVolume as no_room:
                    del self.open[key]
                    oc.cube.abandon()
                    self.record_lost(oc.exp, oc.det_id, f"its volume failed ({err.strerror}) and {no_room}")
                    return
        if oc.cube.complete:
            self.close(key)

    def end(self, meta: SlotMeta, ring: Ring) -> None:
        """The readout's END: close the file. An END of fewer frames than the cube's says the exposure
        was stopped (the reason in its payload): the cube keeps that many."""
        key = (meta.exp_id, meta.det_id)
        oc = self.open.get(key)
        if meta.n_frames == 0:  # stopped before its first frame: no file (nor a lost one)
            if oc is not None:
                del self.open[key]
                oc.cube.abandon()
            self.closed.add(key)
            return
        if oc is None:
            why = "no frame of it reached the writer"
            self.record_lost(self.exposure(meta.exp_id), meta.det_id, why, meta.n_frames)
            return
        if meta.n_frames < oc.cube.n_frames:
            oc.kept, oc.stop_reason = meta.n_frames, ring.payload(meta).decode("utf-8", "replace")
        self.close(key)

    def write(self, oc: OpenCube, meta: SlotMeta, ring: Ring) -> None:
        pixels = None if meta.flags & FLAG_MISSING else ring.data(meta.seq)
        rest = (meta.counter, meta.gps_ns / 1e9, meta.flags, (meta.os_median, meta.os_noise))
        if pixels is not None and meta.fits_order:  # converted by the readout: written from the ring as it is
            oc.cube.write_converted(meta.index, pixels, self.scratch, *rest)
        else:
            oc.cube.write_frame(meta.index, pixels, self.scratch, *rest)

    def expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, oc in self.open.items() if oc.deadline < now]:
            self.event(
                "exposure_timeout",
                f"exp {key[0]} det {key[1]}",
                "frames stopped coming: closing the file with the rest flagged missing",
                severity="warning",
            )
            self.close(key)
        if len(self.closed) > 10000:
            self.closed = set(sorted(self.closed)[-5000:])

    def take(self, meta: SlotMeta, ring: Ring) -> bool:
        """Handle one slot and release it, whatever happens; False (slot kept) only while the database is away."""
        crashes = ring.begin(meta.seq) - 1
        if crashes >= POISON_AFTER_CRASHES:
            self.quarantine(meta, PoisonSlot(f"{crashes} writer processes stopped while handling it"))
        else:
            try:
                self.handle(meta, ring)
            except Exception as err:
                if isinstance(err, DatabaseAway) or is_outage(err):  # the exposure is not known yet
                    if not self.db_away:
                        log.error("database away, ring slot %d waits for it: %s", meta.seq, err)
                    self.db_away = True
                    return False
                # one bad slot must not stop the writer (nor crash-loop it)
                log.exception("ring slot %d (exp %d det %d) failed", meta.seq, meta.exp_id, meta.det_id)
                self.quarantine(meta, err)
        self.db_away = False
        ring.release()
        return True

    def quarantine(self, meta: SlotMeta, err: Exception) -> None:
        """Skip a slot that cannot be handled: its frame (or, if its file never opened, the file) is lost."""
        key = (meta.exp_id, meta.det_id)
        why = f"{type(err).__name__}: {err}"[:1000]
        self.quarantined += 1
        if meta.kind == BEGIN:  # nothing is lost with it: the exposure is asked of the database instead
            self.event(
                "ring_slot_quarantined",
                f"exp {meta.exp_id}",
                f"ring slot {meta.seq} (the exposure's announcement) skipped, its files' header is asked of "
                f"the database: {why}",
                severity="warning",
                exp_id=meta.exp_id,
                reason=why,
            )
            return
        what = "frame" if meta.kind == FRAME else "end-of-exposure mark" if meta.kind == END else "slot"
        lost = "its frame is counted missing" if key in self.open else "its file is lost"
        self.event(
            "ring_slot_quarantined",
            f"exp {meta.exp_id} det {meta.det_id}",
            f"ring slot {meta.seq} ({what} {meta.index}) skipped, {lost}: {why}",
            exp_id=meta.exp_id,
            det_id=meta.det_id,
            frame=meta.index,
            reason=why,
        )
        if key in self.open or key in self.closed:
            return  # an open file flags the frame missing when it closes
        try:
            exp = self.exposure(meta.exp_id)
            self.record_lost(exp, meta.det_id, f"a ring slot of it could not be handled: {why}")
        except Exception as no_record:  # nothing known to record it by: the event is its record
            log.error("exp %d det %d: no file row recorded for it: %s", meta.exp_id, meta.det_id, no_record)
            self.closed.add(key)

    def poll(self) -> int:
        """Handle what the rings hold; returns how many slots it took."""
        n = 0
        for ring in self.rings:
            for _ in range(ring.n_slots):
                meta = ring.peek()
                if meta is None or not self.take(meta, ring):
                    break
                n += 1
        self.expire()
        self.collect_committed()
        self.flush_records()
        return n

    def run(self) -> None:
        """Until stopped: drain the rings. A stop finishes the slot in hand and the files already closed."""
        if not self.attach(timeout_s=None):
            return
        failing = self.context.trouble("pass_failed", "pass_ok", self.name)
        while not self.context.stopping:
            try:
                n = self.poll()
            except Exception as err:  # not one slot's fault (those are quarantined): tell once, go on
                log.exception("%s: loop failed", self.name)
                failing.failing(f"{type(err).__name__}: {err}"[:1000])
                self.context.sleep(DB_AWAY_SLEEP_S)
                continue
            if failing.active:
                failing.ok("the writer's loop runs again")
            self.db.heartbeat(DB_AWAY_SLEEP_S)
            if n == 0:
                self.context.sleep(DB_AWAY_SLEEP_S if self.db_away else IDLE_SLEEP_S)
        self.stop_cleanly()

    def stop_cleanly(self) -> None:
        """Record the files already finished (or spool their rows), then let go of the rings."""
        try:
            self.flusher.wait()
            self.collect_committed()
            self.flush_records()
        except Exception:
            log.exception("%s: could not record every finished file before stopping", self.name)
        release_rings(self.rings, self.name)
        self.rings = []


def huge_page_buffer(nbytes: int) -> np.ndarray:
    """A zeroed, pre-faulted buffer, on transparent huge pages where the kernel allows (fewer TLB misses)."""
    mm = mmap.mmap(-1, nbytes)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            mm.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
    buf = np.frombuffer(mm, np.uint8)
    buf.fill(0)
    return buf


def main(ctx: Context) -> None:
    """`daq:writer-NN` (args: index, from 0): SIGTERM finishes the slot in hand and the closed files."""
    from gozen.daq.cpus import cpu_sets, pin

    stop_on_signals(ctx)
    pin("writer", cpu_sets(ctx.cfg)[1])
    Writer(ctx.cfg, ctx.engine, int(ctx.args["index"]), ctx.host, ctx=ctx).run()
