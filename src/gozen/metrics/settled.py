"""What can no longer change, summed once and kept in memory between scrapes, so that a scrape reads
only recent rows: the DAQ's per-chip sums of closed exposures, the copies out of the copy queue, the
files the archive took.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, case, func, select

from gozen.db.states import DaqFileState, ExportState, ExposureState, ReplicaState
from gozen.db.tables import (
    daq_files,
    exports,
    exposures,
    files,
    readout_reports,
    replicas,
)
from gozen.db.types import utcnow

# A closed exposure (every chip accounted for) that started this long ago has all its rows (a readout's
# report can come a moment after the files): its per-chip sums are kept in memory.
SETTLED_AFTER = timedelta(minutes=10)


OPEN = (ExposureState.QUEUED, ExposureState.ARMED)  # their rows are still to come


TAKEN = (ExportState.ACKNOWLEDGED, ExportState.NOT_SELECTED)  # the archive needs nothing more of these files


FILE_SUMS = {
    "files_written": ("gozen_daq_files_written", "FITS files written."),
    "files_lost": ("gozen_daq_files_lost", "Files that could not be made (no volume left)."),
    "size_bytes": ("gozen_daq_written_bytes", "Bytes of FITS files written."),
    "frames_expected": ("gozen_daq_frames_expected", "Frames the exposures asked for."),
    "frames_written": ("gozen_daq_frames_written", "Frames in the files (damaged included)."),
    "frames_missing": ("gozen_daq_frames_missing", "Frames absent from the files (any cause)."),
    "frames_damaged": ("gozen_daq_frames_damaged", "Frames in the files flagged damaged (link error)."),
}


REPORT_SUMS = {
    "frames_read": ("gozen_daq_frames_read", "Frames the camera delivered to the readout."),
    "frames_missed": ("gozen_daq_frames_missed", "Frames the camera did not deliver."),
    "frames_dropped": ("gozen_daq_frames_dropped", "Frames lost because the ring to the writer was full."),
    "reports": ("gozen_daq_chip_readouts", "Chip readouts (one per chip and exposure)."),
    "unrecognised": ("gozen_daq_chips_unrecognised", "Chip readouts where the chip did not answer at start."),
}


Sums = dict[tuple[str, str], dict[str, int]]  # (chip, host) -> column -> sum


def _state_counts(into: dict[str, int], rows: Iterable[Any]) -> dict[str, int]:
    """Counts kept in memory plus (state, count) rows."""
    out = dict(into)
    for state, n in rows:
        out[str(state)] = out.get(str(state), 0) + int(n)
    return out


def _file_sums(lo: int, hi: int | None) -> Any:
    f = daq_files.c
    q = select(
        f.det_id,
        f.daq_host,
        func.sum(case((f.state == DaqFileState.WRITTEN, 1), else_=0)).label("files_written"),
        func.sum(case((f.state == DaqFileState.WRITTEN, 0), else_=1)).label("files_lost"),
        *(func.sum(getattr(f, c)).label(c) for c in list(FILE_SUMS)[2:]),
    ).where(f.exp_id > lo)
    return (q if hi is None else q.where(f.exp_id <= hi)).group_by(f.det_id, f.daq_host)


def _report_sums(lo: int, hi: int | None) -> Any:
    r = readout_reports.c
    q = select(
        r.det_id,
        r.daq_host,
        func.sum(r.frames_read).label("frames_read"),
        func.sum(r.frames_missed).label("frames_missed"),
        func.sum(r.frames_dropped).label("frames_dropped"),
        func.count().label("reports"),
        func.sum(case((r.recognised.is_(False), 1), else_=0)).label("unrecognised"),
    ).where(r.exp_id > lo)
    return (q if hi is None else q.where(r.exp_id <= hi)).group_by(r.det_id, r.daq_host)


def _exposure_counts(lo: int, hi: int | None) -> Any:
    q = select(exposures.c.state, func.count()).where(exposures.c.exp_id > lo)
    return (q if hi is None else q.where(exposures.c.exp_id <= hi)).group_by(exposures.c.state)


def _add(sums: Sums, rows: Iterable[Any], columns: Iterable[str]) -> Sums:
    """New sums: `sums` plus the rows' (left as they were)."""
    out = {k: dict(v) for k, v in sums.items()}
    for row in rows:
        d = out.setdefault((str(row.det_id), row.daq_host or ""), {})  # no host: reported before hosts split
        for c in columns:
            d[c] = d.get(c, 0) + int(getattr(row, c) or 0)
    return out


@dataclass
class SettledDaq:
    """Per-chip sums of the exposures up to `upto` (exp_id), and their count per (closed) state: each
    closed, and started SETTLED_AFTER ago."""

    upto: int = 0
    states: dict[str, int] = field(default_factory=dict)
    files: Sums = field(default_factory=dict)
    reports: Sums = field(default_factory=dict)

    def advance(self, engine: Engine) -> None:
        cutoff, e = utcnow() - SETTLED_AFTER, exposures.c
        with engine.connect() as conn:
            hi = conn.execute(select(func.max(e.exp_id)).where(e.start_at < cutoff)).scalar()
            first_open = conn.execute(select(func.min(e.exp_id)).where(e.state.in_(OPEN))).scalar()
            if hi is not None and first_open is not None:
                hi = min(hi, first_open - 1)  # the sums stop short of the first exposure still open
            if hi is None or hi <= self.upto:
                return
            files = _add(self.files, conn.execute(_file_sums(self.upto, hi)), FILE_SUMS)
            reports = _add(self.reports, conn.execute(_report_sums(self.upto, hi)), REPORT_SUMS)
            states = _state_counts(self.states, conn.execute(_exposure_counts(self.upto, hi)))
        # all at once: a database gone half-way changes nothing (a sum added twice would stay wrong)
        self.files, self.reports, self.states, self.upto = files, reports, states, int(hi)

    def totals(self, engine: Engine) -> tuple[Sums, Sums, dict[str, int]]:
        """Per-chip file sums, per-chip readout sums and exposures per state: all of them, now."""
        self.advance(engine)
        with engine.connect() as conn:
            files = _add(self.files, conn.execute(_file_sums(self.upto, None)), FILE_SUMS)
            reports = _add(self.reports, conn.execute(_report_sums(self.upto, None)), REPORT_SUMS)
            states = _state_counts(self.states, conn.execute(_exposure_counts(self.upto, None)))
        return files, reports, states


def _copied_sums(lo: int, hi: int | None) -> Any:
    """Per node and state: no condition on the state, so that the planner walks the id range."""
    r = replicas.c
    q = select(r.node, r.state, func.count(), func.sum(files.c.size_bytes)).join(files, files.c.id == r.file_id)
    q = q.where(r.id >= lo)
    return (q if hi is None else q.where(r.id < hi)).group_by(r.node, r.state)


@dataclass
class SettledCopies:
    """Verified copies (files, bytes) per node among replicas below `upto` (replicas.id), each of
    which had left the copy queue when summed: a verified copy stays counted when retention expires it."""

    upto: int = 0
    sums: dict[str, tuple[int, int]] = field(default_factory=dict)

    def advance(self, engine: Engine) -> None:
        r = replicas.c
        pending = (ReplicaState.QUEUED, ReplicaState.COPYING, ReplicaState.COPIED)
        with engine.connect() as conn:
            # per state: so that the state index is used, not a walk along the ids
            firsts = conn.execute(select(func.min(r.id)).where(r.state.in_(pending)).group_by(r.state)).scalars()
            hi = min(firsts, default=None)
            if hi is None:
                top = conn.execute(select(func.max(r.id))).scalar()
                hi = None if top is None else int(top) + 1
            if hi is None or hi <= self.upto:
                return
            sums = _node_sums(self.sums, conn.execute(_copied_sums(self.upto, hi)))
        self.sums, self.upto = sums, int(hi)

    def totals(self, engine: Engine) -> dict[str, tuple[int, int]]:
        """(copies, bytes) verified on each node, ever: all of them, now."""
        self.advance(engine)
        with engine.connect() as conn:
            return _node_sums(self.sums, conn.execute(_copied_sums(self.upto, None)))


def _node_sums(into: dict[str, tuple[int, int]], rows: Iterable[Any]) -> dict[str, tuple[int, int]]:
    out = dict(into)
    for node, state, n, size in rows:
        if state not in (ReplicaState.VERIFIED, ReplicaState.EXPIRED):
            continue
        was = out.get(node or "", (0, 0))
        out[node or ""] = (was[0] + int(n), was[1] + int(size or 0))
    return out


@dataclass
class ArchiveMark:
    """files.id below which the archive had taken every file (taken is for good), and how many of
    those files are in each (final) export state."""

    low_id: int = 0
    below: dict[str, int] = field(default_factory=dict)

    def oldest_untaken(self, engine: Engine) -> datetime | None:
        taken = select(exports.c.file_id).where(exports.c.file_id == files.c.id, exports.c.state.in_(TAKEN)).exists()
        q = select(files.c.id, files.c.registered_at).where(files.c.id >= self.low_id, ~taken)
        with engine.connect() as conn:
            first = conn.execute(q.order_by(files.c.id).limit(1)).first()
            if first is None:
                top = conn.execute(select(func.max(files.c.id))).scalar()
                self._move(conn, self.low_id if top is None else int(top) + 1)
                return None
            self._move(conn, int(first.id))
        return first.registered_at  # type: ignore[no-any-return]

    def _move(self, conn: Connection, low_id: int) -> None:
        if low_id > self.low_id:
            below = _state_counts(self.below, conn.execute(_export_counts(self.low_id, low_id)))
            self.below, self.low_id = below, low_id

    def counts(self, engine: Engine) -> dict[str, int]:
        """Counted here, not grouped in SQL: a GROUP BY state makes SQLite walk the state index, all of it."""
        q = select(exports.c.state).where(exports.c.file_id >= self.low_id)
        with engine.connect() as conn:
            return _state_counts(self.below, Counter(conn.execute(q).scalars()).items())


def _export_counts(lo: int, hi: int | None) -> Any:
    q = select(exports.c.state, func.count()).where(exports.c.file_id >= lo)
    return (q if hi is None else q.where(exports.c.file_id < hi)).group_by(exports.c.state)
