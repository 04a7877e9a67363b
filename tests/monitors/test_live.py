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
from tests.conftest import START_S, WAIT_S, Fleet, free_port, run_gozen, start_fleet, wait_until

MONITORS = ("telescope", "weather", "gpstime", "temperature", "power", "safety")


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("monitors")
    host = {"name": "obs1", "roles": ["daq", "monitors"], "supervisor": {"port": free_port()}}
    extra = {
        "camera": {"chips": [111], "width_px": 200, "height_px": 100},
        # An exposure armed to start sooner than the readout looks is lost whole ("it was already
        # over when this readout saw it"): with the default 0.5 s lead a busy machine lost the
        # 1 s exposure and the test read the header of no file ("Empty filename: None").
        "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 5.0, "frame_timeout_s": 20},
        "monitors": {
            "every_s": 3,  # values go stale after three periods: at 1 s, a busy machine made them flap
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
        row = conn.execute(select(daq_files).order_by(daq_files.c.id.desc())).first()
    assert row is not None and row.path, f"the exposure left no file (last row: {row})\n{r.stdout}\n{fleet.dump()}"
    return fits.getheader(row.path)


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

    wait_until(fresh, START_S, 0.5, "every monitor on the board", obs.dump)
    wait_until(lambda: snapshot(engine).get("safety.safe").value is True, WAIT_S, 0.5, "safe to observe", obs.dump)
    h = expose_one(obs)
    board = snapshot(engine)
    assert "STALE" not in h.comments["OUT-HUM"] and 0 <= h["OUT-HUM"] <= 100
    assert h["UPS-STAT"] == "OL" and h["DET-TMP"] == pytest.approx(board.number("temperature.camera_c"), abs=0.5)

    assert run_gozen(obs, "stop", "obs1:sim:alpaca").returncode == 0  # the weather station and telescope go away

    def unreachable() -> set[str]:  # monitor:telescope and monitor:weather notice, each in its own time
        return {e.subject for e in recent_events(engine, 20, kind="device_unreachable")}

    wait_until(lambda: unreachable() >= {"weather station"}, WAIT_S, 0.5, "weather station unreachable", obs.dump)
    wait_until(lambda: snapshot(engine).get("weather.humidity_pct").stale, WAIT_S, 0.5, "stale weather", obs.dump)
    wait_until(lambda: snapshot(engine).get("safety.safe").value is False, WAIT_S, 0.5, "unsafe", obs.dump)
    assert "weather data missing or stale" in snapshot(engine).get("safety.reasons").value
    h = expose_one(obs)
    assert "STALE" in h.comments["OUT-HUM"]

    assert run_gozen(obs, "start", "obs1:sim:alpaca").returncode == 0
    wait_until(lambda: recent_events(engine, 20, kind="device_back"), WAIT_S, 0.5, "device_back", obs.dump)
    wait_until(lambda: snapshot(engine).get("safety.safe").value is True, WAIT_S, 0.5, "safe again", obs.dump)
    changes = [e.message for e in reversed(recent_events(engine, 20, kind="safety_changed"))]
    assert changes[-1] == "safe to observe" and "safe to observe" in changes[:-2]  # safe, lost, safe again
    assert any(m.startswith("unsafe: weather data missing or stale") for m in changes)
