"""The queue's tables: recipes and their history, and the server's state (mode, paused, activity)."""

from __future__ import annotations

import gc
import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gozen.db.events import record_event
from gozen.db.tables import queue_state, recipe_events, recipes
from gozen.db.types import utcnow
from gozen.queue.recipe import PRIORITY_RANK, Recipe, RecipeError

if TYPE_CHECKING:
    from gozen.daq.catalog import ExposureRequest

FINAL = ("done", "failed", "aborted", "expired", "cancelled", "interrupted")
DEMO_SUBMITTER = "demo survey"
DEMO_NAME = "Queue-Observer DEMO {n:03d}"


@dataclass(frozen=True)
class RecipeRow:
    uuid: str
    name: str
    priority: str
    priority_rank: int
    state: str
    recipe: Recipe
    progress: dict[str, int]
    submitted_at: datetime
    submitted_by: str
    started_at: datetime | None
    finished_at: datetime | None
    message: str | None
    ra_deg: float | None
    dec_deg: float | None

    @property
    def step(self) -> int:
        return int(self.progress.get("step", 0))


def _row(r: Any) -> RecipeRow:
    return RecipeRow(
        r.uuid,
        r.name,
        r.priority,
        r.priority_rank,
        r.state,
        Recipe.model_validate(r.body),
        dict(r.progress or {}),
        r.submitted_at,
        r.submitted_by,
        r.started_at,
        r.finished_at,
        r.message,
        r.ra_deg,
        r.dec_deg,
    )


def submit(engine: Engine, recipe: Recipe, by: str, fields: dict[str, tuple[float, float]]) -> RecipeRow:
    """Queue a recipe; RecipeError when its uuid is taken or it names a field the config does not know."""
    from gozen.queue.recipe import SlewStep

    for i, s in enumerate(recipe.steps):
        if isinstance(s, SlewStep) and s.slew.field is not None and s.slew.field not in fields:
            known = ", ".join(sorted(fields)) or "none configured"
            raise RecipeError(f"steps[{i}].slew.field: unknown field {s.slew.field!r} (known: {known})")
    target = recipe.target(fields)
    now = utcnow()
    row = {
        "uuid": recipe.uuid,
        "name": recipe.name,
        "priority": recipe.priority,
        "priority_rank": PRIORITY_RANK[recipe.priority],
        "state": "queued",
        "project": recipe.project,
        "observer": recipe.observer,
        "not_before": recipe.window.not_before,
        "not_after": recipe.window.not_after,
        "ra_deg": target[0] if target else None,
        "dec_deg": target[1] if target else None,
        "body": recipe.model_dump(mode="json"),
        "progress": {"step": 0, "done": 0},
        "submitted_at": now,
        "submitted_by": by[:64],
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(recipes).values(**row))
            conn.execute(
                insert(recipe_events).values(
                    recipe_uuid=recipe.uuid, time=now, kind="submitted", message=f"submitted by {by}"
                )
            )
    except IntegrityError:
        raise RecipeError(f"uuid: a recipe with uuid {recipe.uuid} exists already") from None
    got = get(engine, recipe.uuid)
    assert got is not None
    return got


def get(engine: Engine, uuid: str) -> RecipeRow | None:
    with engine.connect() as conn:
        r = conn.execute(select(recipes).where(recipes.c.uuid == uuid)).first()
    return _row(r) if r else None


def find(engine: Engine, prefix: str) -> RecipeRow | None:
    """By uuid or a unique uuid prefix (as people type them)."""
    with engine.connect() as conn:
        match = recipes.c.uuid.startswith(prefix.lower(), autoescape=True)  # `%` and `_` are not wildcards
        rows = conn.execute(select(recipes).where(match).limit(2)).all()
    return _row(rows[0]) if len(rows) == 1 else None


def queued(engine: Engine, limit: int = 100_000) -> list[RecipeRow]:
    """Queued recipes in their standing order: priority, then window end, then submission."""
    q = select(recipes).where(recipes.c.state == "queued").order_by(recipes.c.priority_rank, recipes.c.submitted_at)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q.limit(limit))]


def closed_windows(engine: Engine, now: datetime) -> list[tuple[str, datetime]]:
    """Queued recipes whose window closed before now."""
    q = select(recipes.c.uuid, recipes.c.not_after).where(recipes.c.state == "queued", recipes.c.not_after < now)
    with engine.connect() as conn:
        return [(u, t) for u, t in conn.execute(q)]


def in_state(engine: Engine, states: tuple[str, ...], limit: int = 50, newest_first: bool = True) -> list[RecipeRow]:
    order = recipes.c.finished_at.desc() if newest_first else recipes.c.submitted_at
    q = select(recipes).where(recipes.c.state.in_(states)).order_by(order, recipes.c.submitted_at.desc())
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q.limit(limit))]


def set_state(engine: Engine, uuid: str, state: str, message: str, kind: str | None = None, **values: Any) -> None:
    """Move a recipe to a state and record why in its history."""
    now = utcnow()
    if state in FINAL:
        values.setdefault("finished_at", now)
    with engine.begin() as conn:
        conn.execute(update(recipes).where(recipes.c.uuid == uuid).values(state=state, message=message, **values))
        conn.execute(insert(recipe_events).values(recipe_uuid=uuid, time=now, kind=kind or state, message=message))


def record(engine: Engine, uuid: str, kind: str, message: str, progress: dict[str, int] | None = None) -> None:
    now = utcnow()
    with engine.begin() as conn:
        if progress is not None:
            conn.execute(update(recipes).where(recipes.c.uuid == uuid).values(progress=progress))
        conn.execute(insert(recipe_events).values(recipe_uuid=uuid, time=now, kind=kind, message=message))


def request_exposure(engine: Engine, uuid: str, req: ExposureRequest, step: int, done: int) -> int:
    """Ask the DAQ for one exposure and note its id in the recipe's progress, in one transaction.

    A server killed while the exposure runs finds the id when it resumes and waits for that
    exposure instead of asking for it again.
    """
    from gozen.daq.catalog import insert_exposures

    now = utcnow()
    with engine.begin() as conn:
        [exp_id] = insert_exposures(conn, req, 1)
        progress = {"step": step, "done": done, "exp_id": exp_id}
        conn.execute(update(recipes).where(recipes.c.uuid == uuid).values(progress=progress))
        conn.execute(
            insert(recipe_events).values(
                recipe_uuid=uuid, time=now, kind="exposure_asked", message=f"exposure {exp_id} asked of the DAQ"
            )
        )
    return exp_id


def last_demo_number(engine: Engine) -> int:
    """The number of the newest demo survey recipe (0 if none), so numbering goes on after a restart."""
    q = (
        select(recipes.c.name)
        .where(recipes.c.submitted_by == DEMO_SUBMITTER)
        .order_by(recipes.c.submitted_at.desc())
        .limit(20)
    )
    with engine.connect() as conn:
        names = conn.execute(q).scalars().all()
    numbers = [int(m.group(1)) for n in names if (m := re.search(r"DEMO (\d+)$", n))]
    return max(numbers, default=0)


def history(engine: Engine, uuid: str) -> list[dict[str, Any]]:
    q = select(recipe_events).where(recipe_events.c.recipe_uuid == uuid).order_by(recipe_events.c.id)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def cancel(engine: Engine, uuid: str, by: str) -> str:
    """Cancel a queued recipe; an executing one is asked to abort. Returns what happened."""
    with engine.begin() as conn:
        n = conn.execute(
            update(recipes)
            .where(recipes.c.uuid == uuid, recipes.c.state == "queued")
            .values(state="cancelled", message=f"cancelled by {by}", finished_at=utcnow())
        ).rowcount
        if n:
            conn.execute(
                insert(recipe_events).values(recipe_uuid=uuid, time=utcnow(), kind="cancelled", message=f"by {by}")
            )
            return "cancelled"
    r = get(engine, uuid)
    if r is None:
        raise RecipeError(f"uuid: no recipe {uuid}")
    if r.state == "executing":
        put_state(engine, "abort", {"uuid": uuid, "by": by})
        return "abort requested"
    raise RecipeError(f"uuid: recipe {uuid} is {r.state}: nothing to cancel")


# -- the server's state -------------------------------------------------------
# Keys an operator sets: each change is an event (kind, and what it says).
OPERATOR_KEYS = ("mode", "paused", "abort")


def put_state(engine: Engine, key: str, value: Any, by: str | None = None) -> None:
    """Set a key of the server's state; mode, pause/resume and abort are also recorded as events."""
    with engine.begin() as conn:
        conn.execute(delete(queue_state).where(queue_state.c.key == key))
        conn.execute(insert(queue_state).values(key=key, value=value, updated_at=utcnow()))
    if key in OPERATOR_KEYS:
        _record_operator_change(engine, key, value, by)


def set_mode(engine: Engine, mode: str, by: str | None = None) -> None:
    put_state(engine, "mode", mode, by)


def set_paused(engine: Engine, paused: bool, by: str | None = None) -> None:
    put_state(engine, "paused", paused, by)


def request_abort(engine: Engine, by: str | None = None, uuid: str = "*") -> None:
    put_state(engine, "abort", {"uuid": uuid, "by": by or "an operator"}, by)


def _record_operator_change(engine: Engine, key: str, value: Any, by: str | None) -> None:
    if key == "abort":
        by = by or (value.get("by") if isinstance(value, dict) else None)
        target = value.get("uuid", "*") if isinstance(value, dict) else "*"
        kind, what = "queue_abort", "abort of " + ("the running recipe" if target == "*" else f"recipe {target}")
    elif key == "paused":
        kind, what = ("queue_paused", "queue paused") if value else ("queue_resumed", "queue resumed")
    else:
        kind, what = "queue_mode", f"queue mode set to {value}"
    record_event(
        engine,
        host=os.environ.get("GOZEN_HOST") or socket.gethostname(),  # supervise.render.HOST_ENV
        source="queue",
        kind=kind,
        subject="queue",
        severity="warning" if kind in ("queue_abort", "queue_paused") or value == "maintenance" else "info",
        message=f"{what} by {by or 'someone unnamed'}",
        data={"key": key, "value": value, "by": by},
    )


def get_state(engine: Engine) -> dict[str, tuple[Any, datetime]]:
    with engine.connect() as conn:
        return {
            k: (v, t)
            for k, v, t in conn.execute(select(queue_state.c.key, queue_state.c.value, queue_state.c.updated_at))
        }


def clear_state(engine: Engine, key: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(queue_state).where(queue_state.c.key == key))


class CandidateCache:
    """Queued recipes as scheduler candidates, parsed once each: a recipe does not change once
    submitted, so each pass only asks which uuids are queued and reads the new ones."""

    def __init__(self) -> None:
        self.by_uuid: dict[str, Any] = {}
        self._columns: Any = None
        self._version: int | None = None

    def columns(self, engine: Engine) -> Any:
        """The queued candidates as scheduler Columns, rebuilt only when the queue changed.

        Every submission and state change writes a recipe event, so the newest event's id tells
        whether anything changed: one index lookup, instead of reading 10,000 uuids each pass.
        """
        from gozen.queue.scheduler import Columns

        with engine.connect() as conn:
            version = conn.execute(select(func.max(recipe_events.c.id))).scalar()
        if self._columns is None or version != self._version:
            self._columns = Columns(self.queued(engine))
            self._version = version
        return self._columns

    def queued(self, engine: Engine) -> list[Any]:
        from gozen.queue.scheduler import Candidate

        with engine.connect() as conn:
            uuids = conn.execute(select(recipes.c.uuid).where(recipes.c.state == "queued")).scalars().all()
            missing = [u for u in uuids if u not in self.by_uuid]
            for i in range(0, len(missing), 500):
                q = select(recipes).where(recipes.c.uuid.in_(missing[i : i + 500]))
                for r in conn.execute(q):
                    self.by_uuid[r.uuid] = Candidate(
                        r.uuid,
                        r.name,
                        r.priority_rank,
                        r.submitted_at,
                        Recipe.model_validate(r.body),
                        r.ra_deg,
                        r.dec_deg,
                    )
        if len(missing) > 1000:
            # Thousands of parsed recipes live as long as they are queued: keep them out of the
            # garbage collector's full scans (a 0.3-0.5 s pause with 10,000: bench/queue_bench.py).
            gc.freeze()
        self.by_uuid = {u: self.by_uuid[u] for u in uuids if u in self.by_uuid}
        return list(self.by_uuid.values())
