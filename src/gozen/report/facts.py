"""What a night did, read from the database: the facts every plot and the summary are drawn from.

The only module of the report that queries the observatory's tables (nightly_reports is
`report/store.py`'s). Exposures belong to the span by their first frame (start_at).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select

from gozen.db.tables import (
    daq_files,
    exports,
    exposures,
    files,
    recipe_events,
    recipes,
    replicas,
    status_history,
)

WEATHER_KEYS = ("weather.humidity_pct", "weather.cloud_pct", "weather.wind_ms", "weather.temperature_c")
SAFETY_KEY = "safety.safe"
RECIPE_END_KINDS = ("done", "failed", "aborted", "cancelled", "expired", "preempted", "interrupted", "requeued")


@dataclass(frozen=True)
class ExposureFact:
    exp_id: int
    start_at: datetime
    end_at: datetime | None
    state: str
    recipe: str  # the recipe's name, else "object OBJECT (no recipe)"
    data_type: str


@dataclass(frozen=True)
class FileFact:
    exp_id: int
    det_id: int
    created_at: datetime
    size_bytes: int
    frames_written: int
    frames_missing: int
    state: str


@dataclass(frozen=True)
class RecipeRun:
    """A recipe executing from one `started` to what ended it (None: still running at the span's end)."""

    name: str
    start_at: datetime
    end_at: datetime | None
    outcome: str


@dataclass
class NightFacts:
    start_at: datetime
    end_at: datetime
    exposures: list[ExposureFact] = field(default_factory=list)
    files: list[FileFact] = field(default_factory=list)
    runs: list[RecipeRun] = field(default_factory=list)
    readings: dict[str, list[tuple[datetime, Any]]] = field(default_factory=dict)  # status_history by key
    registered: list[datetime] = field(default_factory=list)  # catalogued files of the night's exposures
    verified: list[datetime] = field(default_factory=list)  # their replicas verified
    exported: list[datetime] = field(default_factory=list)  # their archive copies verified
    n_registered: int = 0
    n_replicas_wanted: int = 0
    n_export_wanted: int = 0

    @property
    def frames(self) -> int:
        return sum(f.frames_written for f in self.files)

    @property
    def frames_lost(self) -> int:
        return sum(f.frames_missing for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    def lost_per_chip(self) -> dict[int, int]:
        out: dict[int, int] = defaultdict(int)
        for f in self.files:
            out[f.det_id] += f.frames_missing
        return dict(out)

    def recipes(self) -> list[str]:
        """Recipe names in the order they first exposed."""
        return list(dict.fromkeys(e.recipe for e in self.exposures))

    def safe_fraction(self) -> float | None:
        """The part of the span (from the first reading on) during which safety.safe was true."""
        points = self.readings.get(SAFETY_KEY) or []
        if not points:
            return None
        safe_s = 0.0
        for (t, v), (t_next, _) in zip(points, [*points[1:], (self.end_at, None)], strict=True):
            if v is True:
                safe_s += (t_next - t).total_seconds()
        total = (self.end_at - points[0][0]).total_seconds()
        return safe_s / total if total > 0 else None


def exposures_between(engine: Engine, start_at: datetime, end_at: datetime) -> int:
    """How many exposures started in [start_at, end_at)."""
    with engine.connect() as conn:
        q = select(func.count()).where(exposures.c.start_at >= start_at, exposures.c.start_at < end_at)
        return int(conn.execute(q).scalar_one())


def night_facts(engine: Engine, start_at: datetime, end_at: datetime) -> NightFacts:
    facts = NightFacts(start_at, end_at)
    with engine.connect() as conn:
        in_span = and_(exposures.c.start_at >= start_at, exposures.c.start_at < end_at)
        q = select(exposures).where(in_span).order_by(exposures.c.start_at, exposures.c.exp_id)
        facts.exposures = [
            ExposureFact(
                r.exp_id,
                r.start_at,
                r.end_at,
                r.state,
                r.recipe_name or f"object {r.object} (no recipe)",
                r.data_type,
            )
            for r in conn.execute(q)
        ]
        exp_ids = select(exposures.c.exp_id).where(in_span)
        q2 = select(daq_files).where(daq_files.c.exp_id.in_(exp_ids)).order_by(daq_files.c.created_at)
        facts.files = [
            FileFact(r.exp_id, r.det_id, r.created_at, r.size_bytes, r.frames_written, r.frames_missing, r.state)
            for r in conn.execute(q2)
        ]
        facts.runs = _recipe_runs(conn, start_at, end_at)
        q3 = (
            select(status_history.c.key, status_history.c.time, status_history.c.value)
            .where(
                status_history.c.time >= start_at,
                status_history.c.time < end_at,
                (status_history.c.key.in_([*WEATHER_KEYS, SAFETY_KEY])) | (status_history.c.key.like("df.%.used_pct")),
            )
            .order_by(status_history.c.time)
        )
        for key, t, v in conn.execute(q3):
            facts.readings.setdefault(key, []).append((t, v))
        night_files = select(files.c.id).where(files.c.exp_id.in_(exp_ids))
        facts.registered = list(
            conn.execute(
                select(files.c.registered_at).where(files.c.exp_id.in_(exp_ids)).order_by(files.c.registered_at)
            ).scalars()
        )
        facts.n_registered = len(facts.registered)
        facts.n_replicas_wanted = int(
            conn.execute(select(func.count()).where(replicas.c.file_id.in_(night_files))).scalar_one()
        )
        facts.verified = list(
            conn.execute(
                select(replicas.c.verified_at)
                .where(replicas.c.file_id.in_(night_files), replicas.c.verified_at.is_not(None))
                .order_by(replicas.c.verified_at)
            ).scalars()
        )
        facts.n_export_wanted = int(
            conn.execute(
                select(func.count()).where(exports.c.file_id.in_(night_files), exports.c.state != "not_selected")
            ).scalar_one()
        )
        facts.exported = list(
            conn.execute(
                select(exports.c.exported_at)
                .where(exports.c.file_id.in_(night_files), exports.c.exported_at.is_not(None))
                .order_by(exports.c.exported_at)
            ).scalars()
        )
    return facts


def _recipe_runs(conn: Connection, start_at: datetime, end_at: datetime) -> list[RecipeRun]:
    """Each `started` in the span paired with the next event that ended that run."""
    q = (
        select(recipe_events.c.recipe_uuid, recipe_events.c.time, recipe_events.c.kind, recipes.c.name)
        .join(recipes, recipes.c.uuid == recipe_events.c.recipe_uuid, isouter=True)
        .where(recipe_events.c.time >= start_at, recipe_events.c.time < end_at)
        .where(recipe_events.c.kind.in_(["started", *RECIPE_END_KINDS]))
        .order_by(recipe_events.c.id)
    )
    open_runs: dict[str, tuple[str, datetime]] = {}
    runs: list[RecipeRun] = []
    for uuid, t, kind, name in conn.execute(q):
        if kind == "started":
            open_runs[uuid] = (name or uuid[:8], t)
        elif uuid in open_runs:
            label, began = open_runs.pop(uuid)
            runs.append(RecipeRun(label, began, t, kind))
    runs += [RecipeRun(label, began, None, "executing") for label, began in open_runs.values()]
    return sorted(runs, key=lambda r: r.start_at)
