"""Which device gozen talks to, chosen from the config: the one place that picks a driver.

Each function returns the device's interface; the rest of gozen never names an adapter or a
simulator. As in POCS's `create_mount_from_config`, the config says which driver and where;
a driver gozen has no adapter for is refused here, naming the key, instead of being ignored.
The simulated observatory's Alpaca devices and gpsd are its simulators served over the real
protocols (`sim:alpaca`, `sim:gpsd`), so the adapters below talk to them as to real hardware;
the UPS and thermometers are simulated in-process when none is configured and the simulated
observatory is on (its dome is sim:alpaca's); off, a device not configured is None (never invented values).
A driver the config schema allows always has its adapter here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gozen.config import Config
from gozen.devices.telescope import telescope_from_config

if TYPE_CHECKING:
    from gozen.devices.camera import Camera
    from gozen.devices.dome import Dome
    from gozen.devices.gps import GpsReceiver
    from gozen.devices.safety import SafetyMonitor
    from gozen.devices.thermometers import Thermometers
    from gozen.devices.ups import Ups
    from gozen.devices.weather import WeatherStation


__all__ = [
    "camera_from_config",
    "dome_from_config",
    "gps_from_config",
    "safety_from_config",
    "telescope_from_config",
    "thermometers_from_config",
    "ups_from_config",
    "weather_from_config",
]


def camera_from_config(cfg: Config, index: int = 0) -> Camera:
    """The camera as readout `index` drives it (the index seeds the simulator's noise): the simulated
    Tomo-e Gozen camera, or ASCOM Alpaca Camera devices at camera.alpaca, one per chip."""
    if cfg.camera.driver == "alpaca":
        from gozen.devices.alpaca_camera import AlpacaCamera

        return AlpacaCamera(cfg.camera)
    from gozen.devices.simulators.camera import SimulatedCamera

    return SimulatedCamera(cfg.camera, seed=index, gps_jitter_s=cfg.daq.gps_jitter_s)


def weather_from_config(cfg: Config) -> WeatherStation:
    from gozen.devices.weather import AlpacaWeatherStation

    return AlpacaWeatherStation(cfg.monitors.weather)


def safety_from_config(cfg: Config) -> SafetyMonitor | None:
    """The site's safety monitor, or None when the config says there is none."""
    from gozen.devices.safety import AlpacaSafetyMonitor

    where = cfg.monitors.safety_monitor
    return AlpacaSafetyMonitor(where) if where is not None else None


def gps_from_config(cfg: Config) -> GpsReceiver:
    from gozen.devices.gps import Gpsd

    return Gpsd(cfg.monitors.gpsd)


def ups_from_config(cfg: Config) -> Ups | None:
    """NUT's `upsc` at monitors.ups_command; else the simulated UPS when simulating; else None."""
    from gozen.devices.ups import NutUps, SimulatedUps

    command = cfg.monitors.ups_command
    if command is not None:
        return NutUps(command)
    return SimulatedUps() if cfg.monitors.simulator.enabled else None


def thermometers_from_config(cfg: Config) -> Thermometers | None:
    """lm-sensors at monitors.sensors_command; else the simulated thermometers when simulating; else None."""
    from gozen.devices.thermometers import LmSensors, SimulatedThermometers

    m = cfg.monitors
    if m.sensors_command is not None:
        return LmSensors(m.sensors_command, m.sensors_map)
    return SimulatedThermometers() if m.simulator.enabled else None


def dome_from_config(cfg: Config) -> Dome | None:
    """The Alpaca dome at monitors.dome; else, when simulating, sim:alpaca's dome (device 0 at the telescope's
    address: queue:server and monitor:telescope see the same dome); else None (no dome)."""
    from gozen.config import AlpacaDevice
    from gozen.devices.dome import AlpacaDome

    m = cfg.monitors
    if m.dome is not None:
        return AlpacaDome(m.dome)
    return AlpacaDome(AlpacaDevice(address=m.telescope.address)) if m.simulator.enabled else None
