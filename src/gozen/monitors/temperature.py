"""`monitor:temperature`: camera, chips, electronics and room (lm-sensors or simulated, via gozen.devices)."""

from __future__ import annotations

from gozen.devices.factory import thermometers_from_config
from gozen.devices.thermometers import NAME
from gozen.monitors.base import Monitor
from gozen.monitors.board import Reading
from gozen.service import Context, DeviceUnavailable


class TemperatureMonitor(Monitor):
    """A site with no thermometers configured (and no simulator) gets one device_unreachable saying so."""

    device = NAME

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.thermometers = thermometers_from_config(ctx.cfg)

    def read(self) -> list[Reading]:
        if self.thermometers is None:
            raise DeviceUnavailable(NAME, "none configured: set monitors.sensors_command and sensors_map")
        values = self.thermometers.temperatures()
        return [Reading(k, round(v, 3), "degC", self.max_age_s) for k, v in values.items()]
