"""queue:server under real supervisord with the simulated telescope, weather and DAQ.

Tests run in file order against one observatory: submission and refusals, a recipe run
end to end with its exposures tagged, maintenance mode, preemption by an interrupt recipe,
unsafe weather, kill -9 of the server mid-recipe, and a shutdown recipe.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import yaml
from astropy.io import fits
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.tables import daq_files, exposures
from gozen.monitors.board import snapshot
from gozen.sky import zenith_radec
from tests.conftest import OPERATOR, START_S, WAIT_S, Fleet, free_port, gozen_cmd, start_fleet, wait_until
from tests.web.test_processes_browser import SHOTS, browser  # noqa: F401 - the fixture

AUTH = httpx.BasicAuth(*OPERATOR)


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("queue")
    alpaca = f"127.0.0.1:{free_port()}"
    host = {"name": "obs1", "roles": ["daq", "monitors", "queue", "web"], "supervisor": {"port": free_port()}}
    extra = {
        "camera": {"chips": [111], "width_px": 100, "height_px": 50},
        # Lead time and frame timeout long enough for a machine with both cores busy: an exposure
        # armed to start sooner than the readout gets to look is lost whole (see tests/monitors/test_live.py).
        "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 5.0, "frame_timeout_s": 20},
        "monitors": {
            "every_s": 3,  # values go stale after three periods: at 1 s, a busy machine made them flap
            "telescope": {"address": alpaca},
            "weather": {"address": alpaca},
            "safety_monitor": {"address": alpaca},
            "gpsd": {"port": free_port()},
            "simulator": {"dome_shutter_s": 3},
        },
        # Unsafe weather closes the dome; the dome opens again by itself as soon as it is safe.
        "queue": {"poll_s": 0.5, "demo_survey": False, "auto_open": True, "reopen_after_safe_s": 0},
    }
    fleet = start_fleet(tmp, [host], down=[], web_port=free_port(), extra=extra)
    fleet.wait_state("obs1", "queue:server", "RUNNING")
    engine = make_engine(fleet.cfg.database_url)
    wait_until(
        lambda: (v := snapshot(engine).get("safety.safe")) is not None and v.value is True,
        START_S,
        0.5,
        "safe",
        dump=fleet.dump,
    )
    yield fleet
    fleet.stop()


def recipe(name: str, *steps: dict[str, Any], priority: str = "normal") -> dict[str, Any]:
    ra, dec = zenith_radec(obs_site(), datetime.now(UTC) + timedelta(minutes=5))
    return {
        "name": name,
        "priority": priority,
        "constraints": {"min_alt_deg": 20},
        "steps": [{"slew": {"ra_deg": round(ra, 4), "dec_deg": round(dec - 5, 4)}}, *steps],
    }


def obs_site() -> Any:
    from gozen.config import Site

    return Site()


EXPOSE = {"expose": {"object": "QTEST", "frames": 2, "fps": 10, "count": 1}}


def submit(fleet: Fleet, body: dict[str, Any]) -> str:
    r = httpx.post(f"{fleet.web_url}/api/recipes", content=yaml.safe_dump(body), auth=AUTH, timeout=30)
    assert r.status_code == 201, r.text
    return str(r.json()["uuid"])


def show(fleet: Fleet, uuid: str) -> dict[str, Any]:
    return httpx.get(f"{fleet.web_url}/api/recipes/{uuid}", timeout=30).json()  # type: ignore[no-any-return]


def queue_now(fleet: Fleet) -> dict[str, Any]:
    return httpx.get(f"{fleet.web_url}/api/queue", timeout=30).json()  # type: ignore[no-any-return]


def dump_for(fleet: Fleet, *uuids: str) -> Any:
    """Diagnostics on timeout: the recipes, the queue, then the fleet's programs, logs and events."""

    def dump() -> str:
        recipes = "\n".join(f"--- recipe {u}: {show(fleet, u)}" for u in uuids)
        return f"{recipes}\n--- /api/queue: {queue_now(fleet)}\n{fleet.dump()}"

    return dump


def wait_state(fleet: Fleet, uuid: str, state: str, timeout_s: float = 2 * WAIT_S) -> dict[str, Any]:
    return wait_until(
        lambda: (d := show(fleet, uuid))["state"] == state and d,
        timeout_s,
        0.3,
        f"{uuid} {state}",
        dump_for(fleet, uuid),
    )


def wait_step(fleet: Fleet, uuid: str, ok: Any, what: str) -> None:
    wait_until(lambda: ok(show(fleet, uuid)["progress"].get("step", 0)), WAIT_S, 0.2, what, dump_for(fleet, uuid))


def exposures_of(fleet: Fleet, uuid: str) -> list[Any]:
    with make_engine(fleet.cfg.database_url).connect() as conn:
        return list(conn.execute(select(exposures).where(exposures.c.recipe_uuid == uuid)))


def test_bad_recipes_are_refused_with_every_field_named(obs: Fleet) -> None:
    bad = {"name": "bad", "steps": [{"expose": {"object": "X", "frames": 0}}, {"fly": {}}]}
    r = httpx.post(f"{obs.web_url}/api/recipes", content=yaml.safe_dump(bad), auth=AUTH, timeout=30)
    assert r.status_code == 422
    assert r.json()["errors"] == [
        "steps[0].expose.frames: must be >= 1, got 0",
        "steps[1]: a step is a mapping with one key: one of slew, expose, wait, park, shutdown, got {'fly': {}}",
    ]
    assert httpx.post(f"{obs.web_url}/api/recipes", content=yaml.safe_dump(recipe("x", EXPOSE))).status_code == 401
    f = obs.config_file.parent / "bad.yaml"
    f.write_text("name: bad\nsteps:\n  - slew: {field: NOWHERE}\n")
    p = subprocess.run(gozen_cmd(obs.config_file, "queue", "submit", str(f)), capture_output=True, text=True)
    assert p.returncode == 2 and "steps[0].slew.field: unknown field 'NOWHERE'" in p.stderr
    assert httpx.get(f"{obs.web_url}/api/recipes/schema").json()["required"] == ["name", "steps"]


def test_a_recipe_runs_and_its_exposures_carry_its_uuid(obs: Fleet) -> None:
    two = {"expose": {"object": "QTEST", "frames": 2, "fps": 10, "count": 2}}
    uuid = submit(obs, recipe("Queue-Observer TEST 1", two, {"park": {}}))
    done = wait_state(obs, uuid, "done")
    kinds = [h["kind"] for h in done["history"]]
    assert kinds[:2] == ["submitted", "started"] and kinds[-1] == "done" and kinds.count("exposure") == 2
    exps = exposures_of(obs, uuid)
    assert len(exps) == 2 and {e.recipe_name for e in exps} == {"Queue-Observer TEST 1"}
    with make_engine(obs.cfg.database_url).connect() as conn:
        path = conn.execute(select(daq_files.c.path).where(daq_files.c.exp_id == exps[0].exp_id)).scalar()
    assert {e.state for e in exps} == {"done"}, [(e.exp_id, e.state) for e in exps]
    h = fits.getheader(path)
    assert h["RECIPEID"] == uuid and h["RECIPE"] == "Queue-Observer TEST 1"


def test_maintenance_mode_starts_nothing_until_normal(obs: Fleet) -> None:
    assert httpx.post(f"{obs.web_url}/api/queue/mode/maintenance", auth=AUTH, timeout=30).status_code == 200
    uuid = submit(obs, recipe("Queue-Observer MAINT", EXPOSE))
    wait_until(
        lambda: queue_now(obs)["activity"].startswith("maintenance"), WAIT_S, 0.3, "maintenance", dump_for(obs, uuid)
    )
    assert show(obs, uuid)["state"] == "queued" and not exposures_of(obs, uuid)
    p = subprocess.run(gozen_cmd(obs.config_file, "queue", "mode", "normal"), capture_output=True, text=True)
    assert p.returncode == 0
    wait_state(obs, uuid, "done")


def test_an_interrupt_recipe_preempts_at_the_next_step_and_the_other_resumes(obs: Fleet) -> None:
    wait = {"wait": {"seconds": 6}}  # time to submit the interrupt before the long one ends, on a busy machine
    long_uuid = submit(obs, recipe("Queue-Observer INB 11 45+01", EXPOSE, wait, EXPOSE, wait, EXPOSE))
    wait_step(obs, long_uuid, lambda step: step >= 2, "the long recipe under way")
    too = submit(obs, recipe("Queue-Observer MAXI 11 45+01", EXPOSE, priority="interrupt"))
    wait_state(obs, too, "done")
    done = wait_state(obs, long_uuid, "done")
    kinds = [h["kind"] for h in done["history"]]
    assert "preempted" in kinds and kinds.count("started") == 2
    restart = [h["message"] for h in done["history"] if h["kind"] == "started"][1]
    assert not restart.startswith("started at step 1 ")  # resumed, not redone
    assert len(exposures_of(obs, long_uuid)) == 3  # no exposure twice
    ends = {u: show(obs, u)["history"][-1]["time"] for u in (too, long_uuid)}
    assert ends[too] < ends[long_uuid]


def test_unsafe_weather_holds_new_exposures_until_it_clears(obs: Fleet) -> None:
    sim = f"http://{obs.cfg.monitors.telescope.address}"
    engine = make_engine(obs.cfg.database_url)
    httpx.put(f"{sim}/sim/weather", json={"humidity": 97}, timeout=30).raise_for_status()
    try:
        wait_until(lambda: snapshot(engine).get("safety.safe").value is False, WAIT_S, 0.3, "unsafe", dump=obs.dump)
        uuid = submit(obs, recipe("Queue-Observer WET", EXPOSE))

        def waiting() -> bool:
            q = queue_now(obs)
            return any(x["uuid"] == uuid and x["waits_for"].startswith("unsafe weather: humidity") for x in q["queued"])

        wait_until(waiting, WAIT_S, 0.3, "the recipe waiting for the weather", dump_for(obs, uuid))
        assert not exposures_of(obs, uuid)
    finally:
        httpx.put(f"{sim}/sim/weather", json={}, timeout=30).raise_for_status()
    wait_state(obs, uuid, "done")
    assert len(exposures_of(obs, uuid)) == 1


def test_kill_9_of_the_server_mid_recipe_interrupts_requeues_and_runs_nothing_twice(obs: Fleet) -> None:
    # The wait step is long enough to be seen (and the kill to land in it) on a busy machine.
    uuid = submit(obs, recipe("Queue-Observer KILL", EXPOSE, {"wait": {"seconds": 20}}, EXPOSE))
    wait_step(obs, uuid, lambda step: step == 2, "the recipe in its wait step")
    pid = next(p.pid for p in obs.client("obs1").status().processes if p.full_name == "queue:server")
    assert pid
    os.kill(pid, signal.SIGKILL)
    done = wait_state(obs, uuid, "done")
    kinds = [h["kind"] for h in done["history"]]
    assert "interrupted" in kinds and "requeued" in kinds and kinds[-1] == "done"
    assert len(exposures_of(obs, uuid)) == 2
    assert recent_events(make_engine(obs.cfg.database_url), 20, kind="recipe_interrupted")


def test_the_queue_page_shows_the_line_the_queue_and_what_ran(obs: Fleet, browser: Browser) -> None:  # noqa: F811
    later = (datetime.now(UTC) + timedelta(hours=6)).isoformat()
    body = recipe("Queue-Observer LATER", EXPOSE) | {"window": {"not_before": later}}
    uuid = submit(obs, body)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(WAIT_S * 1000)
    page.goto(f"{obs.web_url}/queue")
    expect(page.locator("#queue-line")).to_contain_text("pid")
    expect(page.locator(f'#queued tr[data-uuid="{uuid}"]')).to_contain_text("window opens")
    expect(page.locator("#executed")).to_contain_text("Queue-Observer INB 11 45+01")
    expect(page.locator("#plan img")).to_be_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "queue.png"), full_page=True)
    page.close()
    svg = obs.config_file.parent / "plan.svg"
    p = subprocess.run(gozen_cmd(obs.config_file, "queue", "plan", "--svg", str(svg)), capture_output=True, text=True)
    assert p.returncode == 0 and svg.read_text().startswith("<svg")
    p = subprocess.run(gozen_cmd(obs.config_file, "queue", "cancel", uuid[:8]), capture_output=True, text=True)
    assert p.returncode == 0 and "cancelled" in p.stdout


def test_abort_stops_the_running_recipe_at_once(obs: Fleet) -> None:
    # Far longer than the wait for "aborted" below: only the abort can end it in time.
    uuid = submit(obs, recipe("Queue-Observer ABORT", {"wait": {"seconds": 600}}, EXPOSE))
    wait_state(obs, uuid, "executing")
    assert httpx.post(f"{obs.web_url}/api/queue/abort", timeout=30).status_code == 401  # operators only
    assert httpx.post(f"{obs.web_url}/api/queue/abort", auth=AUTH, timeout=30).status_code == 200
    done = wait_state(obs, uuid, "aborted", WAIT_S)
    assert done["history"][-1]["message"] == f"aborted by {OPERATOR[0]}" and not exposures_of(obs, uuid)


def test_a_shutdown_recipe_stops_the_server_cleanly(obs: Fleet) -> None:
    uuid = submit(obs, {"name": "Shutdown the Queue-Observer system", "steps": [{"shutdown": {}}]})
    wait_state(obs, uuid, "done")
    obs.wait_state("obs1", "queue:server", "EXITED")  # exit 0: supervisord leaves it stopped
    info = next(p for p in obs.client("obs1").status().processes if p.full_name == "queue:server")
    assert info.exitstatus == 0
