"""`monitor:gpstime`: the GPS fix and the system clock's offset from GPS time (gpsd, via gozen.devices)."""

from __future__ import annotations

from gozen.devices.factory import gps_from_config
from gozen.devices.gps import GpsFix
from gozen.monitors.base import Monitor
from gozen.monitors.board import Reading
from gozen.service import Context


def readings(fix: GpsFix, max_age_s: float) -> list[Reading]:
    out = [
        Reading("gps.fix", fix.has_fix, "", max_age_s),
        Reading("gps.mode", fix.mode, "", max_age_s),
        Reading("gps.pps", fix.pps, "", max_age_s),
    ]
    if fix.offset_ms is not None:
        out.append(Reading("gps.offset_ms", round(fix.offset_ms, 6), "ms", max_age_s))
    if fix.satellites is not None:
        out.append(Reading("gps.satellites", fix.satellites, "", max_age_s))
    return out


class GpsMonitor(Monitor):
    device = "gpsd"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.receiver = gps_from_config(ctx.cfg)

    def read(self) -> list[Reading]:
        return readings(self.receiver.fix(), self.max_age_s)
