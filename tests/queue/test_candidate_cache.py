"""The scheduler's cache of queued recipes follows every change of the queue, read a change at a time."""

from __future__ import annotations

from pathlib import Path

from gozen.db.states import RecipeState
from gozen.queue import store
from gozen.queue.recipe import parse_recipe
from tests.queue.test_hardening import body, setup, submit


def names(cache: store.CandidateCache, engine: object) -> dict[str, str]:
    return {c.name: c.recipe.priority for c in cache.columns(engine).cands}  # type: ignore[arg-type]


def test_the_cache_follows_submissions_cancels_moves_revisions_and_state_changes(tmp_path: Path) -> None:
    _, _, engine = setup(tmp_path)
    cache = store.CandidateCache()
    a = submit(engine, body("A", {"wait": {"seconds": 1}}, priority="low"))
    b = submit(engine, body("B", {"wait": {"seconds": 1}}))
    assert names(cache, engine) == {"A": "low", "B": "normal"}  # the first read lists everything
    c = submit(engine, body("C", {"wait": {"seconds": 1}}))
    store.cancel(engine, b, "t")
    store.move_up(engine, a, "t")
    assert names(cache, engine) == {"A": "normal", "C": "normal"}  # read a change at a time from here on
    revised = parse_recipe(body("C revised", {"wait": {"seconds": 2}}, uuid=c, priority="high"))
    store.revise(engine, revised, "t", "a new alert", {})
    store.set_state(engine, a, RecipeState.EXECUTING, "started")
    assert names(cache, engine) == {"C revised": "high"}
    store.set_state(engine, a, RecipeState.QUEUED, "queued again")
    assert names(cache, engine) == {"A": "normal", "C revised": "high"}


def test_a_change_the_incremental_read_missed_is_caught_by_the_full_read(tmp_path: Path) -> None:
    _, _, engine = setup(tmp_path)
    cache = store.CandidateCache()
    a = submit(engine, body("A", {"wait": {"seconds": 1}}))
    assert names(cache, engine) == {"A": "normal"}
    # A change without a recipe event (as if its event had committed before one already read):
    from sqlalchemy import update

    from gozen.db.tables import recipes

    with engine.begin() as conn:
        conn.execute(update(recipes).where(recipes.c.uuid == a).values(state=RecipeState.CANCELLED))
    submit(engine, body("B", {"wait": {"seconds": 1}}))
    assert names(cache, engine) == {"A": "normal", "B": "normal"}  # the incremental read cannot know
    cache.FULL_READ_EVERY_S = 0.0
    submit(engine, body("C", {"wait": {"seconds": 1}}))
    assert names(cache, engine) == {"B": "normal", "C": "normal"}
