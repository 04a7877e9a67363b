"""The DAQ's tables (exposures, daq_files, readout_reports): every query on them is here."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, Row, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError, StatementError

from gozen.daq.cardtext import card_text_problem
from gozen.daq.headers import ExposureInfo
from gozen.daq.snapshot import StatusSnapshot
from gozen.db.states import DaqFileState, ExposureState
from gozen.db.tables import daq_files, exposures, readout_reports
from gozen.db.types import utcnow

DATA_TYPES = ("OBJECT", "FLAT", "DARK")
# The writer of the rows daq:control records for chips whose file no DAQ host recorded by the deadline.
CONTROL_WRITER = "daq:control"
# Exposures a readout reads: armed, or closed already by the time it looks (it still reports them).
READ_STATES = (ExposureState.ARMED, ExposureState.DONE, ExposureState.INCOMPLETE)
# Fields that become FITS header strings: (field, the name a person knows it by).
HEADER_TEXT = (
    ("object", "object"),
    ("obs_mode", "obs_mode"),
    ("filter", "filter"),
    ("project", "project"),
    ("observer", "observer"),
    ("recipe_name", "recipe name"),
)


@dataclass(frozen=True)
class ExposureRequest:
    object: str
    n_frames: int
    fps: float
    data_type: str = "OBJECT"
    obs_mode: str = "high-cadence"
    filter: str = "none"
    project: str = "survey"
    observer: str = "gozen"
    ra_deg: float | None = None
    dec_deg: float | None = None
    recipe_uuid: str | None = None
    recipe_name: str | None = None

    def __post_init__(self) -> None:
        if self.data_type not in DATA_TYPES:
            raise ValueError(f"data type {self.data_type!r}: must be one of {', '.join(DATA_TYPES)}")
        if self.n_frames < 1:
            raise ValueError(f"frames: must be >= 1, got {self.n_frames}")
        if self.fps <= 0:
            raise ValueError(f"fps: must be > 0, got {self.fps}")
        for attr, label in HEADER_TEXT:
            value = getattr(self, attr)
            problem = card_text_problem(value) if value is not None else None
            if problem is not None:
                raise ValueError(f"{label}: {problem}")


def frames_kept(n_frames: int, fps: float, start_at: datetime | None, stop_at: datetime | None) -> int:
    """The frames an exposure keeps when asked to stop at `stop_at`: those that began before it.

    The first frame that starts at or after the stop is not read. The same number on every DAQ
    host (the frames are GPS-stamped from start_at), so every chip's cube ends at the same frame.
    """
    if stop_at is None:
        return n_frames
    if start_at is None:
        return 0
    since_start_us = (stop_at - start_at) // timedelta(microseconds=1)
    return max(0, min(n_frames, math.ceil(since_start_us * fps / 1e6)))


@dataclass(frozen=True)
class ArmedExposure:
    exp_id: int
    n_frames: int
    fps: float
    start_at: datetime
    chips: list[int]
    ra_deg: float
    dec_deg: float
    stop_at: datetime | None = None  # asked to stop early (catalog.stop_exposure)
    stop_reason: str | None = None

    @property
    def frames_kept(self) -> int:
        """n_frames, or fewer when it was asked to stop (as far as known when it was read)."""
        return frames_kept(self.n_frames, self.fps, self.start_at, self.stop_at)


def request_exposures(engine: Engine, req: ExposureRequest, count: int) -> list[int]:
    with engine.begin() as conn:
        return insert_exposures(conn, req, count)


def insert_exposures(conn: Connection, req: ExposureRequest, count: int) -> list[int]:
    """Queue exposures inside the caller's transaction (so it can note their ids in the same one)."""
    now = utcnow()
    row = {k: getattr(req, k) for k in ExposureRequest.__dataclass_fields__}
    return [
        int(
            conn.execute(
                insert(exposures).values(state=ExposureState.QUEUED, requested_at=now, **row)
            ).inserted_primary_key[0]  # type: ignore[index]
        )
        for _ in range(count)
    ]


@dataclass(frozen=True)
class ExposureOutcome:
    """Where an exposure stands, as the queue server waits on it."""

    state: ExposureState | None  # None: no such exposure
    start_at: datetime | None  # set when daq:control armed it
    files_written: int
    files_lost: int
    daq_busy: bool  # another exposure is armed: this one may be waiting its turn
    # A stop (stop_exposure) cut it short: done with fewer frames, or failed before its first frame.
    # False for a stop that came after its last frame began (nothing was cut).
    stopped: bool = False
    stop_reason: str | None = None  # why it was asked to stop, whether or not it cut anything
    frames_kept: int | None = None  # frames per chip it ends with (known once armed, or stopped while queued)

    def why_no_file(self) -> str:
        if self.stopped and self.frames_kept == 0:
            return f"no file written: stopped before it started ({self.stop_reason})"
        return f"no file written ({self.files_lost} recorded lost; see the events of daq:writer-*)"


def exposure_outcome(engine: Engine, exp_id: int) -> ExposureOutcome:
    """The exposure's state and files. `stopped` tells an exposure cut short by stop_exposure (state
    done, fewer frames) or stopped before it started (state failed, no file) from one that ran in full."""
    with engine.connect() as conn:
        row = conn.execute(
            select(
                exposures.c.state,
                exposures.c.start_at,
                exposures.c.n_frames,
                exposures.c.fps,
                exposures.c.stop_at,
                exposures.c.stop_reason,
            ).where(exposures.c.exp_id == exp_id)
        ).first()
        q = select(daq_files.c.state, func.count()).where(daq_files.c.exp_id == exp_id).group_by(daq_files.c.state)
        counts = {str(state): int(n) for state, n in conn.execute(q)}
        busy = conn.execute(
            select(func.count()).where(exposures.c.state == ExposureState.ARMED, exposures.c.exp_id != exp_id)
        ).scalar_one()
    lost = int(counts.pop(DaqFileState.LOST, 0))
    if row is None:
        return ExposureOutcome(None, None, sum(counts.values()), lost, bool(busy))
    kept = frames_kept(row.n_frames, row.fps, row.start_at, row.stop_at)
    known = row.start_at is not None or row.stop_at is not None
    return ExposureOutcome(
        ExposureState(row.state),
        row.start_at,
        sum(counts.values()),
        lost,
        bool(busy),
        stopped=row.stop_at is not None and kept < row.n_frames,
        stop_reason=row.stop_reason,
        frames_kept=kept if known else None,
    )


def stop_exposure(engine: Engine, exp_id: int, why: str) -> bool:
    """Ask the DAQ to end an exposure early, at the next frame boundary (unsafe weather, an abort).

    False when it is not queued or armed (over already) or was asked before. The exposure ends
    as usual (done, with its files holding the frames read until then), so the queue server's
    wait_exposure() returns once the DAQ has accounted for it. One still queued, or armed to
    start after `stop_at`, ends failed with no file (daq:control: end_stopped);
    exposure_outcome() says `stopped` either way.
    """
    q = (
        update(exposures)
        .where(
            exposures.c.exp_id == exp_id,
            exposures.c.state.in_((ExposureState.QUEUED, ExposureState.ARMED)),
            exposures.c.stop_at.is_(None),
        )
        .values(stop_at=utcnow(), stop_reason=why[:1000])
    )
    with engine.begin() as conn:
        return bool(conn.execute(q).rowcount)


def stop_of(engine: Engine, exp_id: int) -> tuple[datetime | None, str | None]:
    """(stop_at, stop_reason) of an exposure: what a readout watches while it reads it."""
    q = select(exposures.c.stop_at, exposures.c.stop_reason).where(exposures.c.exp_id == exp_id)
    with engine.connect() as conn:
        row = conn.execute(q).first()
    return (row.stop_at, row.stop_reason) if row else (None, None)


@dataclass(frozen=True)
class StoppedExposure:
    """An exposure end_stopped acted on: failed (stopped before its first frame) or ended early."""

    exp_id: int
    state: ExposureState  # FAILED, or ARMED with an earlier end_at
    frames_kept: int
    n_frames: int
    stop_reason: str


def end_stopped(engine: Engine) -> list[StoppedExposure]:
    """Act on the stops asked since the last call: a queued exposure, or one armed to start after its
    stop, fails with no file ("stopped before it started"); an armed one that began ends earlier
    (end_at after its last kept frame, so the next one is armed in time and its books close sooner)."""
    now = utcnow()
    out = []
    stopped = exposures.c.state.in_((ExposureState.QUEUED, ExposureState.ARMED)) & exposures.c.stop_at.is_not(None)
    with engine.begin() as conn:
        rows = conn.execute(
            select(
                exposures.c.exp_id,
                exposures.c.state,
                exposures.c.n_frames,
                exposures.c.fps,
                exposures.c.start_at,
                exposures.c.end_at,
                exposures.c.stop_at,
                exposures.c.stop_reason,
            ).where(stopped)
        ).all()
        for r in rows:
            kept = frames_kept(r.n_frames, r.fps, r.start_at, r.stop_at)
            change: dict[str, Any]
            if kept == 0:
                change = {"state": ExposureState.FAILED, "finished_at": now}
            else:
                end = r.start_at + timedelta(seconds=kept / r.fps)
                if kept == r.n_frames or r.end_at <= end:
                    continue  # it stops after its last frame began (nothing changes), or applied already
                change = {"end_at": end}
            q = update(exposures).where(exposures.c.exp_id == r.exp_id, exposures.c.state == r.state).values(change)
            if conn.execute(q).rowcount:
                why = r.stop_reason or ""
                out.append(StoppedExposure(r.exp_id, change.get("state", r.state), kept, r.n_frames, why))
    return out


def next_queued(engine: Engine) -> dict[str, Any] | None:
    q = (
        select(exposures)
        .where(exposures.c.state == ExposureState.QUEUED, exposures.c.stop_at.is_(None))
        .order_by(exposures.c.exp_id)
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(q).first()
    return dict(row._mapping) if row else None


def last_armed_end(engine: Engine) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(
            select(func.max(exposures.c.end_at)).where(exposures.c.state == ExposureState.ARMED)
        ).scalar()


def arm(
    engine: Engine, exp_id: int, start_at: datetime, end_at: datetime, chips: list[int], snapshot: StatusSnapshot
) -> bool:
    """queued -> armed, with its start time and snapshot; False if someone else armed it, or it was stopped."""
    with engine.begin() as conn:
        n = conn.execute(
            update(exposures)
            .where(
                exposures.c.exp_id == exp_id, exposures.c.state == ExposureState.QUEUED, exposures.c.stop_at.is_(None)
            )
            .values(
                state=ExposureState.ARMED, start_at=start_at, end_at=end_at, chips=chips, snapshot=snapshot.to_json()
            )
        ).rowcount
    return n == 1


def armed_after(engine: Engine, exp_id: int) -> list[ArmedExposure]:
    """Armed exposures newer than exp_id, in order (what a readout has still to read)."""
    q = (
        select(exposures)
        .where(exposures.c.state.in_(READ_STATES), exposures.c.exp_id > exp_id)
        .where(exposures.c.start_at.is_not(None))
        .order_by(exposures.c.exp_id)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    out = []
    for r in rows:
        snap = StatusSnapshot.from_json(r.snapshot)
        ra, dec = snap.number("telescope.ra_deg"), snap.number("telescope.dec_deg")
        out.append(
            ArmedExposure(
                r.exp_id,
                r.n_frames,
                r.fps,
                r.start_at,
                list(r.chips),
                ra if ra is not None else 0.0,
                dec if dec is not None else 0.0,
                r.stop_at,
                r.stop_reason,
            )
        )
    return out


def last_ended_before(engine: Engine, when: datetime) -> int:
    q = select(func.max(exposures.c.exp_id)).where(exposures.c.end_at < when)
    with engine.connect() as conn:
        return int(conn.execute(q).scalar() or 0)


def exposure_info(engine: Engine, exp_id: int) -> ExposureInfo:
    with engine.connect() as conn:
        r = conn.execute(select(exposures).where(exposures.c.exp_id == exp_id)).one()
    return _exposure_info(r)


class Missed(StrEnum):
    """What became of an exposure a readout saw only after it was over (requeue_missed)."""

    REQUEUED = "requeued"  # by this call: it will be armed anew
    REQUEUED_BEFORE = "requeued before"  # by another readout (it may be armed anew already)
    KEPT = "kept"  # some chip of it was read or written, or it is closed: it is accounted as it is


def requeue_missed(engine: Engine, exp_id: int, start_at: datetime) -> Missed:
    """Queue again an armed exposure that no readout read because none could see it before it was
    over (the database went away just after it was armed), instead of losing it."""
    reports = select(readout_reports.c.det_id).where(readout_reports.c.exp_id == exp_id).exists()
    files = select(daq_files.c.id).where(daq_files.c.exp_id == exp_id).exists()
    with engine.begin() as conn:
        row = conn.execute(select(exposures.c.state, exposures.c.start_at).where(exposures.c.exp_id == exp_id)).one()
        if row.start_at != start_at:
            return Missed.REQUEUED_BEFORE
        n = conn.execute(
            update(exposures)
            .where(
                exposures.c.exp_id == exp_id,
                exposures.c.state == ExposureState.ARMED,
                exposures.c.stop_at.is_(None),  # a stopped one is not read again: it ends as it is
                ~reports,
                ~files,
            )
            .values(state=ExposureState.QUEUED, start_at=None, end_at=None, chips=None, snapshot=None)
        ).rowcount
    return Missed.REQUEUED if n == 1 else Missed.KEPT


def _exposure_info(r: Row[Any]) -> ExposureInfo:
    return ExposureInfo(
        exp_id=r.exp_id,
        object=r.object,
        data_type=r.data_type,
        obs_mode=r.obs_mode,
        filter=r.filter,
        project=r.project,
        observer=r.observer,
        n_frames=r.n_frames,
        fps=r.fps,
        start_at=r.start_at,
        recipe_uuid=r.recipe_uuid,
        recipe_name=r.recipe_name,
        snapshot=StatusSnapshot.from_json(r.snapshot),
    )


class FileRowRefused(Exception):
    """The database refused a file's row for what it holds (not an outage): it must be set aside, not retried."""

    def __init__(self, row: dict[str, Any], why: str) -> None:
        super().__init__(f"{row.get('filename')}: {why}")
        self.row, self.why = row, why


def record_files(engine: Engine, rows: list[dict[str, Any]]) -> list[FileRowRefused]:
    """One row per (exposure, chip), many in one transaction; a second report of a file is ignored.

    A row's `created_at` (when the file got its name) is kept; without one it is now.

    Rows the database refuses for their content (a NOT NULL, a value it cannot store) are returned,
    the others recorded; an outage (OperationalError) propagates and nothing is lost.
    """
    if not rows:
        return []
    now = utcnow()
    try:
        with engine.begin() as conn:
            _replace_control_rows(conn, rows)
            conn.execute(insert(daq_files), [{"created_at": now, **r} for r in rows])
        return []
    except (OperationalError, InterfaceError):
        raise
    except (IntegrityError, DataError, StatementError):
        pass
    refused = []
    for r in rows:  # one of them is recorded already, or is refused: insert them one by one
        try:
            with engine.begin() as conn:
                _replace_control_rows(conn, [r])
                conn.execute(insert(daq_files).values({"created_at": now, **r}))
        except (OperationalError, InterfaceError):
            raise
        except (IntegrityError, DataError, StatementError) as err:
            if not _file_recorded(engine, r):
                refused.append(FileRowRefused(r, f"{type(err.orig or err).__name__}: {str(err.orig or err)[:200]}"))
    return refused


def lost_file_row(
    exp_id: int, det_id: int, filename: str, daq_host: str, writer: str, n_frames: int, naxis: tuple[int, int]
) -> dict[str, Any]:
    """The daq_files row of a chip's file that could not be made: no path, every frame missing."""
    return {
        "exp_id": exp_id,
        "det_id": det_id,
        "state": DaqFileState.LOST,
        "path": None,
        "filename": filename,
        "daq_host": daq_host,
        "daq_volume": None,
        "size_bytes": 0,
        "checksum_xxh3": None,
        "frames_expected": n_frames,
        "frames_written": 0,
        "frames_missing": n_frames,
        "frames_damaged": 0,
        "naxis1": naxis[0],
        "naxis2": naxis[1],
        "naxis3": n_frames,
        "writer": writer,
    }


def _replace_control_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """A DAQ host's own row for a chip (its spool replayed after an outage, a file salvaged) replaces
    the lost row daq:control recorded when it did not come by the deadline: nothing counted twice."""
    keys = [
        (r["exp_id"], r["det_id"])
        for r in rows
        if r.get("exp_id") is not None and r.get("det_id") is not None and r.get("writer") != CONTROL_WRITER
    ]
    if keys:
        conn.execute(
            delete(daq_files).where(
                daq_files.c.writer == CONTROL_WRITER, tuple_(daq_files.c.exp_id, daq_files.c.det_id).in_(keys)
            )
        )


def _file_recorded(engine: Engine, row: dict[str, Any]) -> bool:
    if row.get("exp_id") is None or row.get("det_id") is None:
        return False
    with engine.connect() as conn:
        hit = conn.execute(
            select(daq_files.c.id).where(daq_files.c.exp_id == row["exp_id"], daq_files.c.det_id == row["det_id"])
        ).first()
    return hit is not None


def record_readout_reports(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Insert what is not there yet: a readout that restarts (or replays its spool) may report one again."""
    if not rows:
        return
    now = utcnow()
    with engine.begin() as conn:
        keys = select(readout_reports.c.exp_id, readout_reports.c.det_id).where(
            readout_reports.c.exp_id.in_({r["exp_id"] for r in rows})
        )
        have = {(e, d) for e, d in conn.execute(keys)}
        new = [{"created_at": now, **r} for r in rows if (r["exp_id"], r["det_id"]) not in have]
        if new:
            conn.execute(insert(readout_reports), new)


def last_reported(engine: Engine, readout: str, host: str) -> int:
    """The newest exposure this readout (of this DAQ host) reported."""
    q = select(func.max(readout_reports.c.exp_id)).where(
        readout_reports.c.readout == readout, readout_reports.c.daq_host == host
    )
    with engine.connect() as conn:
        return int(conn.execute(q).scalar() or 0)


@dataclass(frozen=True)
class ClosedExposure:
    """An exposure finish_exposures closed, and the lost rows it recorded for chips no file came of."""

    exp_id: int
    state: ExposureState
    lost: list[dict[str, Any]] = field(default_factory=list)
    reported: frozenset[int] = frozenset()  # chips of those a readout reported (read, but no file recorded)


@dataclass(frozen=True)
class OverdueExposure:
    """An exposure past its deadline with chips unaccounted for, as a lost row is made of it."""

    exp_id: int
    start_at: datetime
    n_frames: int  # the frames it keeps (fewer than asked when a stop cut it short)


LostRow = Callable[[OverdueExposure, int], dict[str, Any]]  # the lost row of the exposure's chip


def finish_exposures(
    engine: Engine, grace: timedelta, give_up: bool = True, lost_row: LostRow | None = None
) -> list[ClosedExposure]:
    """Armed exposures whose every chip is accounted for -> done; past end + grace -> incomplete,
    and with `lost_row` each chip still unaccounted for gets a lost row (its frames counted missing).

    A chip is accounted for by its daq_files row or by a readout's report that it did not answer.
    An exposure cut short by a stop closes as any other (its files hold the frames it kept).
    give_up=False closes only the complete ones: right after an outage the files written
    meanwhile are still being recorded from the writers' spools.
    """
    now = utcnow()
    finished = []
    with engine.begin() as conn:
        armed = conn.execute(
            select(
                exposures.c.exp_id,
                exposures.c.chips,
                exposures.c.start_at,
                exposures.c.end_at,
                exposures.c.n_frames,
                exposures.c.fps,
                exposures.c.stop_at,
            ).where(exposures.c.state == ExposureState.ARMED)
        ).all()
        for exp in armed:
            written, absent, reported = _accounting(conn, exp.exp_id)
            unaccounted = [c for c in exp.chips if c not in written | absent]
            lost: list[dict[str, Any]] = []
            if not unaccounted:
                state = ExposureState.DONE if not absent else ExposureState.INCOMPLETE
            elif give_up and exp.end_at + grace < now:
                state = ExposureState.INCOMPLETE
                if lost_row is not None:
                    kept = frames_kept(exp.n_frames, exp.fps, exp.start_at, exp.stop_at)
                    overdue = OverdueExposure(exp.exp_id, exp.start_at, kept)
                    lost = _record_lost(conn, [lost_row(overdue, c) for c in unaccounted])
            else:
                continue
            conn.execute(update(exposures).where(exposures.c.exp_id == exp.exp_id).values(state=state, finished_at=now))
            finished.append(ClosedExposure(exp.exp_id, state, lost, frozenset(reported & {r["det_id"] for r in lost})))
    return finished


def _accounting(conn: Connection, exp_id: int) -> tuple[set[int], set[int], set[int]]:
    """The exposure's chips with a file row, those a readout found not answering, those a readout reported."""
    written = set(conn.execute(select(daq_files.c.det_id).where(daq_files.c.exp_id == exp_id)).scalars())
    reports = conn.execute(
        select(readout_reports.c.det_id, readout_reports.c.recognised).where(readout_reports.c.exp_id == exp_id)
    ).all()
    return written, {d for d, ok in reports if not ok}, {d for d, _ in reports}


def _record_lost(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert lost rows, leaving alone a chip whose own row came meanwhile; the rows inserted."""
    if not rows:
        return []
    stmt = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(daq_files)
    new = stmt.on_conflict_do_nothing(index_elements=[daq_files.c.exp_id, daq_files.c.det_id])
    inserted = set(conn.execute(new.returning(daq_files.c.det_id), rows).scalars())
    return [r for r in rows if r["det_id"] in inserted]


def exposure_progress(engine: Engine, exp_ids: list[int]) -> tuple[int, int, dict[int, ExposureState]]:
    """(files written, files expected, state by exposure) for a progress bar."""
    with engine.connect() as conn:
        q = select(exposures.c.exp_id, exposures.c.state).where(exposures.c.exp_id.in_(exp_ids))
        states = {int(e): ExposureState(s) for e, s in conn.execute(q)}
        files = conn.execute(
            select(func.count()).select_from(daq_files).where(daq_files.c.exp_id.in_(exp_ids))
        ).scalar_one()
        chips = [c for c in conn.execute(select(exposures.c.chips).where(exposures.c.exp_id.in_(exp_ids))).scalars()]
    return int(files), sum(len(c or []) for c in chips), states


def exposure_in_hand(engine: Engine, now: datetime, gone: timedelta) -> Any:
    """The newest exposure armed (and not ended more than `gone` ago) or queued within `gone`: what the
    camera is doing now, for the overview."""
    e = exposures.c
    q = (
        select(e.exp_id, e.object, e.data_type, e.n_frames, e.fps, e.start_at, e.recipe_name, e.state)
        .where(
            or_(
                (e.state == ExposureState.ARMED) & (e.end_at.is_(None) | (e.end_at >= now - gone)),
                (e.state == ExposureState.QUEUED) & (e.requested_at >= now - gone),
            )
        )
        .order_by(e.exp_id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(q).first()


def latest_frame_bytes(engine: Engine) -> float | None:
    """Bytes per frame of the newest file written (None: none yet): frames/s times this is MB/s."""
    q = (
        select(daq_files.c.size_bytes, daq_files.c.naxis3)
        .where(daq_files.c.naxis3 > 0, daq_files.c.size_bytes > 0)
        .order_by(daq_files.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        r = conn.execute(q).first()
    return r.size_bytes / r.naxis3 if r else None
