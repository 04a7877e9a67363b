"""Prometheus metrics: a collector that reads the status board and the database at each scrape.

Every gozen program already publishes what it does to the board and the database, so reading them
per scrape is multiprocess-safe by construction: any web worker, on any host, answers the same.
A scrape makes one query per family (no per-row queries). What can no longer change (the rows of
exposures closed 10 minutes ago, copies out of the copy queue, files the archive took) is summed once
and kept in memory, so a scrape reads only recent rows. The names, units and labels are documented
in docs/metrics.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from gozen.config import FEEDS, Config
from gozen.couriers.store import feed_states
from gozen.daq.snapshot import StatusSnapshot, StatusValue
from gozen.db.states import DaqFileState, ExportState, ExposureState, ReplicaState
from gozen.db.tables import (
    alerts,
    daq_files,
    events,
    exports,
    exposures,
    files,
    outbox,
    readout_reports,
    recipes,
    replicas,
)
from gozen.db.types import utcnow
from gozen.monitors.board import snapshot
from gozen.queue.recipe import PRIORITY_OF_RANK
from gozen.queue.store import queue_status
from gozen.service import is_outage
from gozen.supervise.fleet import last_seen

log = logging.getLogger(__name__)


def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


# -- from the status board --------------------------------------------------------------------------

# weather.<field> on the board -> (metric, help, factor to its base unit)
WEATHER = {
    "temperature_c": ("gozen_weather_temperature_celsius", "Air temperature.", 1.0),
    "humidity_pct": ("gozen_weather_humidity_ratio", "Relative humidity (0-1).", 0.01),
    "dewpoint_c": ("gozen_weather_dewpoint_celsius", "Dew point.", 1.0),
    "pressure_hpa": ("gozen_weather_pressure_pascals", "Air pressure.", 100.0),
    "wind_ms": ("gozen_weather_wind_speed_meters_per_second", "Wind speed.", 1.0),
    "wind_gust_ms": ("gozen_weather_wind_gust_meters_per_second", "Wind gust speed.", 1.0),
    "wind_dir_deg": ("gozen_weather_wind_direction_degrees", "Wind direction (from, east of north).", 1.0),
    "rain_mmh": ("gozen_weather_rain_millimeters_per_hour", "Rain rate.", 1.0),
    "sky_temp_c": ("gozen_weather_sky_temperature_celsius", "Sky temperature (cloud sensor).", 1.0),
    "cloud_pct": ("gozen_weather_cloud_cover_ratio", "Cloud cover (0-1).", 0.01),
}


# other single board keys -> (metric, help, factor)
SINGLE = {
    "safety.safe": ("gozen_safe", "1 when the site is safe to observe (safety:monitor's verdict).", 1.0),
    "weather.safe": ("gozen_weather_safe", "1 when the weather station's safety monitor says safe.", 1.0),
    "safety.sun_alt_deg": ("gozen_sun_altitude_degrees", "Altitude of the Sun.", 1.0),
    "power.on_battery": ("gozen_ups_on_battery", "1 while the UPS runs on its battery.", 1.0),
    "power.low_battery": ("gozen_ups_low_battery", "1 when the UPS says its battery is low.", 1.0),
    "power.ups_charge_pct": ("gozen_ups_charge_ratio", "UPS battery charge (0-1).", 0.01),
    "power.ups_runtime_s": ("gozen_ups_runtime_seconds", "UPS runtime left on battery.", 1.0),
    "power.ups_load_pct": ("gozen_ups_load_ratio", "UPS load (0-1).", 0.01),
    "gps.fix": ("gozen_gps_fix", "1 while the GPS receiver has a fix.", 1.0),
    "gps.pps": ("gozen_gps_pps", "1 while the GPS pulse-per-second arrives.", 1.0),
    "gps.offset_ms": ("gozen_gps_offset_seconds", "System clock minus GPS time.", 0.001),
    "gps.satellites": ("gozen_gps_satellites", "Satellites the GPS receiver uses.", 1.0),
    "telescope.alt_deg": ("gozen_telescope_altitude_degrees", "Altitude the telescope points at.", 1.0),
    "telescope.tracking": ("gozen_telescope_tracking", "1 while the telescope tracks.", 1.0),
    "telescope.slewing": ("gozen_telescope_slewing", "1 while the telescope slews.", 1.0),
    "telescope.parked": ("gozen_telescope_parked", "1 while the telescope is parked.", 1.0),
}


# df.<volume>.<field> -> (metric, help, factor)
DISK = {
    "online": ("gozen_disk_online", "1 while the directory is there (mounted).", 1.0),
    "used_pct": ("gozen_disk_used_ratio", "Used share of the filesystem (0-1).", 0.01),
    "free_bytes": ("gozen_disk_free_bytes", "Bytes free to gozen on the filesystem.", 1.0),
    "inodes_used_pct": ("gozen_disk_inodes_used_ratio", "Used share of the inodes (0-1).", 0.01),
    "fill_rate_bps": ("gozen_disk_fill_rate_bytes_per_second", "How fast use grows (negative: shrinks).", 1.0),
    "time_to_full_s": ("gozen_disk_time_to_full_seconds", "When full at the present fill rate.", 1.0),
}


def number(v: StatusValue | None) -> float | None:
    """A fresh board value as a float (booleans as 1/0); None when absent, stale or not a number."""
    if v is None or v.stale or v.value is None or isinstance(v.value, str):
        return None
    return float(v.value)


def board_metrics(cfg: Config, board: StatusSnapshot) -> list[Metric]:
    """Weather, safety, power, temperatures, disks, DAQ rates and ring fill, programs' heartbeats."""
    out: dict[str, GaugeMetricFamily] = {}

    def put(name: str, doc: str, value: float | None, **labels: str) -> None:
        if value is None:
            return
        fam = out.get(name) or out.setdefault(name, gauge(name, doc, labels))
        fam.add_metric(list(labels.values()), value)

    now = datetime.fromisoformat(board.time)
    kinds = {v.name: "daq" for v in cfg.daq_volumes} | {n.name: "node" for n in cfg.storage_nodes}
    for key, v in sorted(board.values.items()):
        x = number(v)
        if key.startswith("weather.") and (w := WEATHER.get(key.removeprefix("weather."))):
            put(w[0], w[1], None if x is None else x * w[2])
        elif s := SINGLE.get(key):
            put(s[0], s[1], None if x is None else x * s[2])
        elif v.unit == "degC":
            put("gozen_temperature_celsius", "Temperatures on the board (camera, chips, racks...).", x, sensor=key)
        elif key.startswith("df."):
            volume, _, name = key.removeprefix("df.").rpartition(".")
            if d := DISK.get(name):
                put(d[0], d[1], None if x is None else x * d[2], volume=volume, kind=kinds.get(volume, ""))
        elif key.startswith("daq.") and key.endswith(".frames_per_s"):
            host, _, readout = key.removeprefix("daq.").removesuffix(".frames_per_s").rpartition(".")
            put("gozen_daq_frames_per_second", "Frames read per second (last ~5 s).", x, host=host, readout=readout)
        elif key.startswith("daq.") and key.endswith(".fill_pct"):
            host, _, ring = key.removeprefix("daq.").removesuffix(".fill_pct").rpartition(".ring.")
            x = None if x is None else x / 100
            put("gozen_daq_ring_fill_ratio", "Fullest a readout-to-writer ring got (0-1).", x, host=host, ring=ring)
        elif key.startswith("service.") and key.endswith(".alive_at") and isinstance(v.value, str):
            host, _, program = key.removeprefix("service.").removesuffix(".alive_at").rpartition(".")
            age = (now - datetime.fromisoformat(v.value)).total_seconds()
            doc = "Since a program last said it is alive."
            put("gozen_program_heartbeat_age_seconds", doc, age, host=host, program=program)
    _disk_sizes(out)
    return list(out.values())


def _disk_sizes(out: dict[str, GaugeMetricFamily]) -> None:
    """Size and used bytes of each filesystem, from its used share and free bytes."""
    used, free = out.get("gozen_disk_used_ratio"), out.get("gozen_disk_free_bytes")
    if used is None or free is None:
        return
    ratio = {tuple(s.labels.items()): s.value for s in used.samples}
    size = out["gozen_disk_size_bytes"] = gauge("gozen_disk_size_bytes", "Size of the filesystem.", ["volume", "kind"])
    taken = out["gozen_disk_used_bytes"] = gauge("gozen_disk_used_bytes", "Bytes used on it.", ["volume", "kind"])
    for s in free.samples:
        r = ratio.get(tuple(s.labels.items()))
        if r is None or r >= 1:
            continue
        total = s.value / (1 - r)
        size.add_metric(list(s.labels.values()), round(total))
        taken.add_metric(list(s.labels.values()), round(total - s.value))


def fleet_metrics(engine: Engine) -> list[Metric]:
    """Hosts reachable, and each program's state as supervisord last listed it (fleet:watch)."""
    reachable = gauge("gozen_host_reachable", "1 when the host's supervisord answered fleet:watch.", ["host"])
    up = gauge("gozen_program_up", "1 while the program is RUNNING.", ["host", "program"])
    state = gauge("gozen_program_state", "1 for the program's supervisord state.", ["host", "program", "state"])
    uptime = gauge("gozen_program_uptime_seconds", "How long the program has been running.", ["host", "program"])
    for host, seen in sorted(last_seen(engine).items()):
        if seen.stale:
            continue  # fleet:watch has not looked for a while: nothing is known
        reachable.add_metric([host], float(seen.reachable))
        if not seen.reachable:
            continue  # its programs' last states are history, not the present
        for p in seen.programs:
            up.add_metric([host, p.name], float(p.state == "RUNNING"))
            state.add_metric([host, p.name, p.state], 1.0)
            if p.uptime_s is not None:
                uptime.add_metric([host, p.name], p.uptime_s)
    return [reachable, up, state, uptime]


# -- kept in memory: what can no longer change, summed once -----------------------------------------

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


WRITE_WINDOW = timedelta(seconds=60)  # gozen_daq_write_bytes_per_second: bytes of the files of the last minute


BACKLOG = (ReplicaState.QUEUED, ReplicaState.COPYING, ReplicaState.COPIED, ReplicaState.FAILED)


# -- from the database: one query per family --------------------------------------------------------


def daq_metrics(cfg: Config, engine: Engine, settled: SettledDaq) -> list[Metric]:
    """Per chip counters and exposures by state (settled sums + the rows since), the write rate."""
    file_sums, report_sums, by_state = settled.totals(engine)
    since = utcnow() - WRITE_WINDOW
    with engine.connect() as conn:
        recent = dict(
            conn.execute(
                select(daq_files.c.daq_host, func.sum(daq_files.c.size_bytes))
                .where(daq_files.c.created_at >= since)
                .group_by(daq_files.c.daq_host)
            ).all()
        )
    out: list[Metric] = []
    for sums, columns in ((file_sums, FILE_SUMS), (report_sums, REPORT_SUMS)):
        for column, (name, doc) in columns.items():
            fam = counter(name, doc, ["chip", "host"])
            for (chip, host), d in sorted(sums.items()):
                fam.add_metric([chip, host], d.get(column, 0))
            out.append(fam)
    exp = gauge("gozen_daq_exposures", "Exposures by state (queued, armed, done, incomplete, failed).", ["state"])
    for state, n in sorted(by_state.items()):
        exp.add_metric([state], n)
    rate = gauge("gozen_daq_write_bytes_per_second", "Bytes of FITS files written over the last minute.", ["host"])
    hosts = {h.name for h in cfg.daq_hosts()} | set(recent)
    for host in sorted(hosts):
        rate.add_metric([host], int(recent.get(host) or 0) / WRITE_WINDOW.total_seconds())
    return [*out, exp, rate]


def transfer_metrics(engine: Engine) -> list[Metric]:
    """Copies not yet verified per node and state, with their bytes, and the oldest such file's age."""
    r = replicas.c
    q = (
        select(r.node, r.state, func.count(), func.sum(files.c.size_bytes), func.min(files.c.registered_at))
        .join(files, files.c.id == r.file_id)
        .where(r.state.in_(BACKLOG))
        .group_by(r.node, r.state)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    labels = ["node", "state"]
    n_files = gauge("gozen_transfer_backlog_files", "Copies to storage nodes not yet verified.", labels)
    n_bytes = gauge("gozen_transfer_backlog_bytes", "Bytes of the copies not yet verified.", labels)
    oldest: datetime | None = None
    for node, state, n, size, first in sorted(rows, key=lambda row: (row[0] or "", row[1])):
        n_files.add_metric([node or "", str(state)], n)
        n_bytes.add_metric([node or "", str(state)], int(size or 0))
        oldest = first if oldest is None or (first is not None and first < oldest) else oldest
    age = gauge("gozen_transfer_oldest_unreplicated_age_seconds", "Age of the oldest file short of copies (0: none).")
    age.add_metric([], (utcnow() - oldest).total_seconds() if oldest else 0.0)
    return [n_files, n_bytes, age]


def copied_metrics(engine: Engine, settled: SettledCopies) -> list[Metric]:
    """Copies verified on each storage node, ever (those retention expired since included)."""
    sums = settled.totals(engine)
    n = counter("gozen_transfer_copied_files", "Copies verified on the node (retention's expired included).", ["node"])
    b = counter("gozen_transfer_copied_bytes", "Bytes of those copies: rate() is the copy rate.", ["node"])
    for node, (count, size) in sorted(sums.items()):
        n.add_metric([node], count)
        b.add_metric([node], size)
    return [n, b]


def archive_metrics(engine: Engine, mark: ArchiveMark) -> list[Metric]:
    oldest = mark.oldest_untaken(engine)
    fam = gauge("gozen_archive_files", "Files by export state (packaged, exported, acknowledged, ...).", ["state"])
    for state, n in sorted(mark.counts(engine).items()):
        fam.add_metric([state], n)
    lag = gauge("gozen_archive_lag_seconds", "Age of the oldest catalogued file the archive has not taken (0: none).")
    lag.add_metric([], (utcnow() - oldest).total_seconds() if oldest else 0.0)
    return [fam, lag]


def queue_metrics(engine: Engine) -> list[Metric]:
    status = queue_status(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            # the rank, not the name: the (state, priority_rank, ...) index answers without reading the rows
            select(recipes.c.state, recipes.c.priority_rank, func.count()).group_by(
                recipes.c.state, recipes.c.priority_rank
            )
        ).all()
    mode = gauge("gozen_queue_mode", "1 for the queue's mode (normal, maintenance).", ["mode"])
    mode.add_metric([str(status.mode)], 1.0)
    paused = gauge("gozen_queue_paused", "1 while the queue is paused.")
    paused.add_metric([], float(status.paused))
    server = gauge("gozen_queue_server_up", "1 while a queue server runs.")
    server.add_metric([], float(status.server is not None))
    fam = gauge("gozen_queue_recipes", "Recipes by state and priority.", ["state", "priority"])
    for state, rank, n in sorted(rows):
        fam.add_metric([str(state), PRIORITY_OF_RANK.get(rank, str(rank))], n)
    return [mode, paused, server, fam]


def outbox_metrics(engine: Engine) -> list[Metric]:
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state)).all()
    fam = gauge("gozen_outbox_depth", "Messages to Slack and others by state (pending, sent, failed, ...).", ["state"])
    for state, n in sorted(rows):
        fam.add_metric([str(state)], n)
    return [fam]


def restart_metrics(engine: Engine) -> list[Metric]:
    q = (
        select(events.c.host, events.c.subject, func.count())
        .where(events.c.kind == "process_exited")
        .group_by(events.c.host, events.c.subject)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    fam = counter("gozen_program_restarts", "Unexpected exits (supervisord restarts it).", ["host", "program"])
    for host, program, n in sorted(rows):
        fam.add_metric([host, program], n)
    return [fam]


def feed_metrics(engine: Engine) -> list[Metric]:
    """Each alert feed's last read, and the alerts it brought."""
    states = feed_states(engine)
    with engine.connect() as conn:
        seen = {f: int(n) for f, n in conn.execute(select(alerts.c.feed, func.count()).group_by(alerts.c.feed))}
    ok = gauge("gozen_feed_read_ok", "1 when the feed's last read worked (new items or not modified).", ["feed"])
    age = gauge("gozen_feed_last_read_age_seconds", "Since a courier last read the feed.", ["feed"])
    n = counter("gozen_alerts", "Alerts read from the feed, each once.", ["feed"])
    now = utcnow()
    for feed in FEEDS:
        if (st := states.get(feed)) is not None:
            ok.add_metric([feed], float(st.status.startswith("ok") or st.status == "not modified"))
            age.add_metric([feed], (now - st.checked_at).total_seconds())
        n.add_metric([feed], seen.get(feed, 0))
    return [ok, age, n]


# -- the collector ----------------------------------------------------------------------------------


class GozenCollector(Collector):
    """Every family above, read at each scrape; with the database away, only `gozen_database_up 0`."""

    def __init__(self, cfg: Config, engine: Engine) -> None:
        self.cfg, self.engine = cfg, engine
        self.settled = SettledDaq()
        self.copies = SettledCopies()
        self.archive = ArchiveMark()
        self.lock = threading.Lock()  # scrapes run in a thread pool; the in-memory sums are shared

    def parts(self) -> list[Callable[[], list[Metric]]]:
        e = self.engine
        parts: list[Callable[[], list[Metric]]] = [
            lambda: board_metrics(self.cfg, snapshot(e)),
            lambda: fleet_metrics(e),
            lambda: daq_metrics(self.cfg, e, self.settled),
            lambda: transfer_metrics(e),
            lambda: copied_metrics(e, self.copies),
            lambda: queue_metrics(e),
            lambda: outbox_metrics(e),
            lambda: feed_metrics(e),
            lambda: restart_metrics(e),
        ]
        if self.cfg.archive is not None:
            parts.append(lambda: archive_metrics(e, self.archive))
        return parts

    def collect(self) -> Iterator[Metric]:
        t0 = time.perf_counter()
        out: list[Metric] = []
        up = 1.0
        with self.lock:
            try:
                for part in self.parts():
                    out += part()
            except SQLAlchemyError as err:
                if not is_outage(err):
                    raise
                log.warning("metrics: the database is away (%s): only gozen_database_up 0", type(err).__name__)
                out, up = [], 0.0
        db = gauge("gozen_database_up", "1 when the database answered this scrape (0: nothing else is exported).")
        db.add_metric([], up)
        took = gauge("gozen_metrics_scrape_duration_seconds", "How long gozen took to gather this scrape.")
        took.add_metric([], time.perf_counter() - t0)
        yield from [*out, db, took]
