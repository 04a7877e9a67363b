"""The queue's tables: recipes and their history, and the server's state (mode, paused, abort, activity).

The only module that reads or writes `recipes`, `recipe_events` and `queue_state`. Operators
control the queue through typed functions (`set_mode`, `set_paused`, `request_abort`), each
recorded as an event naming who; the server reports itself with `server_started`,
`set_activity` and `server_stopped`, and everyone reads the whole state with `queue_status`.
"""

from __future__ import annotations

import gc
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gozen.db.events import Severity, record_event
from gozen.db.states import QueueMode, RecipeState
from gozen.db.tables import events, queue_state, recipe_events, recipes
from gozen.db.types import utcnow
from gozen.queue.recipe import PRIORITY_OF_RANK, PRIORITY_RANK, Recipe, RecipeError
from gozen.service import this_host

if TYPE_CHECKING:
    from gozen.daq.catalog import ExposureRequest

FINAL = (
    RecipeState.DONE,
    RecipeState.FAILED,
    RecipeState.ABORTED,
    RecipeState.EXPIRED,
    RecipeState.CANCELLED,
    RecipeState.INTERRUPTED,
)
DEMO_SUBMITTER = "demo survey"
DEMO_NAME = "Queue-Observer DEMO {n:03d}"


@dataclass(frozen=True)
class RecipeRow:
    uuid: str
    name: str
    priority: str
    priority_rank: int
    state: RecipeState
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
        RecipeState(r.state),
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
    now = utcnow()
    row = _columns(recipe, fields) | {
        "uuid": recipe.uuid,
        "state": RecipeState.QUEUED,
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
            what = f"{recipe.name} submitted"
            conn.execute(
                insert(events).values(**_told_row("recipe_submitted", what, by, "info", {"uuid": recipe.uuid}))
            )
    except IntegrityError:
        raise RecipeError(f"uuid: a recipe with uuid {recipe.uuid} exists already") from None
    got = get(engine, recipe.uuid)
    assert got is not None
    return got


def _columns(recipe: Recipe, fields: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """A recipe's row as submitted or revised: its body and the columns the scheduler reads, progress at the start."""
    target = recipe.target(fields)
    return {
        "name": recipe.name,
        "priority": recipe.priority,
        "priority_rank": PRIORITY_RANK[recipe.priority],
        "project": recipe.project,
        "observer": recipe.observer,
        "not_before": recipe.window.not_before,
        "not_after": recipe.window.not_after,
        "ra_deg": target[0] if target else None,
        "dec_deg": target[1] if target else None,
        "body": recipe.model_dump(mode="json"),
        "progress": {"step": 0, "done": 0},
    }


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
    q = (
        select(recipes)
        .where(recipes.c.state == RecipeState.QUEUED)
        .order_by(recipes.c.priority_rank, recipes.c.submitted_at)
    )
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q.limit(limit))]


def closed_windows(engine: Engine, now: datetime) -> list[tuple[str, datetime]]:
    """Queued recipes whose window closed before now."""
    q = select(recipes.c.uuid, recipes.c.not_after).where(
        recipes.c.state == RecipeState.QUEUED, recipes.c.not_after < now
    )
    with engine.connect() as conn:
        return [(u, t) for u, t in conn.execute(q)]


def in_state(
    engine: Engine, states: tuple[RecipeState, ...], limit: int = 50, newest_first: bool = True
) -> list[RecipeRow]:
    order = recipes.c.finished_at.desc() if newest_first else recipes.c.submitted_at
    q = select(recipes).where(recipes.c.state.in_(states)).order_by(order, recipes.c.submitted_at.desc())
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q.limit(limit))]


def set_state(
    engine: Engine, uuid: str, state: RecipeState, message: str, kind: str | None = None, **values: Any
) -> None:
    """Move a recipe to a state and record why in its history. A recipe that stops executing takes
    an abort asked of it along: it must never stop a later recipe."""
    now = utcnow()
    if state in FINAL:
        values.setdefault("finished_at", now)
    with engine.begin() as conn:
        conn.execute(update(recipes).where(recipes.c.uuid == uuid).values(state=state, message=message, **values))
        conn.execute(insert(recipe_events).values(recipe_uuid=uuid, time=now, kind=kind or state, message=message))
        if state != RecipeState.EXECUTING:
            abort = conn.execute(select(queue_state.c.value).where(queue_state.c.key == ABORT)).scalar()
            if isinstance(abort, dict) and abort.get("uuid") == uuid:
                conn.execute(delete(queue_state).where(queue_state.c.key == ABORT))


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
            .where(recipes.c.uuid == uuid, recipes.c.state == RecipeState.QUEUED)
            .values(state=RecipeState.CANCELLED, message=f"cancelled by {by}", finished_at=utcnow())
        ).rowcount
        if n:
            conn.execute(
                insert(recipe_events).values(
                    recipe_uuid=uuid, time=utcnow(), kind=RecipeState.CANCELLED, message=f"by {by}"
                )
            )
            name = conn.execute(select(recipes.c.name).where(recipes.c.uuid == uuid)).scalar()
            row = _told_row("recipe_cancelled", f"{name} cancelled", by, "info", {"uuid": uuid})
            conn.execute(insert(events).values(**row))
            return "cancelled"
    if request_abort(engine, by, uuid):
        return "abort requested"
    r = get(engine, uuid)
    if r is None:
        raise RecipeError(f"uuid: no recipe {uuid}")
    raise RecipeError(f"uuid: recipe {uuid} is {r.state}: nothing to cancel")


def move_up(engine: Engine, uuid: str, by: str) -> str:
    """Raise a queued recipe's priority one level (low -> normal -> high; interrupt is for alerts).
    Returns its new priority; RecipeError when it is not queued or already high or interrupt."""
    r = get(engine, uuid)
    if r is None:
        raise RecipeError(f"uuid: no recipe {uuid}")
    if r.state != RecipeState.QUEUED:
        raise RecipeError(f"uuid: recipe {uuid} is {r.state}: only a queued recipe can move up")
    if r.priority_rank <= PRIORITY_RANK["high"]:
        raise RecipeError(f"priority: recipe {uuid} is {r.priority} already: it cannot move further up")
    rank = r.priority_rank - 1
    priority = PRIORITY_OF_RANK[rank]
    body_now = r.recipe.model_dump(mode="json") | {"priority": priority}
    with engine.begin() as conn:
        n = conn.execute(
            update(recipes)
            .where(recipes.c.uuid == uuid, recipes.c.state == RecipeState.QUEUED)
            .values(priority=priority, priority_rank=rank, body=body_now, revision=recipes.c.revision + 1)
        ).rowcount
        if not n:
            raise RecipeError(f"uuid: recipe {uuid} left the queue meanwhile")
        conn.execute(
            insert(recipe_events).values(
                recipe_uuid=uuid, time=utcnow(), kind="moved_up", message=f"moved up to {priority} by {by}"
            )
        )
    _told(engine, "recipe_moved_up", f"{r.name} moved up to {priority}", by, "info", {"uuid": uuid})
    return priority


def revise(engine: Engine, recipe: Recipe, by: str, why: str, fields: dict[str, tuple[float, float]]) -> RecipeRow:
    """Replace a queued recipe by a new version with the same uuid (a new alert for the same source
    updates or extends its follow-up); its progress starts again. RecipeError when it is not queued."""
    values = _columns(recipe, fields) | {"revision": recipes.c.revision + 1}
    with engine.begin() as conn:
        n = conn.execute(
            update(recipes).where(recipes.c.uuid == recipe.uuid, recipes.c.state == RecipeState.QUEUED).values(**values)
        ).rowcount
        if not n:
            raise RecipeError(f"uuid: recipe {recipe.uuid} is not queued: it cannot be revised")
        conn.execute(
            insert(recipe_events).values(
                recipe_uuid=recipe.uuid, time=utcnow(), kind="revised", message=f"{why} ({by})"
            )
        )
    got = get(engine, recipe.uuid)
    assert got is not None
    return got


@dataclass(frozen=True)
class RecipeListing:
    """A recipe as the queue's lists show it: without its body, which may be large."""

    uuid: str
    name: str
    priority: str
    state: RecipeState
    progress: dict[str, Any]
    message: str | None
    started_at: datetime | None
    finished_at: datetime | None


def listed(engine: Engine, states: tuple[RecipeState, ...], limit: int) -> list[RecipeListing]:
    """Recipes in these states without their bodies, newest finished first (as `in_state` orders them)."""
    q = (
        select(*(recipes.c[f] for f in RecipeListing.__dataclass_fields__))
        .where(recipes.c.state.in_(states))
        .order_by(recipes.c.finished_at.desc(), recipes.c.submitted_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            RecipeListing(r.uuid, r.name, r.priority, RecipeState(r.state), dict(r.progress or {}), *r[5:])
            for r in conn.execute(q)
        ]


def body(engine: Engine, uuid: str) -> Recipe | None:
    """A stored recipe, read alone (only a queued recipe changes: `move_up`, `revise`)."""
    with engine.connect() as conn:
        data = conn.execute(select(recipes.c.body).where(recipes.c.uuid == uuid)).scalar()
    return None if data is None else Recipe.model_validate(data)


# -- the server's state -------------------------------------------------------
MODE, PAUSED, ABORT, SERVER, ACTIVITY = "mode", "paused", "abort", "server", "activity"


@dataclass(frozen=True)
class QueueStatus:
    """The queue server's state as the page, the CLI and the server itself read it."""

    mode: QueueMode
    paused: bool
    abort: dict[str, Any] | None  # {"uuid": the executing recipe's, "by": who} while an abort is pending
    server: dict[str, Any] | None  # {"pid", "host", "since"} while a server runs
    activity: str
    activity_at: datetime | None


def queue_status(engine: Engine) -> QueueStatus:
    with engine.connect() as conn:
        rows = {r.key: r for r in conn.execute(select(queue_state))}

    def value(key: str) -> Any:
        return rows[key].value if key in rows else None

    return QueueStatus(
        mode=QueueMode(value(MODE) or QueueMode.NORMAL),
        paused=bool(value(PAUSED)),
        abort=value(ABORT) or None,
        server=value(SERVER) or None,
        activity=str((value(ACTIVITY) or {}).get("text", "")),
        activity_at=rows[ACTIVITY].updated_at if ACTIVITY in rows else None,
    )


def set_mode(engine: Engine, mode: QueueMode, by: str | None = None) -> None:
    """normal: recipes run; maintenance: nothing new starts."""
    mode = QueueMode(mode)  # ValueError naming a mode that does not exist
    _put(engine, MODE, mode)
    severity: Severity = "warning" if mode == QueueMode.MAINTENANCE else "info"
    _told(engine, "queue_mode", f"queue mode set to {mode}", by, severity, {"key": MODE, "value": mode})


def set_paused(engine: Engine, paused: bool, by: str | None = None) -> None:
    """Paused: nothing new starts until resumed (the executing recipe goes on)."""
    _put(engine, PAUSED, paused)
    kind, what = ("queue_paused", "queue paused") if paused else ("queue_resumed", "queue resumed")
    _told(engine, kind, what, by, "warning" if paused else "info", {"key": PAUSED, "value": paused})


def request_abort(engine: Engine, by: str | None = None, uuid: str | None = None) -> bool:
    """Ask the server to abort the executing recipe (or only `uuid`, if it is the one executing).

    False, and nothing stored or recorded, when nothing (or not that recipe) is executing: an
    abort is of one recipe, so it can never stop a later one.
    """
    by = by or "an operator"
    with engine.begin() as conn:
        q = select(recipes.c.uuid).where(recipes.c.state == RecipeState.EXECUTING)
        running = conn.execute(q if uuid is None else q.where(recipes.c.uuid == uuid)).scalars().first()
        if running is None:
            return False
        value = {"uuid": running, "by": by}
        conn.execute(delete(queue_state).where(queue_state.c.key == ABORT))
        conn.execute(insert(queue_state).values(key=ABORT, value=value, updated_at=utcnow()))
    what = "abort of " + ("the running recipe" if uuid is None else f"recipe {uuid}")
    _told(engine, "queue_abort", what, by, "warning", {"key": ABORT, "value": value})
    return True


def abort_asked_by(engine: Engine, uuid: str) -> str | None:
    """Who asked to abort this executing recipe; None when nobody did."""
    abort = queue_status(engine).abort
    return str(abort.get("by") or "an operator") if abort and abort.get("uuid") == uuid else None


def server_started(engine: Engine, host: str) -> None:
    """The server says it runs (the page shows its pid); an abort left from before is dropped."""
    _clear(engine, ABORT)
    _put(engine, SERVER, {"pid": os.getpid(), "host": host, "since": utcnow().isoformat()})


def server_stopped(engine: Engine) -> None:
    _clear(engine, SERVER)


def set_activity(engine: Engine, text: str, host: str) -> None:
    """What the server is doing, one line for the page (its time tells whether the server is alive)."""
    _put(engine, ACTIVITY, {"text": text, "pid": os.getpid(), "host": host})


def _put(engine: Engine, key: str, value: Any) -> None:
    with engine.begin() as conn:
        conn.execute(delete(queue_state).where(queue_state.c.key == key))
        conn.execute(insert(queue_state).values(key=key, value=value, updated_at=utcnow()))


def _clear(engine: Engine, key: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(queue_state).where(queue_state.c.key == key))


def _told(engine: Engine, kind: str, what: str, by: str | None, severity: Severity, data: dict[str, Any]) -> None:
    """An operator's action as an event naming who."""
    record_event(engine, **_told_row(kind, what, by, severity, data))


def _told_row(kind: str, what: str, by: str | None, severity: Severity, data: dict[str, Any]) -> dict[str, Any]:
    """The event of an action on the queue (source `queue`, naming who), to record or insert in a transaction."""
    return {
        "time": utcnow(),
        "host": this_host(),
        "source": "queue",
        "kind": kind,
        "subject": "queue",
        "severity": severity,
        "message": f"{what} by {by or 'someone unnamed'}",
        "data": data | {"by": by},
    }


def queue_version(engine: Engine) -> int | None:
    """Changes whenever the queue does: every submission, state change, move and revision writes a
    recipe event, so the newest event's id is one index lookup instead of reading every queued row."""
    with engine.connect() as conn:
        return conn.execute(select(func.max(recipe_events.c.id))).scalar()


class CandidateCache:
    """Queued recipes as scheduler candidates, parsed once per revision.

    A pass reads only the recipes that have a recipe event newer than the last pass (every
    submission, state change, move and revision writes one), and parses those that are queued at a
    revision it has not seen. Every FULL_READ_EVERY_S it also lists every queued (uuid, revision):
    on PostgreSQL an event can commit after a newer one was read, and the full read catches it.
    """

    FULL_READ_EVERY_S = 60.0

    def __init__(self) -> None:
        self.by_uuid: dict[str, Any] = {}
        self.revision: dict[str, int] = {}  # the revision each cached candidate was read at
        self._columns: Any = None
        self._version: int | None = None
        self._event_id: int | None = None  # the newest recipe event the cache has read up to
        self._full_at = float("-inf")  # monotonic time of the last full read

    def columns(self, engine: Engine) -> Any:
        """The queued candidates as scheduler Columns, rebuilt only when the queue changed (one index
        lookup, `queue_version`, when it did not)."""
        from gozen.queue.scheduler import Columns

        version = queue_version(engine)
        if self._columns is None or version != self._version:
            self._columns = Columns(self.queued(engine))
            self._version = version
        return self._columns

    def queued(self, engine: Engine) -> list[Any]:
        from gozen.queue.scheduler import Candidate

        full = self._event_id is None or time.monotonic() - self._full_at > self.FULL_READ_EVERY_S
        with engine.connect() as conn:
            newest = conn.execute(select(func.max(recipe_events.c.id))).scalar()
            if full:
                q = select(recipes.c.uuid, recipes.c.revision).where(recipes.c.state == RecipeState.QUEUED)
                queued_now: dict[str, int] = dict(conn.execute(q).all())  # fetched at once: 10,000 fetchone() ~30 ms
                gone: list[str] = [u for u in self.by_uuid if u not in queued_now]
            else:
                touched = select(recipe_events.c.recipe_uuid).where(recipe_events.c.id > self._event_id).distinct()
                q = select(recipes.c.uuid, recipes.c.state, recipes.c.revision).where(recipes.c.uuid.in_(touched))
                queued_now, gone = {}, []
                for row in conn.execute(q).all():
                    if row.state == RecipeState.QUEUED:
                        queued_now[row.uuid] = row.revision
                    else:
                        gone.append(row.uuid)
            missing = [u for u, rev in queued_now.items() if self.revision.get(u) != rev]
            for i in range(0, len(missing), 500):
                q = select(recipes).where(recipes.c.uuid.in_(missing[i : i + 500]))
                for r in conn.execute(q):
                    self.revision[r.uuid] = r.revision
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
        for u in gone:
            self.by_uuid.pop(u, None)
            self.revision.pop(u, None)
        self._event_id = newest if newest is not None else 0
        if full:
            self._full_at = time.monotonic()
        return list(self.by_uuid.values())
