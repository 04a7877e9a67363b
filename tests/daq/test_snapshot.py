"""Header values come from the status board; simulated ones only in the simulated observatory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from astropy.io import fits
from sqlalchemy import Engine

from gozen.config import Config, parse_config
from gozen.daq.headers import ExposureInfo, primary_header
from gozen.daq.snapshot import take_snapshot
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.monitors.board import Reading, publish

NO_READING = "no reading on the status board"


def setup(tmp_path: Path, simulated: bool) -> tuple[Config, Engine]:
    cfg = parse_config(
        {
            "data_dir": str(tmp_path / "var"),
            "camera": {"width_px": 200, "height_px": 100},
            "monitors": {"simulator": {"enabled": simulated}},
        }
    )
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    return cfg, engine


def header(cfg: Config, engine: Engine) -> fits.Header:
    now = datetime.now(UTC)
    snap = take_snapshot(cfg, engine, now, 10.68, 41.27)
    exp = ExposureInfo(1, "F", "OBJECT", "m", "none", "p", "o", 2, 2.0, now, None, None, snap)
    return fits.Header.fromstring(primary_header(cfg, exp, 111, now, "d", "v", "f").tostring())


def test_on_a_real_site_a_value_the_board_lacks_is_unknown_and_says_why(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path, simulated=False)
    publish(engine, "monitor:weather", [Reading("weather.wind_ms", 7.25, "m/s", 60)])
    h = header(cfg, engine)
    assert h["OUT-WND"] == 7.25  # the board's reading
    for key in ("OUT-TMP", "OUT-HUM", "ALTITUDE", "AIRMASS", "GPS-FIX", "UPS-STAT", "RA", "DEC"):
        assert h[key] == "UNKNOWN", key  # never the simulator's invented weather or pointing
        assert NO_READING in h.comments[key], (key, h.comments[key])
    assert "CRVAL1" not in h  # no pointing, no WCS


def test_on_a_real_site_a_stale_value_keeps_its_stale_mark(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path, simulated=False)
    then = datetime.now(UTC) - timedelta(hours=1)
    publish(engine, "monitor:power", [Reading("power.ups_state", "OB", "", 60)], when=then)
    h = header(cfg, engine)
    assert h["UPS-STAT"] == "OB"
    assert h.comments["UPS-STAT"].endswith(f"STALE since {then.isoformat()[:19]}"), h.comments["UPS-STAT"]


def test_in_the_simulated_observatory_the_simulators_fill_what_the_board_lacks(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path, simulated=True)
    publish(engine, "monitor:weather", [Reading("weather.wind_ms", 7.25, "m/s", 60)])
    snap = take_snapshot(cfg, engine, datetime.now(UTC), 10.68, 41.27)
    wind, temp = snap.get("weather.wind_ms"), snap.get("weather.temperature_c")
    assert wind is not None and wind.value == 7.25 and wind.source == "monitor:weather"
    assert temp is not None and temp.source == "simulator:weather"
    h = header(cfg, engine)
    assert h["RA"] != "UNKNOWN" and isinstance(h["OUT-TMP"], float)
