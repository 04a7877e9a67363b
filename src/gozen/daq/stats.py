"""What the DAQ did, for people: totals, per DAQ host and per chip (`gozen daq stats`, the DAQ page).

Read-only queries on the DAQ's tables (daq/catalog.py writes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from gozen.db.tables import daq_files, exposures, readout_reports


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
        if not self.first_start or not self.last_file or self.last_file <= self.first_start:
            return 0.0
        return self.bytes / 1e6 / (self.last_file - self.first_start).total_seconds()

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
