"""Safety acts under real supervisord: unsafe weather mid-recipe stops exposing, parks the telescope and
closes sim:alpaca's dome; safe again, the dome opens and the recipe resumes where it was; a stuck
shutter is an alarm told to (a stand-in for) Slack.

Tests run in file order against one observatory (queue, DAQ, monitors, couriers on one host).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from astropy.io import fits
from sqlalchemy import Engine, func, select

from gozen.daq.catalog import exposure_outcome
from gozen.db.engine import make_engine
from gozen.db.events import Event, recent_events
from gozen.db.tables import daq_files, exposures
from gozen.db.types import utcnow
from gozen.monitors.board import snapshot
from tests.conftest import START_S, WAIT_S, Fleet, free_port, start_fleet, wait_until
from tests.couriers.test_couriers import Server, SlackHandler
from tests.queue.test_live import dump_for, exposures_of, recipe, show, submit, wait_state

pytestmark = pytest.mark.live

DEADLINE_S = 20.0  # queue.close_deadline_s: the simulated shutter takes 4 s
REOPEN_S = 5.0  # queue.reopen_after_safe_s


@pytest.fixture(scope="module")
def slack() -> Iterator[Server]:
    s = Server(SlackHandler)
    s.received, s.script = [], []  # type: ignore[attr-defined]
    yield s
    s.close()


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory, slack: Server) -> Iterator[Fleet]:
    tmp: Path = tmp_path_factory.mktemp("safety")
    alpaca = f"127.0.0.1:{free_port()}"
    roles = ["daq", "monitors", "queue", "web", "couriers"]
    host = {"name": "obs1", "roles": roles, "supervisor": {"port": free_port()}}
    extra = {
        "camera": {"chips": [111], "width_px": 100, "height_px": 50},
        "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 5.0, "frame_timeout_s": 20},
        "monitors": {
            "every_s": 2,
            "telescope": {"address": alpaca},
            "weather": {"address": alpaca},
            "safety_monitor": {"address": alpaca},
            "gpsd": {"port": free_port()},
            "simulator": {"dome_shutter_s": 4},
        },
        "queue": {
            "poll_s": 0.5,
            "demo_survey": False,
            "close_when_unsafe": True,
            "close_deadline_s": DEADLINE_S,
            "auto_open": True,
            "reopen_after_safe_s": REOPEN_S,
        },
        "notifiers": [{"name": "tomoe-slack", "kind": "slack", "url": f"{slack.url}/services/T0/B0/x"}],
        "couriers": {"send_every_s": 0.5},
    }
    fleet = start_fleet(tmp, [host], down=[], web_port=free_port(), extra=extra)
    for p in ("queue:server", "courier:watch", "courier:sender", "monitor:safety", "monitor:telescope"):
        fleet.wait_state("obs1", p, "RUNNING")
    engine = make_engine(fleet.cfg.database_url)
    wait_until(lambda: board(engine, "safety.safe") is True, START_S, 0.5, "safe", dump=fleet.dump)
    yield fleet
    fleet.stop()


def board(engine: Engine, key: str) -> Any:
    v = snapshot(engine).get(key)
    return None if v is None or v.stale else v.value


def sim(fleet: Fleet, what: str, body: dict[str, Any]) -> None:
    httpx.put(f"http://{fleet.cfg.monitors.telescope.address}/sim/{what}", json=body, timeout=30).raise_for_status()


def events(engine: Engine, kind: str) -> list[Event]:
    """The queue server's events of `kind`, oldest first."""
    return [e for e in reversed(recent_events(engine, 100, kind=kind)) if e.source == "queue:server"]


def files_of(engine: Engine, exp_id: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(daq_files.c.exp_id == exp_id)).scalar_one())


def cut_short(engine: Engine, exp_id: int) -> None:
    """The exposure in hand ended at a frame boundary with the frames it got, or (stopped before its first
    frame) failed with no file, to be asked again when the recipe resumes."""
    out = exposure_outcome(engine, exp_id)
    assert out.stopped, out
    if out.state == "failed":
        assert out.files_written == 0 and out.frames_kept == 0, out
        return
    assert out.state == "done" and out.files_written == 1 and out.frames_kept is not None, out
    assert 0 < out.frames_kept < FRAMES, out
    with engine.connect() as conn:
        path = conn.execute(select(daq_files.c.path).where(daq_files.c.exp_id == exp_id)).scalar_one()
    h = fits.getheader(path)
    assert (h["NAXIS3"], h["STOPPED"]) == (out.frames_kept, True) and h["STOPWHY"].startswith("unsafe: humidity")


def stop_reason(engine: Engine, exp_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(exposures.c.stop_reason).where(exposures.c.exp_id == exp_id)).scalar()


FRAMES = 40
LONG = {"expose": {"object": "QSAFE", "frames": FRAMES, "fps": 2, "count": 3}}  # 20 s each


def test_unsafe_mid_recipe_stops_exposing_parks_closes_and_resumes_where_it_was_when_safe(obs: Fleet) -> None:
    engine = make_engine(obs.cfg.database_url)
    uuid = submit(obs, recipe("Queue-Observer SAFE 1", LONG, {"park": {}}))
    dump = dump_for(obs, uuid)

    def second_exposing() -> bool:  # its frames being read: the stop lands in its 20 s
        exps = exposures_of(obs, uuid)
        return len(exps) == 2 and exps[1].state == "armed" and exps[1].start_at <= utcnow()

    wait_until(second_exposing, 2 * WAIT_S, 0.2, "the second exposure under way", dump)
    assert board(engine, "dome.shutter") == "open"  # opened before the first exposure
    sim(obs, "weather", {"humidity": 99})
    try:
        queued = wait_state(obs, uuid, "queued", WAIT_S)
        wait_until(lambda: events(engine, "dome_closed"), WAIT_S, 0.3, "the dome closed", dump)
        wait_until(lambda: board(engine, "dome.shutter") == "closed", WAIT_S, 0.3, "closed on the board", dump)
        wait_until(lambda: board(engine, "telescope.parked") is True, WAIT_S, 0.3, "parked", dump)
        [close] = events(engine, "safety_close")
        [closed] = events(engine, "dome_closed")
        assert close.severity == "warning" and "humidity 99" in close.message
        assert (closed.time - close.time).total_seconds() < DEADLINE_S and not events(engine, "dome_not_closed")
        stopped = queued["history"][-1]
        assert stopped["kind"] == "stopped_unsafe" and "humidity 99" in stopped["message"]
        exps = exposures_of(obs, uuid)
        assert len(exps) == 2  # the next exposure was not asked
        assert (stop_reason(engine, exps[1].exp_id) or "").startswith("unsafe: humidity 99")
        cut_short(engine, exps[1].exp_id)
        wait_until(lambda: "blocking" in httpx.get(f"{obs.web_url}/api/queue", timeout=30).json()["activity"],
                   WAIT_S, 0.3, "the queue holding", dump)  # fmt: skip
        assert len(exposures_of(obs, uuid)) == 2 and show(obs, uuid)["state"] == "queued"
    finally:
        sim(obs, "weather", {})
    safe_at = wait_until(lambda: board(engine, "safety.safe") is True and time.time(), WAIT_S, 0.3, "safe", dump)
    done = wait_state(obs, uuid, "done")
    [_, reopened] = events(engine, "dome_opened")
    assert reopened.time.timestamp() - safe_at >= REOPEN_S - 3  # board's safe comes a poll after the monitor's
    kinds = [h["kind"] for h in done["history"]]
    assert kinds.count("started") == 2 and kinds.count("stopped_unsafe") == 1 and kinds[-1] == "done"
    restart = [h["message"] for h in done["history"] if h["kind"] == "started"][1]
    assert restart.startswith("started at step 2 of 3"), restart  # resumed in the expose step, not redone
    exps = exposures_of(obs, uuid)
    with_files = [e for e in exps if files_of(engine, e.exp_id)]
    assert len(with_files) == 3 and len(exps) - len(with_files) <= 1, [(e.exp_id, e.state) for e in exps]
    assert {e.state for e in with_files} == {"done"}
    assert board(engine, "dome.shutter") == "open"


def test_a_stuck_shutter_is_an_alarm_told_to_slack_and_its_closing_is_told_too(obs: Fleet, slack: Server) -> None:
    engine = make_engine(obs.cfg.database_url)

    def texts() -> list[str]:
        return [p.get("text", "") for p in slack.received]  # type: ignore[attr-defined]

    def dump() -> str:
        return f"--- posted to Slack: {texts()}\n{obs.dump()}"

    wait_until(lambda: board(engine, "dome.shutter") == "open", WAIT_S, 0.3, "the dome open", dump)
    told: dict[str, float] = {}

    def slack_says(what: str) -> bool:
        if any(what in t for t in texts()):
            told.setdefault(what, time.time())
        return what in told

    sim(obs, "dome", {"stuck": True})
    sim(obs, "weather", {"humidity": 99})
    try:
        wait_until(lambda: len(events(engine, "safety_close")) == 2, WAIT_S, 0.3, "the second close", dump)
        wait_until(lambda: slack_says("dome_not_closed · dome"), WAIT_S + DEADLINE_S, 0.1, "the alarm on Slack", dump)
        close = events(engine, "safety_close")[-1]
        [alarm] = events(engine, "dome_not_closed")
        assert alarm.severity == "error" and "the shutter reports closing" in alarm.message
        since_close = (alarm.time - close.time).total_seconds()
        assert DEADLINE_S <= since_close < DEADLINE_S + 10, since_close
        assert told["dome_not_closed · dome"] - (close.time.timestamp() + DEADLINE_S) < 10
        assert board(engine, "dome.shutter") == "closing"
        sim(obs, "dome", {"stuck": False})
        wait_until(lambda: len(events(engine, "dome_closed")) == 2, WAIT_S, 0.3, "the freed dome closed", dump)
        wait_until(lambda: slack_says(":white_check_mark: obs1 · dome_closed · dome"), WAIT_S, 0.2, "told", dump)
    finally:
        sim(obs, "dome", {"stuck": False})
        sim(obs, "weather", {})
    assert sum("dome_not_closed" in t for t in texts()) == 1  # once, however long it was stuck
    assert len(events(engine, "dome_not_closed")) == 1
