"""Each monitor against a real protocol server on 127.0.0.1: Alpaca over HTTP, gpsd over TCP, NUT's upsc."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alpaca.telescope import Telescope
from sqlalchemy import Engine

from gozen.config import DeviceSimulator, parse_config
from gozen.config import Gpsd as GpsdAddress
from gozen.db.events import recent_events
from gozen.devices.gps import Gpsd
from gozen.devices.weather import SimulatedWeatherStation, dew_point
from gozen.monitors.alpaca import TelescopeMonitor, WeatherMonitor
from gozen.monitors.board import snapshot
from gozen.monitors.gps import GpsMonitor
from gozen.monitors.power import PowerMonitor
from gozen.monitors.temperature import TemperatureMonitor
from tests.conftest import WAIT_S, fake_command, wait_until
from tests.devices.servers import AlpacaServer
from tests.monitors.contexts import monitor_context

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture
def alpaca() -> Iterator[AlpacaServer]:
    s = AlpacaServer(parse_config({}))
    s.start()
    yield s
    s.stop()


def test_the_simulator_speaks_the_alpaca_protocol(alpaca: AlpacaServer) -> None:
    base = f"http://{alpaca.address}"
    r = httpx.get(f"{base}/api/v1/telescope/0/declination", params={"ClientTransactionID": 77, "ClientID": 5}).json()
    assert r["ClientTransactionID"] == 77 and r["ErrorNumber"] == 0 and r["ServerTransactionID"] > 0
    assert r["Value"] == pytest.approx(35.797222)  # parked at the zenith
    assert (
        httpx.get(f"{base}/api/v1/telescope/0/declination", params={"clienttransactionid": 9}).json()[
            "ClientTransactionID"
        ]
        == 9
    )  # parameter names are case-insensitive
    assert httpx.get(f"{base}/api/v1/telescope/0/focallength").json()["ErrorNumber"] == 0x400
    assert httpx.get(f"{base}/api/v1/telescope/3/declination").status_code == 400
    parked = httpx.put(
        f"{base}/api/v1/telescope/0/slewtocoordinatesasync", data={"RightAscension": "1", "Declination": "40"}
    ).json()
    assert parked["ErrorNumber"] == 0x408 and "parked" in parked["ErrorMessage"]
    devices = httpx.get(f"{base}/management/v1/configureddevices").json()["Value"]
    assert {d["DeviceType"] for d in devices} == {"Telescope", "Observingconditions", "Safetymonitor", "Dome"}


def test_telescope_monitor_follows_a_slew_made_through_alpyca(engine: Engine, alpaca: AlpacaServer) -> None:
    scope = Telescope(alpaca.address, 0)
    scope.Unpark()
    ra, dec = (scope.RightAscension * 15 + 6) % 360, scope.Declination - 4  # a field near the zenith
    scope.SlewToCoordinatesAsync(ra / 15, dec)
    mon = TelescopeMonitor(
        monitor_context(engine, "monitor:telescope", every_s=1.0, telescope={"address": alpaca.address})
    )
    first = {r.key: r.value for r in mon.step()}
    assert first["telescope.slewing"] is True and first["telescope.parked"] is False
    wait_until(lambda: not scope.Slewing, WAIT_S, 0.2, "the slew to end")
    now = {r.key: r.value for r in mon.step()}
    assert now["telescope.ra_deg"] == pytest.approx(ra, abs=1e-4)
    assert now["telescope.dec_deg"] == pytest.approx(dec, abs=1e-4)
    assert now["telescope.tracking"] is True and -90 <= now["telescope.alt_deg"] <= 90
    assert snapshot(engine).get("telescope.ra_deg").source == "monitor:telescope"


def test_weather_bad_values_are_rejected_silence_goes_stale_and_recovery_is_automatic(
    engine: Engine, alpaca: AlpacaServer, caplog: pytest.LogCaptureFixture
) -> None:
    where = {"address": alpaca.address}
    mon = WeatherMonitor(monitor_context(engine, "monitor:weather", every_s=0.5, weather=where, safety_monitor=where))
    alpaca.put("/sim/weather", {"humidity": 62.0, "temperature": 4.0})
    got = {r.key: r.value for r in mon.step()}
    assert got["weather.humidity_pct"] == 62.0 and got["weather.safe"] is True
    assert got["weather.dewpoint_c"] == pytest.approx(dew_point(4.0, 62.0), abs=1e-3)

    alpaca.put("/sim/fault", {"mode": "nan", "device": "observingconditions"})
    with caplog.at_level(logging.WARNING):
        published = {r.key for r in mon.step()}
    assert "weather.humidity_pct" not in published and "weather.safe" in published
    assert any("weather.humidity_pct: nan is not a number" in m for m in caplog.messages)

    alpaca.put("/sim/fault", {"mode": "out_of_range", "device": "observingconditions"})
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        mon.step()
    assert any("weather.humidity_pct: 1000000.0 % is outside its plausible range" in m for m in caplog.messages)

    alpaca.put("/sim/fault", {"mode": "malformed"})
    assert mon.step() == []
    [down] = recent_events(engine, 5, kind="device_unreachable")
    assert "bad reply" in down.message and down.subject == "weather station"

    alpaca.stop()  # the station stops answering altogether: still one event, values go stale
    assert mon.step() == []
    assert len(recent_events(engine, 5, kind="device_unreachable")) == 1
    time.sleep(mon.max_age_s + 0.1)
    assert snapshot(engine).get("weather.temperature_c").stale
    alpaca.start()  # it comes back (with no fault): the monitor recovers by itself
    assert {r.key for r in mon.step()} >= {"weather.humidity_pct", "weather.temperature_c"}
    assert not snapshot(engine).get("weather.temperature_c").stale
    assert recent_events(engine, 5, kind="device_back")


class GpsdReplay:
    """A TCP server speaking gpsd's protocol from recorded lines: VERSION first, the rest after ?WATCH."""

    def __init__(self, lines: list[str]) -> None:
        self.lines, self.watch_requests = lines, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.sendall((self.lines[0] + "\r\n").encode())
                    self.watch_requests.append(conn.recv(200).decode())
                    for line in self.lines[1:]:
                        conn.sendall((line + "\r\n").encode())
                    time.sleep(0.2)
                except OSError:
                    pass  # the client had heard enough

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() and stops listening
        self.sock.close()


def test_gpsd_fix_and_clock_offset_from_recorded_reports(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    server = GpsdReplay((DATA / "gpsd/ublox-session.jsonl").read_text().splitlines())
    mon = GpsMonitor(monitor_context(engine, "monitor:gpstime"))
    mon.receiver = Gpsd(GpsdAddress(port=server.port), listen_s=1.0)
    with caplog.at_level(logging.WARNING):
        got = {r.key: r.value for r in mon.step()}
    assert server.watch_requests[0].startswith('?WATCH={"enable":true,"json":true')
    assert got["gps.fix"] is True and got["gps.mode"] == 3 and got["gps.pps"] is True
    assert got["gps.offset_ms"] in (0.041226, 0.03887)  # a PPS: the clock 41226 or 38870 ns after the edge
    assert got["gps.satellites"] == 12
    assert any("malformed line" in m and "this is not json" in m for m in caplog.messages)
    server.close()
    nofix = GpsdReplay((DATA / "gpsd/no-fix.jsonl").read_text().splitlines())
    mon.receiver = Gpsd(GpsdAddress(port=nofix.port), listen_s=0.5)
    got = {r.key: r.value for r in mon.step()}
    assert got["gps.fix"] is False and got["gps.pps"] is False and "gps.offset_ms" not in got
    nofix.close()
    assert GpsMonitor(monitor_context(engine, "monitor:gpstime", gpsd={"port": nofix.port})).step() == []
    assert "Connection refused" in recent_events(engine, 5, kind="device_unreachable")[0].message


@pytest.fixture
def fake_upsc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`upsc` on PATH printing a saved answer chosen by $FAKE_UPS (or failing as NUT does)."""
    return fake_command(
        tmp_path,
        monkeypatch,
        "upsc",
        f"""[ "$1" = "ups@localhost" ] || {{ echo "Error: Unknown UPS" >&2; exit 1; }}
case "$FAKE_UPS" in
  stale) echo "Error: Data stale" >&2; exit 1 ;;
  *) cat "{DATA}/upsc/$FAKE_UPS.txt" ;;
esac
""",
    )


def test_ups_from_upsc_on_line_on_battery_and_stale(
    engine: Engine, fake_upsc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mon = PowerMonitor(monitor_context(engine, "monitor:power", ups_command=["upsc", "ups@localhost"]))
    monkeypatch.setenv("FAKE_UPS", "online")
    got = {r.key: r.value for r in mon.step()}
    assert got == {
        "power.ups_state": "OL",
        "power.on_battery": False,
        "power.low_battery": False,
        "power.ups_charge_pct": 100.0,
        "power.ups_runtime_s": 2520.0,
        "power.ups_load_pct": 23.0,
    }
    monkeypatch.setenv("FAKE_UPS", "on-battery")
    got = {r.key: r.value for r in mon.step()}
    assert got["power.on_battery"] is True and got["power.ups_charge_pct"] == 64.0
    monkeypatch.setenv("FAKE_UPS", "stale")
    assert mon.step() == []
    assert "Data stale" in recent_events(engine, 5, kind="device_unreachable")[0].message


def test_thermometers_from_lm_sensors_json(engine: Engine) -> None:
    mapping = {
        "temperature.electronics_c": "coretemp-isa-0000/Package id 0/temp1_input",
        "temperature.room_c": "tmp102-i2c-1-48/temp1/temp1_input",
    }
    command = ["cat", str(DATA / "sensors/sensors-j.json")]
    mon = TemperatureMonitor(
        monitor_context(engine, "monitor:temperature", sensors_command=command, sensors_map=mapping)
    )
    assert {r.key: r.value for r in mon.step()} == {"temperature.electronics_c": 44.0, "temperature.room_c": 11.25}
    broken = TemperatureMonitor(
        monitor_context(engine, "monitor:temperature", sensors_command=command, sensors_map={"temperature.x": "nope/a"})
    )
    assert broken.step() == []
    assert "no 'nope/a'" in recent_events(engine, 5, kind="device_unreachable")[0].message


def test_a_ups_and_thermometers_not_configured_on_a_real_site_are_said_once_never_invented(engine: Engine) -> None:
    off = {"simulator": {"enabled": False}}
    power = PowerMonitor(monitor_context(engine, "monitor:power", **off))
    thermometers = TemperatureMonitor(monitor_context(engine, "monitor:temperature", **off))
    for _ in range(3):
        assert power.step() == [] and thermometers.step() == []
    said = {e.subject: e.message for e in recent_events(engine, 10)}
    assert len(recent_events(engine, 10)) == 2  # once each
    assert said == {
        "UPS": "UPS does not answer: none configured: set monitors.ups_command (e.g. [upsc, ups@localhost]); "
        "its values will go stale",
        "thermometers": "thermometers does not answer: none configured: set monitors.sensors_command and "
        "sensors_map; its values will go stale",
    }
    assert snapshot(engine, "power.").values == {} and snapshot(engine, "temperature.").values == {}


def test_the_simulated_weather_drifts_and_its_scripted_spell_comes_and_goes() -> None:
    t = [105.0]
    w = SimulatedWeatherStation(DeviceSimulator(bad_weather_every_s=100, bad_weather_for_s=10), clock=lambda: t[0])
    bad = w.values()
    assert bad["humidity"] > 90 and bad["rainrate"] > 0 and bad["cloudcover"] > 90
    t[0] = 150.0
    calm = [w.values() for _ in range(50)]
    assert all(30 <= v["humidity"] <= 80 and v["rainrate"] == 0 for v in calm)
    assert len({v["humidity"] for v in calm}) > 10  # noise and drift, not a constant
