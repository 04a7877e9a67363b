"""What the queue looks like now, and the night's plan: shared by `gozen queue ls|plan` and the web page."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import Engine

from gozen.config import Config
from gozen.db.states import RecipeState
from gozen.db.types import utcnow
from gozen.queue import store
from gozen.queue.recipe import PRIORITY_OF_RANK, PRIORITY_RANK, step_kind
from gozen.queue.scheduler import sky_at, verdicts
from gozen.queue.server import safety

SERVER_SILENT_S = 60.0
EXECUTED_SHOWN = 50


@dataclass(frozen=True)
class RecipeSummary:
    """What the page shows of an executing recipe's body: read once per recipe, not per view."""

    description: str | None
    step_kinds: tuple[str, ...]


class SummaryCache:
    """Recipe summaries by (database, uuid): a stored recipe's body never changes after submission."""

    def __init__(self, max_entries: int = 256) -> None:
        self._entries: OrderedDict[tuple[str, str], RecipeSummary] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, engine: Engine, uuid: str) -> RecipeSummary | None:
        key = (str(engine.url), uuid)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        recipe = store.body(engine, uuid)
        if recipe is None:
            return None
        summary = RecipeSummary(recipe.description, tuple(step_kind(s) for s in recipe.steps))
        with self._lock:
            self._entries[key] = summary
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return summary


SUMMARIES = SummaryCache()


def queue_view(
    cfg: Config,
    engine: Engine,
    now: datetime | None = None,
    limit: int = 200,
    cache: store.CandidateCache | None = None,
) -> dict[str, Any]:
    now = now or utcnow()
    st = store.queue_status(engine)
    cands = (cache or store.CandidateCache()).queued(engine)
    safe, why = safety(engine)
    shown = list(islice(verdicts(cands, sky_at(cfg.site, now), cfg.site, safe, why), limit))
    seen_at = st.activity_at
    alive = bool(st.server) and seen_at is not None and (now - seen_at).total_seconds() < SERVER_SILENT_S
    ex = _executing(engine)
    return {
        "time": now.isoformat(),
        "server": st.server if alive else None,
        "mode": str(st.mode),
        "paused": st.paused,
        "activity": st.activity if alive else "queue:server is not running",
        "safe_to_observe": safe,
        "executing": ex,
        "queued": [
            {
                "uuid": v.candidate.uuid,
                "name": v.candidate.name,
                "priority": PRIORITY_OF_RANK[v.candidate.rank],
                "can_move_up": v.candidate.rank > PRIORITY_RANK["high"],  # as store.move_up allows
                "project": v.candidate.recipe.project,
                "runnable": v.runnable,
                "waits_for": v.reason or ("runs next" if i == first_runnable(shown) else "lower in the order"),
                "alt_deg": None if v.alt_deg is None else round(v.alt_deg, 1),
                "submitted_at": v.candidate.submitted_at.isoformat(),
            }
            for i, v in enumerate(shown)
        ],
        "queued_total": len(cands),
        "executed": [
            {
                "uuid": r.uuid,
                "name": r.name,
                "state": str(r.state),
                "message": r.message,
                "started_at": r.started_at.isoformat() if r.started_at else None,
                "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            }
            for r in store.listed(engine, store.FINAL, EXECUTED_SHOWN)
        ],
    }


def _executing(engine: Engine) -> dict[str, Any] | None:
    rows = store.listed(engine, (RecipeState.EXECUTING,), 1)
    summary = SUMMARIES.get(engine, rows[0].uuid) if rows else None
    if not rows or summary is None or not summary.step_kinds:
        return None
    e, kinds = rows[0], summary.step_kinds
    progress = e.progress
    step = int(progress.get("step", 0))
    return {
        "uuid": e.uuid,
        "name": e.name,
        "description": summary.description,
        "priority": e.priority,
        "step": min(step + 1, len(kinds)),
        "steps": len(kinds),
        "step_kind": kinds[min(step, len(kinds) - 1)],
        "exposures_done": int(progress.get("done", 0)),
        "started_at": e.started_at.isoformat() if e.started_at else None,
    }


def first_runnable(verdicts: list[Any]) -> int:
    return next((i for i, v in enumerate(verdicts) if v.runnable), -1)
