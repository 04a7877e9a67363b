"""The device factory: which class the config picks for each device."""

from __future__ import annotations

from gozen.config import parse_config
from gozen.devices.dome import AlpacaDome
from gozen.devices.factory import (
    camera_from_config,
    dome_from_config,
    gps_from_config,
    safety_from_config,
    thermometers_from_config,
    ups_from_config,
    weather_from_config,
)
from gozen.devices.gps import Gpsd
from gozen.devices.safety import AlpacaSafetyMonitor
from gozen.devices.simulators.camera import SimulatedCamera
from gozen.devices.thermometers import LmSensors, SimulatedThermometers
from gozen.devices.ups import NutUps, SimulatedUps
from gozen.devices.weather import AlpacaWeatherStation


def test_the_simulated_observatory_gets_its_simulators_and_the_protocol_adapters_to_its_servers() -> None:
    cfg = parse_config({})
    assert isinstance(camera_from_config(cfg, 0), SimulatedCamera)
    assert isinstance(weather_from_config(cfg), AlpacaWeatherStation)  # served by sim:alpaca
    assert isinstance(safety_from_config(cfg), AlpacaSafetyMonitor)
    assert isinstance(gps_from_config(cfg), Gpsd)  # served by sim:gpsd
    assert isinstance(ups_from_config(cfg), SimulatedUps)
    assert isinstance(thermometers_from_config(cfg), SimulatedThermometers)
    dome = dome_from_config(cfg)  # sim:alpaca's, where the monitors and the queue both see it
    assert isinstance(dome, AlpacaDome) and dome.device.address == cfg.monitors.telescope.address
    assert dome.device.device_number == 0


def test_a_real_site_gets_nut_lm_sensors_and_its_alpaca_dome() -> None:
    cfg = parse_config(
        {
            "monitors": {
                "ups_command": ["upsc", "ups@localhost"],
                "sensors_command": ["sensors", "-j"],
                "sensors_map": {"temperature.room_c": "tmp102-i2c-1-48/temp1/temp1_input"},
                "dome": {"address": "192.0.2.7:11111", "device_number": 1},
                "safety_monitor": None,
                "simulator": {"enabled": False},
            }
        }
    )
    ups, thermometers = ups_from_config(cfg), thermometers_from_config(cfg)
    assert isinstance(ups, NutUps) and ups.command == ["upsc", "ups@localhost"]
    assert isinstance(thermometers, LmSensors) and thermometers.mapping == cfg.monitors.sensors_map
    dome = dome_from_config(cfg)
    assert isinstance(dome, AlpacaDome) and dome.device.address == "192.0.2.7:11111"
    assert safety_from_config(cfg) is None  # no safety monitor on this site


def test_no_simulated_values_on_a_real_site_a_device_not_configured_is_none() -> None:
    cfg = parse_config({"monitors": {"simulator": {"enabled": False}}})
    assert dome_from_config(cfg) is None
    assert ups_from_config(cfg) is None
    assert thermometers_from_config(cfg) is None


def test_camera_driver_alpaca_gets_the_alpaca_camera_at_camera_alpaca() -> None:
    from gozen.devices.alpaca_camera import AlpacaCamera

    cfg = parse_config({"camera": {"driver": "alpaca", "alpaca": {"address": "192.0.2.9:11111", "devices": {111: 3}}}})
    camera = camera_from_config(cfg, 0)
    assert isinstance(camera, AlpacaCamera) and camera.where.address == "192.0.2.9:11111"
    assert camera.numbers == {111: 3}
