"""queue:server's safety acts (queue.safety.Enclosure) in this process against sim:alpaca's dome and mount
served on 127.0.0.1, with the safety decision written to a real status board (SQLite)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from gozen.config import AlpacaDevice, Config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.states import QueueMode
from gozen.db.types import utcnow
from gozen.devices.dome import AlpacaDome, Shutter
from gozen.devices.telescope import AlpacaTelescope
from gozen.monitors.board import Reading, prune_history, publish
from gozen.queue import store
from gozen.queue.safety import Enclosure
from gozen.service import Context
from tests.conftest import WAIT_S, wait_until, write_config
from tests.devices.servers import AlpacaServer

HOST = "obs1"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Config, Engine, AlpacaServer]]:
    server = AlpacaServer(write_config(tmp_path / "sim.yaml", {"monitors": {"simulator": {"dome_shutter_s": 0.3}}}))
    server.start()
    data: dict[str, Any] = {
        "data_dir": str(tmp_path / "var"),
        "monitors": {"telescope": {"address": server.address}},
        "queue": {"close_deadline_s": 3, "auto_open": False, "reopen_after_safe_s": 0},
    }
    cfg = write_config(tmp_path / "gozen.yaml", data)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    yield cfg, engine, server
    server.stop()


def enclosure(cfg: Config, engine: Engine, clock: Callable[[], float] = time.monotonic) -> Enclosure:
    where = AlpacaDevice(address=cfg.monitors.telescope.address)
    ctx = Context(cfg, HOST, engine, "queue:server")
    return Enclosure(ctx, AlpacaTelescope(where), AlpacaDome(where), clock)


def weather(engine: Engine, safe: bool, why: str = "humidity 99% > 85%") -> None:
    why = "" if safe else why
    publish(engine, "monitor:safety", [Reading("safety.safe", safe, "", 600), Reading("safety.reasons", why, "", 600)])


def kinds(engine: Engine) -> list[str]:
    return [e.kind for e in reversed(recent_events(engine, 100, source="queue:server"))]


def opened(enc: Enclosure) -> bool:
    return enc.open_dome("for a test", time.sleep)


def test_in_maintenance_an_unsafe_sky_leaves_the_dome_open_and_is_told_once(site: Any) -> None:
    cfg, engine, _ = site
    enc = enclosure(cfg, engine)
    weather(engine, True)
    assert opened(enc) and enc.dome is not None
    weather(engine, False)
    for _ in range(3):
        enc.tend(QueueMode.MAINTENANCE)
    assert enc.dome.status().shutter is Shutter.OPEN
    assert kinds(engine) == ["dome_opened", "safety_not_closed"]
    enc.tend(QueueMode.NORMAL)  # the engineer is done: now it closes
    assert enc.dome.status().shutter is Shutter.CLOSED and enc.telescope.at_park()
    assert kinds(engine)[-2:] == ["safety_close", "dome_closed"]


def test_closed_for_the_weather_with_auto_open_off_it_opens_only_after_an_operator_resumes(site: Any) -> None:
    cfg, engine, _ = site
    enc = enclosure(cfg, engine)
    weather(engine, True)
    assert opened(enc)
    weather(engine, False)
    enc.tend(QueueMode.NORMAL)
    weather(engine, True)
    enc.tend(QueueMode.NORMAL)
    assert "queue.auto_open is off" in enc.held()
    restarted = enclosure(cfg, engine)  # a restarted server still knows the dome was closed for the weather
    restarted.restore()
    restarted.tend(QueueMode.NORMAL)  # finds the dome closed, as it was left: nothing to tell
    assert "queue.auto_open is off" in restarted.held()
    store.set_paused(engine, True, "ops")
    store.set_paused(engine, False, "ops")
    assert restarted.held() == "" and opened(restarted)
    assert restarted.dome is not None and restarted.dome.status().shutter is Shutter.OPEN
    assert kinds(engine) == ["dome_opened", "safety_close", "dome_closed", "dome_opened"]


def test_a_dome_that_does_not_answer_is_told_once_and_the_alarm_says_so(site: Any) -> None:
    cfg, engine, server = site
    enc = enclosure(cfg, engine)
    weather(engine, True)
    assert opened(enc)
    server.put("/sim/fault", {"mode": "gone", "device": "dome"})
    weather(engine, False)
    wait_until(lambda: enc.tend(QueueMode.NORMAL) or "dome_not_closed" in kinds(engine), WAIT_S, 0.2, "the alarm")
    for _ in range(3):
        enc.tend(QueueMode.NORMAL)  # no crash, nothing told again
    events = kinds(engine)
    assert events.count("device_unreachable") == 1 and events.count("dome_not_closed") == 1
    [alarm] = recent_events(engine, 1, "dome_not_closed")
    assert "does not answer" in alarm.message and alarm.severity == "error"
    server.put("/sim/fault", {"mode": "ok"})
    wait_until(lambda: enc.tend(QueueMode.NORMAL) or "dome_closed" in kinds(engine), WAIT_S, 0.5, "closed")
    assert kinds(engine)[-2:] == ["device_back", "dome_closed"]


def test_no_news_from_the_weather_closes_the_dome_only_once_it_has_lasted_the_start_grace(site: Any) -> None:
    cfg, engine, _ = site
    t = [1000.0]
    enc = enclosure(cfg, engine, lambda: t[0])
    weather(engine, True)
    assert opened(enc) and enc.dome is not None
    weather(engine, False, "weather data missing or stale (humidity_pct, wind_ms)")  # the weather monitor restarting
    enc.tend(QueueMode.NORMAL)
    t[0] += cfg.monitors.start_grace_s - 1
    enc.tend(QueueMode.NORMAL)
    assert enc.dome.status().shutter is Shutter.OPEN and kinds(engine) == ["dome_opened"]
    t[0] += 2
    enc.tend(QueueMode.NORMAL)
    assert enc.dome.status().shutter is Shutter.CLOSED
    [close] = recent_events(engine, 1, "safety_close")
    assert "weather data missing or stale" in close.message and f"for {cfg.monitors.start_grace_s + 1:.0f} s" in (
        close.message
    )


def test_a_restarted_server_knows_since_when_it_is_safe_from_the_boards_history(site: Any, tmp_path: Path) -> None:
    _, engine, server = site
    data = {
        "data_dir": str(tmp_path / "var"),
        "monitors": {"telescope": {"address": server.address}},
        "queue": {"auto_open": True, "reopen_after_safe_s": 600},
    }
    cfg = write_config(tmp_path / "reopen.yaml", data)
    enc = enclosure(cfg, engine)
    weather(engine, False)
    enc.tend(QueueMode.NORMAL)  # closed for the weather
    now = utcnow()
    prune_history(engine, now)  # the board's history as the test tells it
    for ago_s, safe in ((1000, False), (700, True), (300, True), (0, True)):  # safe for 700 s, the last 0 s ago
        publish(engine, "monitor:safety", [Reading("safety.safe", safe, "", 600)], now - timedelta(seconds=ago_s))
    restarted = enclosure(cfg, engine)
    restarted.restore()
    restarted.tend(QueueMode.NORMAL)
    assert restarted.closed_for == "humidity 99% > 85%" and restarted.held() == ""  # safe 700 s >= 600 s
    for ago_s, safe in ((250, False), (200, True)):  # unsafe a moment, safe again 200 s ago
        publish(engine, "monitor:safety", [Reading("safety.safe", safe, "", 600)], now - timedelta(seconds=ago_s))
    publish(engine, "monitor:safety", [Reading("safety.safe", True, "", 600)], now)
    again = enclosure(cfg, engine)
    again.restore()
    again.tend(QueueMode.NORMAL)
    assert re.search(r"opens once safe for 600 s \(in (39\d|400) s\)$", again.held()), again.held()


def test_a_dome_that_will_not_open_is_told_and_holds_the_sky_recipes_for_a_while(site: Any) -> None:
    cfg, engine, server = site
    later = [0.0]
    enc = enclosure(cfg, engine, lambda: time.monotonic() + later[0])
    weather(engine, True)
    server.put("/sim/dome", {"stuck": True})
    assert not opened(enc)  # within queue.close_deadline_s (3 s)
    [told] = recent_events(engine, 1, "dome_not_opened")
    assert told.severity == "warning" and "did not open within 3 s: the shutter reports opening" in told.message
    assert enc.held().startswith("the dome did not open; trying again in 30")
    server.put("/sim/dome", {"stuck": False})
    later[0] = 301  # five minutes later
    assert enc.held() == "" and opened(enc)
    assert kinds(engine) == ["dome_not_opened", "dome_opened"]
