"""`gozen queue` control from the command line: events naming who, the step limit, literal uuid prefixes."""

from __future__ import annotations

import getpass
import subprocess
from pathlib import Path

import yaml

from gozen.db.events import recent_events
from gozen.db.states import RecipeState
from gozen.queue import store
from gozen.queue.recipe import parse_recipe
from tests.conftest import gozen_cmd
from tests.queue.test_hardening import setup


def gozen(config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gozen_cmd(config_file, *args), capture_output=True, text=True, timeout=120)


def test_queue_mode_pause_resume_abort_from_the_cli_are_events_naming_the_login(tmp_path: Path) -> None:
    config_file, _, engine = setup(tmp_path)
    row = store.submit(engine, parse_recipe({"name": "one", "steps": [{"wait": {"seconds": 1}}]}), "t", {})
    store.set_state(engine, row.uuid, RecipeState.EXECUTING, "started")
    for args in (["mode", "maintenance"], ["pause"], ["resume"], ["abort"], ["mode", "normal"]):
        p = gozen(config_file, "queue", *args)
        assert p.returncode == 0, p.stderr
    who = f"{getpass.getuser()} (cli)"
    got = [(e.kind, e.message) for e in reversed(recent_events(engine, 20, source="queue"))]
    assert got == [
        ("recipe_submitted", "one submitted by t"),
        ("queue_mode", f"queue mode set to maintenance by {who}"),
        ("queue_paused", f"queue paused by {who}"),
        ("queue_resumed", f"queue resumed by {who}"),
        ("queue_abort", f"abort of the running recipe by {who}"),
        ("queue_mode", f"queue mode set to normal by {who}"),
    ]


def test_queue_abort_with_nothing_executing_says_so_and_leaves_no_abort_behind(tmp_path: Path) -> None:
    config_file, _, engine = setup(tmp_path)
    p = gozen(config_file, "queue", "abort")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "nothing is executing"
    assert store.queue_status(engine).abort is None
    assert not [e for e in recent_events(engine, 20) if e.kind == "queue_abort"]


def test_queue_submit_refuses_more_steps_than_queue_max_steps(tmp_path: Path) -> None:
    config_file, _, engine = setup(tmp_path, max_steps=5)
    f = tmp_path / "long.yaml"
    f.write_text(yaml.safe_dump({"name": "long", "steps": [{"wait": {"seconds": 1}}] * 6}))
    p = gozen(config_file, "queue", "submit", str(f))
    assert p.returncode == 2
    assert "steps: 6 steps, more than queue.max_steps (5)" in p.stderr
    assert store.queued(engine) == []


def test_a_uuid_prefix_is_matched_literally_not_as_a_sql_pattern(tmp_path: Path) -> None:
    _, _, engine = setup(tmp_path)
    row = store.submit(engine, parse_recipe({"name": "one", "steps": [{"wait": {"seconds": 1}}]}), "t", {})
    assert store.find(engine, row.uuid[:6]) == store.get(engine, row.uuid)
    assert store.find(engine, "%") is None
    assert store.find(engine, "_" * 8) is None


def test_queue_move_up_raises_priority_one_level_and_refuses_past_high(tmp_path: Path) -> None:
    config_file, _, engine = setup(tmp_path)
    body = {"name": "slow one", "priority": "low", "steps": [{"wait": {"seconds": 1}}]}
    row = store.submit(engine, parse_recipe(body), "t", {})
    for expected in ("normal", "high"):
        p = gozen(config_file, "queue", "move-up", row.uuid[:8])
        assert p.returncode == 0, p.stderr
        assert f"slow one: now {expected}" in p.stdout
    got = store.get(engine, row.uuid)
    assert got is not None and got.priority == "high" and got.priority_rank == 1 and got.recipe.priority == "high"
    p = gozen(config_file, "queue", "move-up", row.uuid)
    assert p.returncode != 0 and "priority:" in p.stderr and "high already" in p.stderr
    moved = [e for e in recent_events(engine, 20, kind="recipe_moved_up")]
    assert [e.message for e in reversed(moved)] == [
        f"slow one moved up to {p} by {getpass.getuser()} (cli)" for p in ("normal", "high")
    ]
