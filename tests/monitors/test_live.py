"""The monitors under real supervisord with the device simulators: the board, the headers, a device lost and back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from astropy.io import fits
from sqlalchemy import select

from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.tables import daq_files
from gozen.monitors.board import snapshot
from tests.conftest import Fleet, free_port, run_gozen, start_fleet, wait_until

MONITORS = ("telescope", "weather", "gpstime", "temperature", "power", "safety")


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("monitors")
    host = {"name": "obs1", "roles": ["daq", "monitors"], "supervisor": {"port": free_port()}}
    extra = {
        "camera": {"chips": [111], "width_px": 200, "height_px": 100},
        "daq": {"writers": 1, "reserve_bytes": 0},
        "monitors": {
            "every_s": 1,
            "telescope": {"address": f"127.0.0.1:{free_port()}"},
            "gpsd": {"port": free_port()},
            "safety": {"max_sun_alt_deg": 90},  # whatever the hour of the test
        },
    }
    extra["monitors"]["weather"] = extra["monitors"]["telescope"]  # one simulator serves every Alpaca device
    extra["monitors"]["safety_monitor"] = extra["monitors"]["telescope"]
    fleet = start_fleet(tmp, [host], down=[], extra=extra)
    for m in MONITORS:
        fleet.wait_state("obs1", f"monitor:{m}", "RUNNING")
    yield fleet
    fleet.stop()



def expose_one(fleet: Fleet) -> fits.Header:
    r = run_gozen(fleet, "daq", "expose", "--object", "F", "--frames", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    with make_engine(fleet.cfg.database_url).connect() as conn:
        path = conn.execute(select(daq_files.c.path).order_by(daq_files.c.id.desc())).scalars().first()
    return fits.getheader(path)


def test_monitors_fill_the_board_and_the_headers_then_a_lost_device_goes_stale_and_returns(obs: Fleet) -> None:
    engine = make_engine(obs.cfg.database_url)
    wanted = {
        "telescope.alt_deg": "monitor:telescope",
        "weather.humidity_pct": "monitor:weather",
        "weather.safe": "monitor:weather",
        "gps.offset_ms": "monitor:gpstime",
        "temperature.camera_c": "monitor:temperature",
        "power.ups_state": "monitor:power",
        "safety.safe": "monitor:safety",
    }

    def fresh() -> bool:
        snap = snapshot(engine)
        return all((v := snap.get(k)) is not None and v.source == src and not v.stale for k, src in wanted.items())

    wait_until(fresh, 60, 0.5, "every monitor on the board")
    wait_until(lambda: snapshot(engine).get("safety.safe").value is True, 20, 0.5, "safe to observe")
    h = expose_one(obs)
    board = snapshot(engine)
    assert "STALE" not in h.comments["OUT-HUM"] and 0 <= h["OUT-HUM"] <= 100
    assert h["UPS-STAT"] == "OL" and h["DET-TMP"] == pytest.approx(board.number("temperature.camera_c"), abs=0.5)

    assert run_gozen(obs, "stop", "obs1:sim:alpaca").returncode == 0  # the weather station and telescope go away
    down = wait_until(lambda: recent_events(engine, 20, kind="device_unreachable"), 30, 0.5, "device_unreachable")
    assert {e.subject for e in down} >= {"weather station"}
    wait_until(lambda: snapshot(engine).get("weather.humidity_pct").stale, 30, 0.5, "stale weather")
    wait_until(lambda: snapshot(engine).get("safety.safe").value is False, 30, 0.5, "unsafe")
    assert "weather data missing or stale" in snapshot(engine).get("safety.reasons").value
    h = expose_one(obs)
    assert "STALE" in h.comments["OUT-HUM"]

    assert run_gozen(obs, "start", "obs1:sim:alpaca").returncode == 0
    wait_until(lambda: recent_events(engine, 20, kind="device_back"), 30, 0.5, "device_back")
    wait_until(lambda: snapshot(engine).get("safety.safe").value is True, 30, 0.5, "safe again")
    changes = [e.message for e in reversed(recent_events(engine, 20, kind="safety_changed"))]
    assert changes[-1] == "safe to observe" and "safe to observe" in changes[:-2]  # safe, lost, safe again
    assert any(m.startswith("unsafe: weather data missing or stale") for m in changes)
