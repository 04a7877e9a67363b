"""The simulators behave like their devices: the dome's shutter takes time (and sticks on demand), the GPS
loses its fix, the UPS drains."""

from __future__ import annotations

import time

import httpx
import pytest

from gozen.config import AlpacaDevice, parse_config
from gozen.devices.dome import AlpacaDome, DomeStatus, Shutter, SimulatedDome
from gozen.devices.gps import SimulatedGpsReceiver
from gozen.devices.ups import SimulatedUps
from gozen.service import DeviceUnavailable
from tests.conftest import WAIT_S, wait_until
from tests.devices.servers import AlpacaServer


def test_the_simulated_dome_shutter_takes_its_time_each_way() -> None:
    t = [0.0]
    dome = SimulatedDome(shutter_s=20.0, clock=lambda: t[0])
    assert dome.status().shutter is Shutter.CLOSED
    dome.open_shutter()
    t[0] = 5.0
    assert dome.status().shutter is Shutter.OPENING
    t[0] = 20.5
    assert dome.status().shutter is Shutter.OPEN
    dome.close_shutter()
    t[0] = 30.0
    assert dome.status().shutter is Shutter.CLOSING
    t[0] = 40.0
    assert dome.status().shutter is Shutter.CLOSING  # 19.5 s of 20
    t[0] = 41.0
    assert dome.status().shutter is Shutter.CLOSED


def test_the_simulated_dome_turned_back_half_way_takes_half_the_time() -> None:
    t = [0.0]
    dome = SimulatedDome(shutter_s=20.0, clock=lambda: t[0])
    dome.open_shutter()
    t[0] = 10.0
    assert dome.fraction_open() == pytest.approx(0.5)
    dome.close_shutter()
    t[0] = 19.5
    assert dome.status().shutter is Shutter.CLOSING
    t[0] = 20.0
    assert dome.status().shutter is Shutter.CLOSED


def test_a_stuck_simulated_shutter_says_closing_and_never_closes_until_freed() -> None:
    t = [0.0]
    dome = SimulatedDome(shutter_s=10.0, clock=lambda: t[0])
    dome.open_shutter()
    t[0] = 10.0
    assert dome.status().shutter is Shutter.OPEN
    dome.stuck = True
    dome.close_shutter()  # taken, but the shutter does not move
    t[0] = 1000.0
    assert dome.status().shutter is Shutter.CLOSING and dome.fraction_open() == 1.0
    dome.stuck = False  # freed: it goes on from where it stuck, the whole way
    t[0] = 1009.0
    assert dome.status().shutter is Shutter.CLOSING
    t[0] = 1010.0
    assert dome.status().shutter is Shutter.CLOSED


def test_the_simulated_gps_has_a_pps_fix_and_loses_it_in_a_dropout() -> None:
    gps = SimulatedGpsReceiver(parse_config({"monitors": {"simulator": {"dropout_every_s": 100, "dropout_for_s": 10}}}))
    assert gps.has_fix_at(50) and not gps.has_fix_at(105)
    [tpv, pps, sky] = gps.reports(1_000_000_050)
    assert (tpv["mode"], pps["class"], sky["uSat"]) == (3, "PPS", 10)
    assert 0 < pps["clock_nsec"] < 200_000  # the clock tens of microseconds after the edge
    assert gps.reports(1_000_000_005) == [
        {"class": "TPV", "device": "/dev/ttyACM0", "mode": 1, "time": "2001-09-09T01:46:45.000Z"}
    ]


def test_the_simulated_ups_drains_on_battery_and_says_low_battery() -> None:
    ups = SimulatedUps()
    assert ups.status().state == "OL" and not ups.status().on_battery
    ups.outage = True
    states = [ups.status() for _ in range(200)]
    assert states[0].on_battery and not states[0].low_battery
    assert states[-1].low_battery and states[-1].charge_pct == 5.0


def test_the_alpaca_dome_adapter_drives_the_dome_sim_alpaca_serves() -> None:
    server = AlpacaServer(parse_config({"monitors": {"simulator": {"dome_shutter_s": 60}}}))
    server.start()
    try:
        dome = AlpacaDome(AlpacaDevice(address=server.address))
        assert dome.status() == DomeStatus(Shutter.CLOSED, 0.0, slewing=False, parked=True)
        dome.open_shutter()
        assert dome.status().shutter is Shutter.OPENING  # dome_shutter_s: 60 s to open
        server.stop()
        with pytest.raises(DeviceUnavailable, match="dome: ShutterStatus: cannot connect to .* refused"):
            dome.status()
    finally:
        server.stop()


def test_sim_alpaca_sticks_and_frees_the_dome_shutter_and_sets_its_timing() -> None:
    server = AlpacaServer(parse_config({}))
    server.start()
    try:
        dome = AlpacaDome(AlpacaDevice(address=server.address))
        server.put("/sim/dome", {"shutter_s": 0.5})
        dome.open_shutter()
        wait_until(lambda: dome.status().shutter is Shutter.OPEN, WAIT_S, 0.1, "the shutter open")
        server.put("/sim/dome", {"stuck": True})
        dome.close_shutter()
        assert dome.status().shutter is Shutter.CLOSING
        stuck_at = time.monotonic()
        while time.monotonic() - stuck_at < 2.0:  # four times the shutter's time: it never closes
            assert dome.status().shutter is Shutter.CLOSING
            time.sleep(0.2)
        server.put("/sim/dome", {"stuck": False})
        wait_until(lambda: dome.status().shutter is Shutter.CLOSED, WAIT_S, 0.1, "the freed shutter closed")
        bad = httpx.put(f"http://{server.address}/sim/dome", json={"shutter_s": -1}, timeout=30)
        assert bad.status_code == 422 and bad.json()["error"].startswith("shutter_s: must be >= 0")
    finally:
        server.stop()
