"""The exposures browser's queries (read-only): a page of exposures with their files, replicas, archive
state and quick looks, filtered by night, object, recipe, data type and state; one exposure in full.
The pages are gozen.web.exposures."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, case, func, or_, select

from gozen.config import Config
from gozen.daq.catalog import DATA_TYPES
from gozen.daq.snapshot import StatusSnapshot
from gozen.db.states import DaqFileState, ExportState, ExposureState, ReplicaState
from gozen.db.tables import daq_files, exports, exposures, files, quicklook, readout_reports, replicas

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
NIGHT = re.compile(r"\d{4}-\d{2}-\d{2}")
SENT = (ExportState.EXPORTED, ExportState.ACKNOWLEDGED)  # the archive holds a verified copy


class FilterError(ValueError):
    """A query parameter the browser cannot use: 422 naming it."""

    def __init__(self, parameter: str, why: str) -> None:
        super().__init__(f"{parameter}: {why}")
        self.parameter = parameter


@dataclass(frozen=True)
class ExposureFilter:
    night: date | None = None  # the local date of the night's evening (site.timezone)
    object: str | None = None  # substring, any case
    recipe: str | None = None  # recipe name (any case) or uuid
    data_type: str | None = None
    state: str | None = None
    before: int | None = None  # exposures older than this id (the next page)
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> ExposureFilter:
        """From a query string; an empty field is no filter. Raises FilterError naming the parameter."""
        p = {k: v.strip() for k, v in params.items() if v.strip()}
        night = None
        if "night" in p:
            try:
                night = date.fromisoformat(p["night"]) if NIGHT.fullmatch(p["night"]) else None
            except ValueError:
                pass
            if night is None:
                raise FilterError("night", f"{p['night']!r} is not a date YYYY-MM-DD (the local date of its evening)")
        for name in ("object", "recipe"):
            if len(p.get(name, "")) > 128:
                raise FilterError(name, "longer than 128 characters")
        data_type = p.get("data_type", "").upper() or None
        if data_type is not None and data_type not in DATA_TYPES:
            raise FilterError("data_type", f"{p['data_type']!r}: must be one of {', '.join(DATA_TYPES)}")
        state = p.get("state", "").lower() or None
        if state is not None and state not in set(ExposureState):
            raise FilterError("state", f"{p['state']!r}: must be one of {', '.join(ExposureState)}")
        return cls(
            night,
            p.get("object"),
            p.get("recipe"),
            data_type,
            state,
            _whole(p, "before", 1, None),
            _whole(p, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT,
        )

    def query(self, **change: Any) -> str:
        """This filter as a query string (with `change`d fields), for links."""
        d = asdict(replace(self, **change))
        if d["limit"] == DEFAULT_LIMIT:
            del d["limit"]
        return urlencode({k: str(v) for k, v in d.items() if v is not None})

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"night": self.night.isoformat() if self.night else None}


def _whole(p: Mapping[str, str], name: str, low: int, high: int | None) -> int | None:
    if name not in p:
        return None
    try:
        n = int(p[name])
    except ValueError:
        raise FilterError(name, f"{p[name]!r} is not a whole number") from None
    if n < low or (high is not None and n > high):
        raise FilterError(name, f"{n} is out of range ({low}..{high or ''})")
    return n


def night_span(night: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The night named by the local date of its evening: local noon to the next local noon."""
    start = datetime.combine(night, time(12), tz)
    return start, datetime.combine(night + timedelta(days=1), time(12), tz)


# -- the list ------------------------------------------------------------------------
@dataclass
class ExposureRow:
    exp_id: int
    state: str
    object: str
    data_type: str
    recipe_name: str | None
    recipe_uuid: str | None
    requested_at: datetime
    start_at: datetime | None
    end_at: datetime | None
    n_frames: int
    n_chips: int
    stop_reason: str | None
    files_written: int = 0
    files_lost: int = 0
    bytes: int = 0
    frames_missing: int = 0
    frames_damaged: int = 0
    files_catalogued: int = 0
    replicas_verified: int = 0
    replicas_needed: int = 0
    archive: dict[str, int] = field(default_factory=dict)  # files per export state
    looked_chips: int = 0  # chips with a quick look (the mosaic exists)

    @property
    def archived(self) -> int:
        """Files the archive holds a verified copy of."""
        return sum(self.archive.get(s, 0) for s in SENT)

    @property
    def for_archive(self) -> int:
        """Files meant for the archive: every file written but those not selected."""
        return self.files_written - self.archive.get(ExportState.NOT_SELECTED, 0)

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("requested_at", "start_at", "end_at"):
            d[k] = d[k].isoformat() if d[k] else None
        d["archive"] = {"exported": self.archived, "of": self.for_archive, "by_state": self.archive}
        d["url"] = f"/exposures/{self.exp_id}"
        d["mosaic_url"] = f"/exposures/{self.exp_id}/mosaic.png" if self.looked_chips else None
        return d


@dataclass(frozen=True)
class ExposurePage:
    rows: list[ExposureRow]
    next_before: int | None  # the `before` of the next (older) page; None: this is the last
    span: tuple[datetime, datetime] | None  # the night's span, when filtered by night


LIST_COLUMNS = [
    exposures.c[c]
    for c in (
        "exp_id",
        "state",
        "object",
        "data_type",
        "recipe_name",
        "recipe_uuid",
        "requested_at",
        "start_at",
        "end_at",
        "n_frames",
        "chips",
        "stop_reason",
    )
]


def list_exposures(cfg: Config, engine: Engine, f: ExposureFilter) -> ExposurePage:
    """One page of exposures, newest first, with their files, replicas and archive state: four queries."""
    q = select(*LIST_COLUMNS).order_by(exposures.c.exp_id.desc()).limit(f.limit + 1)
    span = night_span(f.night, cfg.local_tz) if f.night else None
    if span:
        q = q.where(exposures.c.start_at >= span[0], exposures.c.start_at < span[1])
    if f.before is not None:
        q = q.where(exposures.c.exp_id < f.before)
    if f.object:
        q = q.where(func.lower(exposures.c.object).contains(f.object.lower(), autoescape=True))
    if f.recipe:
        q = q.where(or_(exposures.c.recipe_uuid == f.recipe, func.lower(exposures.c.recipe_name) == f.recipe.lower()))
    if f.data_type:
        q = q.where(exposures.c.data_type == f.data_type)
    if f.state:
        q = q.where(exposures.c.state == f.state)
    with engine.connect() as conn:
        found = conn.execute(q).all()
        rows = [_row(r._mapping) for r in found[: f.limit]]
        _add_counts(conn, {r.exp_id: r for r in rows}, cfg.transfer.replication)
    more = len(found) > f.limit
    return ExposurePage(rows, rows[-1].exp_id if more and rows else None, span)


def _row(m: Mapping[Any, Any]) -> ExposureRow:
    """The list's row of an exposure, from its LIST_COLUMNS (counts added by _add_counts)."""
    values = {c.name: m[c.name] for c in LIST_COLUMNS if c.name != "chips"}
    return ExposureRow(**values, n_chips=len(m["chips"] or []))


def _add_counts(conn: Connection, by_id: dict[int, ExposureRow], replication: int) -> None:
    """Files, bytes, replicas, export states and quick looks of a page's exposures, one query each."""
    if not by_id:
        return
    ids = list(by_id)
    written = daq_files.c.state == DaqFileState.WRITTEN
    per_exp = (
        select(
            daq_files.c.exp_id,
            func.count(case((written, 1))),
            func.count(case((~written, 1))),
            func.coalesce(func.sum(daq_files.c.size_bytes), 0),
            func.coalesce(func.sum(daq_files.c.frames_missing), 0),
            func.coalesce(func.sum(daq_files.c.frames_damaged), 0),
        )
        .where(daq_files.c.exp_id.in_(ids))
        .group_by(daq_files.c.exp_id)
    )
    for exp_id, n_written, n_lost, size, missing, damaged in conn.execute(per_exp):
        row = by_id[exp_id]
        row.files_written, row.files_lost, row.bytes = int(n_written), int(n_lost), int(size)
        row.frames_missing, row.frames_damaged = int(missing), int(damaged)
        row.replicas_needed = row.files_written * replication
    # The catalog is reached through daq_files (its exp_id is indexed) and the unique file name; one row
    # per catalogued file with its verified copies, then summed per exposure (no DISTINCT over a fan-out).
    verified = select(func.count()).where(replicas.c.file_id == files.c.id, replicas.c.state == ReplicaState.VERIFIED)
    per_file = (
        select(daq_files.c.exp_id, exports.c.state.label("export_state"), verified.scalar_subquery().label("verified"))
        .join(files, files.c.filename == daq_files.c.filename)
        .outerjoin(exports, exports.c.file_id == files.c.id)
        .where(daq_files.c.exp_id.in_(ids))
        .subquery()
    )
    catalogued = select(
        per_file.c.exp_id,
        func.count(),
        func.coalesce(func.sum(per_file.c.verified), 0),
        *[func.count(case((per_file.c.export_state == s, 1))) for s in ExportState],
    ).group_by(per_file.c.exp_id)
    for exp_id, n_files, n_verified, *by_state in conn.execute(catalogued):
        row = by_id[exp_id]
        row.files_catalogued, row.replicas_verified = int(n_files), int(n_verified)
        row.archive = {str(s): int(n) for s, n in zip(ExportState, by_state, strict=True) if n}
    looked = select(quicklook.c.exp_id, func.count()).where(quicklook.c.exp_id.in_(ids)).group_by(quicklook.c.exp_id)
    for exp_id, n in conn.execute(looked):
        by_id[exp_id].looked_chips = int(n)


# -- one exposure ----------------------------------------------------------------------
def exposure_detail(cfg: Config, engine: Engine, exp_id: int) -> dict[str, Any] | None:
    """An exposure's facts and, per chip, its file, checksum, frames, quick look, replicas and export."""
    with engine.connect() as conn:
        e = conn.execute(select(exposures).where(exposures.c.exp_id == exp_id)).first()
        if e is None:
            return None
        row = _row(e._mapping)
        _add_counts(conn, {exp_id: row}, cfg.transfer.replication)
        chips = _chips(conn, exp_id, list(e.chips or []))
    snap = StatusSnapshot.from_json(e.snapshot) if e.snapshot else None
    pointing = {k: snap.number(f"telescope.{k}") for k in ("ra_deg", "dec_deg")} if snap else {}
    return row.as_json() | {
        "obs_mode": e.obs_mode,
        "filter": e.filter,
        "project": e.project,
        "observer": e.observer,
        "fps": e.fps,
        "ra_deg": e.ra_deg,
        "dec_deg": e.dec_deg,
        "pointing": pointing if any(v is not None for v in pointing.values()) else None,  # at its start
        "finished_at": e.finished_at.isoformat() if e.finished_at else None,
        "stop_at": e.stop_at.isoformat() if e.stop_at else None,
        "chips": chips,
    }


def _chips(conn: Connection, exp_id: int, expected: list[int]) -> list[dict[str, Any]]:
    """Per chip (expected, or with a file): the DAQ's row, its catalog entry, replicas, export, quick look."""
    by_det: dict[int, dict[str, Any]] = {d: {"det_id": d, "file": None} for d in expected}
    for r in conn.execute(select(daq_files).where(daq_files.c.exp_id == exp_id)):
        m = dict(r._mapping)
        by_det.setdefault(r.det_id, {"det_id": r.det_id})["file"] = _jsonable(m)
    names = {c["file"]["filename"]: d for d, c in by_det.items() if c["file"]}
    cat = conn.execute(
        select(files.c.id, files.c.filename, files.c.checksum_xxh3, files.c.daq_state, files.c.registered_at)
        .add_columns(files.c.daq_deleted_at)
        .where(files.c.filename.in_(names))
    ).all()
    file_det = {r.id: names[r.filename] for r in cat}
    for r in cat:
        by_det[names[r.filename]]["catalog"] = _jsonable(dict(r._mapping)) | {"replicas": [], "export": None}
    q = select(replicas).where(replicas.c.file_id.in_(file_det)).order_by(replicas.c.node, replicas.c.id)
    for r in conn.execute(q):
        rep = {k: r._mapping[k] for k in ("node", "state", "path", "verified_at", "proved_at", "last_error")}
        by_det[file_det[r.file_id]]["catalog"]["replicas"].append(_jsonable(rep))
    q = select(exports.c.file_id, exports.c.state, exports.c.package, exports.c.exported_at).add_columns(
        exports.c.acknowledged_at, exports.c.last_error
    )
    for r in conn.execute(q.where(exports.c.file_id.in_(file_det))):
        by_det[file_det[r.file_id]]["catalog"]["export"] = _jsonable(dict(r._mapping))
    look_cols = [
        quicklook.c[k] for k in ("det_id", "daq_host", "made_at", "sky_adu", "noise_adu", "n_stars", "fwhm_px")
    ]
    for r in conn.execute(select(*look_cols).where(quicklook.c.exp_id == exp_id)):
        look = _jsonable(dict(r._mapping)) | {"png_url": f"/exposures/{exp_id}/chips/{r.det_id}.png"}
        by_det.setdefault(r.det_id, {"det_id": r.det_id, "file": None})["quicklook"] = look
    q = select(readout_reports.c.det_id, readout_reports.c.frames_dropped, readout_reports.c.recognised)
    for r in conn.execute(q.where(readout_reports.c.exp_id == exp_id)):
        by_det.setdefault(r.det_id, {"det_id": r.det_id, "file": None})["readout"] = {
            "frames_dropped": r.frames_dropped,
            "recognised": r.recognised,
        }
    return [{"catalog": None, "quicklook": None, "readout": None} | by_det[d] for d in sorted(by_det)]


def _jsonable(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in m.items()}


def look_summary(engine: Engine, exp_id: int) -> Any:
    """An exposure's object, start and its newest quick look (None: no look of it)."""
    q = (
        select(exposures.c.object, exposures.c.start_at, func.max(quicklook.c.made_at).label("made_at"))
        .select_from(exposures.join(quicklook))
        .where(exposures.c.exp_id == exp_id)
        .group_by(exposures.c.object, exposures.c.start_at)
    )
    with engine.connect() as conn:
        return conn.execute(q).first()
