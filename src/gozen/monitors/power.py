"""`monitor:power`: the UPS (NUT's `upsc`, or the simulated UPS, via gozen.devices)."""

from __future__ import annotations

from gozen.devices.factory import ups_from_config
from gozen.devices.ups import NAME, UpsStatus
from gozen.monitors.base import Monitor
from gozen.monitors.board import Reading
from gozen.service import Context, DeviceUnavailable


def readings(ups: UpsStatus, max_age_s: float) -> list[Reading]:
    out = [
        Reading("power.ups_state", ups.state, "", max_age_s),
        Reading("power.on_battery", ups.on_battery, "", max_age_s),
        Reading("power.low_battery", ups.low_battery, "", max_age_s),
    ]
    for key, value, unit in (
        ("power.ups_charge_pct", ups.charge_pct, "%"),
        ("power.ups_runtime_s", ups.runtime_s, "s"),
        ("power.ups_load_pct", ups.load_pct, "%"),
    ):
        if value is not None:
            out.append(Reading(key, value, unit, max_age_s))
    return out


class PowerMonitor(Monitor):
    """A site with no UPS configured (and no simulator) gets one device_unreachable saying so."""

    device = NAME

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.ups = ups_from_config(ctx.cfg)

    def read(self) -> list[Reading]:
        if self.ups is None:
            raise DeviceUnavailable(NAME, "none configured: set monitors.ups_command (e.g. [upsc, ups@localhost])")
        return readings(self.ups.status(), self.max_age_s)
