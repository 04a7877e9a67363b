"""What the DAQ did, for people: totals, per DAQ host and per chip (`gozen daq stats`, the DAQ page).

Read-only queries on the DAQ's tables (daq/catalog.py writes them), one per table per call
whatever the number of chips, and the DAQ's values on the status board (ring fill, frames/s,
the DAQ programs' heartbeats).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Engine, case, func, select

from gozen.config import Config, tomoe_chip_ids
from gozen.daq.snapshot import StatusSnapshot, StatusValue
from gozen.db.states import DaqFileState
from gozen.db.tables import daq_files, exposures, readout_reports
from gozen.durations import uptime_words
from gozen.monitors.board import heartbeat_key, snapshot
from gozen.supervise.programs import programs_for


def rate_mb_s(size_bytes: int, first_start: datetime | None, last_file: datetime | None) -> float:
    """MB/s while writing: bytes over the time from the first exposure's start to the last file."""
    if not first_start or not last_file or last_file <= first_start:
        return 0.0
    return size_bytes / 1e6 / (last_file - first_start).total_seconds()


@dataclass(frozen=True)
class DaqStats:
    exposures: int
    files: int
    bytes: int
    first_start: datetime | None
    last_file: datetime | None
    frames_expected: int
    frames_written: int
    frames_missing: int
    frames_damaged: int
    frames_dropped: int
    chips_unrecognised: int

    @property
    def mb_per_s(self) -> float:
        return rate_mb_s(self.bytes, self.first_start, self.last_file)

    @property
    def error_rate(self) -> float:
        return (self.frames_missing + self.frames_damaged) / self.frames_expected if self.frames_expected else 0.0


def daq_stats(engine: Engine, since: datetime | None = None, exp_ids: list[int] | None = None) -> DaqStats:
    fq = select(
        func.count(),
        func.coalesce(func.sum(daq_files.c.size_bytes), 0),
        func.coalesce(func.sum(daq_files.c.frames_expected), 0),
        func.coalesce(func.sum(daq_files.c.frames_written), 0),
        func.coalesce(func.sum(daq_files.c.frames_missing), 0),
        func.coalesce(func.sum(daq_files.c.frames_damaged), 0),
        func.max(daq_files.c.created_at),
    ).select_from(daq_files.join(exposures))
    eq = select(func.count(), func.min(exposures.c.start_at)).where(exposures.c.start_at.is_not(None))
    rq = select(
        func.coalesce(func.sum(readout_reports.c.frames_dropped), 0),
        func.count().filter(readout_reports.c.recognised.is_(False)),
    ).select_from(readout_reports.join(exposures))
    if since is not None:
        fq, eq, rq = (q.where(exposures.c.start_at >= since) for q in (fq, eq, rq))
    if exp_ids is not None:
        fq, eq, rq = (q.where(exposures.c.exp_id.in_(exp_ids)) for q in (fq, eq, rq))
    with engine.connect() as conn:
        n, size, exp_f, written, missing, damaged, last = conn.execute(fq).one()
        n_exp, first = conn.execute(eq).one()
        dropped, unrec = conn.execute(rq).one()
    return DaqStats(
        int(n_exp),
        int(n),
        int(size),
        first,
        last,
        int(exp_f),
        int(written),
        int(missing),
        int(damaged),
        int(dropped),
        int(unrec),
    )


def night_start(now: datetime, lon_deg: float) -> datetime:
    """When tonight began: local solar noon before `now` (the night the files are named after)."""
    shift = timedelta(hours=lon_deg / 15 - 12)
    local = now.astimezone(UTC) + shift
    return local.replace(hour=0, minute=0, second=0, microsecond=0) - shift


# -- per DAQ host and per chip -----------------------------------------------------------------


class ChipState(StrEnum):
    """What the focal-plane map colours a chip by, worst first."""

    NOT_RECOGNISED = "not_recognised"
    DROPPED = "dropped"
    MISSING = "missing"
    DAMAGED = "damaged"
    OK = "ok"
    NO_DATA = "no_data"
    NOT_CONFIGURED = "not_configured"


CHIP_STATE_WORDS = {
    ChipState.OK: "ok",
    ChipState.MISSING: "frames missing",
    ChipState.DAMAGED: "frames damaged",
    ChipState.DROPPED: "frames dropped (ring full)",
    ChipState.NOT_RECOGNISED: "did not answer at start",
    ChipState.NO_DATA: "no data yet",
    ChipState.NOT_CONFIGURED: "not in this camera config",
}


@dataclass(frozen=True, kw_only=True)
class Tally:
    """What the DAQ did with some chips over the window."""

    files: int = 0  # written
    files_lost: int = 0  # rows for files that could not be made
    bytes: int = 0
    frames_expected: int = 0
    frames_read: int = 0  # delivered by the camera (readout reports)
    frames_missing: int = 0  # absent from the files (any cause)
    frames_damaged: int = 0  # in the files, flagged damaged
    frames_dropped: int = 0  # lost to a full ring (readout reports)
    reports: int = 0  # readout reports (one per chip and exposure)
    unrecognised: int = 0  # reports of a chip that did not answer at start
    first_start: datetime | None = None  # start of the first exposure in the window
    last_file: str | None = None
    last_file_at: datetime | None = None

    @property
    def mb_per_s(self) -> float:
        return rate_mb_s(self.bytes, self.first_start, self.last_file_at)

    @property
    def seen(self) -> bool:
        return bool(self.files or self.files_lost or self.reports)


COUNTERS = tuple(f.name for f in fields(Tally) if f.type == "int")


def total(parts: Iterable[Tally]) -> dict[str, Any]:
    """The Tally fields of several tallies together (counts summed, first start, last file)."""
    parts = list(parts)
    out: dict[str, Any] = {k: sum(getattr(p, k) for p in parts) for k in COUNTERS}
    starts = [p.first_start for p in parts if p.first_start]
    out["first_start"] = min(starts) if starts else None
    last = max((p for p in parts if p.last_file_at), key=lambda p: p.last_file_at, default=None)  # type: ignore[arg-type,return-value]
    out["last_file"], out["last_file_at"] = (last.last_file, last.last_file_at) if last else (None, None)
    return out


@dataclass(frozen=True, kw_only=True)
class ChipStats(Tally):
    det_id: int
    host: str | None  # the DAQ host that reads it (config), else the one its rows name
    configured: bool  # in camera.chips
    overscan_median: float | None = None  # of the last file (None: light readout, or no file)
    overscan_noise: float | None = None

    @property
    def state(self) -> ChipState:
        if not self.configured:
            return ChipState.NOT_CONFIGURED
        if not self.seen:
            return ChipState.NO_DATA
        for state, count in (
            (ChipState.NOT_RECOGNISED, self.unrecognised),
            (ChipState.DROPPED, self.frames_dropped),
            (ChipState.MISSING, self.frames_missing),
            (ChipState.DAMAGED, self.frames_damaged),
        ):
            if count:
                return state
        return ChipState.OK


@dataclass(frozen=True)
class BoardValue:
    """A DAQ value from the status board, with how old it is."""

    value: float
    age_s: float
    stale: bool  # older than its max age: the program that publishes it may be down

    @property
    def age_words(self) -> str:
        return f"{self.age_s:.0f} s ago" if self.age_s < 120 else f"{uptime_words(self.age_s)} ago"


@dataclass(frozen=True, kw_only=True)
class HostStats(Tally):
    host: str
    configured: bool  # a DAQ host of the config (False: only its rows name it)
    chips: list[int]
    frames_per_s: BoardValue | None = None  # its readouts together, over their last ~5 s
    ring_fill_pct: BoardValue | None = None  # its fullest ring
    heartbeats: dict[str, float | None] = field(default_factory=dict)  # DAQ program -> age, s (None: never)
    silent: list[str] = field(default_factory=list)  # DAQ programs without a fresh heartbeat

    @property
    def up(self) -> bool:
        return bool(self.heartbeats) and not self.silent


@dataclass(frozen=True)
class DaqOverview:
    since: datetime
    until: datetime
    hosts: list[HostStats]
    chips: list[ChipStats]  # every Tomo-e position, then any other chip the rows name

    @property
    def totals(self) -> dict[str, Any]:
        return total(self.chips)

    def chip(self, det_id: int) -> ChipStats | None:
        return next((c for c in self.chips if c.det_id == det_id), None)


def daq_overview(cfg: Config, engine: Engine, since: datetime, until: datetime | None = None) -> DaqOverview:
    """Per DAQ host and per chip, for the exposures that started in [since, until]."""
    until = until or datetime.now(UTC)
    window = (exposures.c.start_at >= since) & (exposures.c.start_at <= until)
    with engine.connect() as conn:
        file_rows = {r.det_id: r for r in conn.execute(_files_query(window))}
        report_rows = {r.det_id: r for r in conn.execute(_reports_query(window))}
    board = snapshot(engine)
    host_of = {c: h.name for h in cfg.daq_hosts() for c in cfg.chips_of(h.name)}
    camera = set(cfg.camera.chips)
    chips = [
        _chip(det, host_of.get(det), det in camera, file_rows.get(det), report_rows.get(det))
        for det in tomoe_chip_ids() + sorted((file_rows.keys() | report_rows.keys()) - set(tomoe_chip_ids()))
    ]
    names = [h.name for h in cfg.daq_hosts()]
    names += sorted({c.host for c in chips if c.host and c.host not in names})
    hosts = [_host(cfg, name, name in host_of.values(), chips, board) for name in names]
    return DaqOverview(since, until, hosts, chips)


def _files_query(window: ColumnElement[bool]) -> Any:
    """Per chip: the window's sums, and its last file (written ones first) — one row each."""
    f = daq_files.c
    written = case((f.state == DaqFileState.WRITTEN, 1), else_=0)

    def per_chip(agg: Any) -> Any:
        return agg.over(partition_by=f.det_id)

    inner = (
        select(
            f.det_id,
            f.daq_host,
            f.filename,
            f.created_at,
            f.overscan_median,
            f.overscan_noise,
            per_chip(func.sum(written)).label("files"),
            per_chip(func.count()).label("rows"),
            per_chip(func.sum(f.size_bytes)).label("bytes"),
            per_chip(func.sum(f.frames_expected)).label("frames_expected"),
            per_chip(func.sum(f.frames_missing)).label("frames_missing"),
            per_chip(func.sum(f.frames_damaged)).label("frames_damaged"),
            per_chip(func.min(exposures.c.start_at)).label("first_start"),
            func.row_number()
            .over(partition_by=f.det_id, order_by=(written.desc(), f.created_at.desc(), f.id.desc()))
            .label("rn"),
        )
        .select_from(daq_files.join(exposures))
        .where(window)
        .subquery()
    )
    return select(inner).where(inner.c.rn == 1)


def _reports_query(window: ColumnElement[bool]) -> Any:
    r = readout_reports.c
    return (
        select(
            r.det_id,
            func.max(r.daq_host).label("daq_host"),
            func.count().label("reports"),
            func.sum(r.frames_read).label("frames_read"),
            func.sum(r.frames_dropped).label("frames_dropped"),
            func.sum(case((r.recognised.is_(False), 1), else_=0)).label("unrecognised"),
        )
        .select_from(readout_reports.join(exposures))
        .where(window)
        .group_by(r.det_id)
    )


def _chip(det: int, host: str | None, configured: bool, f: Any, r: Any) -> ChipStats:
    tally: dict[str, Any] = {}
    if f is not None:
        n = int(f.files)
        tally = {
            "files": n,
            "files_lost": int(f.rows) - n,
            "bytes": int(f.bytes or 0),
            "frames_expected": int(f.frames_expected),
            "frames_missing": int(f.frames_missing),
            "frames_damaged": int(f.frames_damaged),
            "first_start": f.first_start,
            "last_file": f.filename if n else None,
            "last_file_at": f.created_at if n else None,
            "overscan_median": f.overscan_median if n else None,
            "overscan_noise": f.overscan_noise if n else None,
        }
    if r is not None:
        tally |= {k: int(getattr(r, k)) for k in ("reports", "frames_read", "frames_dropped", "unrecognised")}
    rows_host = (f.daq_host if f is not None else None) or (r.daq_host if r is not None else None)
    return ChipStats(det_id=det, host=host or rows_host, configured=configured, **tally)


def _host(cfg: Config, name: str, configured: bool, chips: list[ChipStats], board: StatusSnapshot) -> HostStats:
    mine = [c for c in chips if c.host == name]
    now = datetime.now(UTC)
    prefix = f"daq.{name}."
    rings = [v for k, v in board.values.items() if k.startswith(prefix + "ring.") and k.endswith(".fill_pct")]
    rates = [v for k, v in board.values.items() if k.startswith(prefix + "readout-") and k.endswith(".frames_per_s")]
    # The programs frames pass through (daq:quicklook only looks at files already written).
    programs = (
        [p.full_name for p in programs_for(cfg, cfg.host(name)) if p.group == "daq" and p.name != "quicklook"]
        if configured
        else []
    )
    beats = {p: board.values.get(heartbeat_key(name, p)) for p in programs}
    return HostStats(
        **total(mine),
        host=name,
        configured=configured,
        chips=[c.det_id for c in mine if c.configured],
        frames_per_s=_board_value(rates, sum, now),
        ring_fill_pct=_board_value(rings, max, now),
        heartbeats={p: None if v is None else _age_s(v, now) for p, v in beats.items()},
        silent=[p for p, v in beats.items() if v is None or v.stale],
    )


def _age_s(v: StatusValue, now: datetime) -> float:
    return round((now - datetime.fromisoformat(v.time)).total_seconds(), 1)


def _board_value(values: list[StatusValue], combine: Any, now: datetime) -> BoardValue | None:
    """Several readings as one (summed or the largest), as old as the oldest of them."""
    numbers = [v for v in values if isinstance(v.value, int | float) and not isinstance(v.value, bool)]
    if not numbers:
        return None
    return BoardValue(
        round(float(combine(float(v.value) for v in numbers)), 2),  # type: ignore[arg-type]
        max(_age_s(v, now) for v in numbers),
        any(v.stale for v in numbers),
    )


def overview_json(ov: DaqOverview) -> dict[str, Any]:
    """The overview as plain JSON (times ISO UTC), as /api/daq and `gozen daq stats --json` give it."""

    def plain(x: Tally) -> dict[str, Any]:
        d = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(x).items()}
        return d | {"mb_per_s": round(x.mb_per_s, 3)}

    return {
        "since": ov.since.isoformat(),
        "until": ov.until.isoformat(),
        "totals": plain(Tally(**ov.totals)),
        "hosts": [plain(h) | {"up": h.up} for h in ov.hosts],
        "chips": [plain(c) | {"state": c.state.value} for c in ov.chips],
    }
