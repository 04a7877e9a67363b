"""OK / WARN / ALARM for board values from the config's limits; STALE and N/A (not here) for the Monitors page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from gozen.config import Config
from gozen.daq.snapshot import StatusValue

Level = Literal["ok", "warn", "alarm"]


def level(cfg: Config, key: str, value: object) -> Level | None:
    """The level of a value, or None for values that are neither good nor bad (a position, a name)."""
    lim, m = cfg.monitors.safety, cfg.monitors

    def above(warn: float, alarm: float) -> Level | None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        return "alarm" if value > alarm else "warn" if value > warn else "ok"

    if key == "weather.humidity_pct":
        return above(lim.max_humidity_pct - 10, lim.max_humidity_pct)
    if key in ("weather.wind_ms", "weather.wind_gust_ms"):
        return above(0.7 * lim.max_wind_ms, lim.max_wind_ms)
    if key == "weather.rain_mmh":
        return above(lim.max_rain_rate_mmh, lim.max_rain_rate_mmh)
    if key == "gps.offset_ms" and isinstance(value, int | float):
        return "alarm" if abs(value) > 10 else "warn" if abs(value) > 1 else "ok"
    if key == "temperature.camera_c":
        return above(-8.0, -5.0)  # the cooler holds -10 degC
    if key == "power.ups_charge_pct" and isinstance(value, int | float):
        return "alarm" if value < 30 else "warn" if value < 80 else "ok"
    if key.startswith("df.") and key.endswith("used_pct"):
        return above(m.df_warn_pct, m.df_alarm_pct)
    if key in ("safety.safe", "weather.safe", "gps.fix", "gps.pps") or key.endswith(".online"):
        return "ok" if value is True else "alarm" if value is False else None
    if key in ("power.on_battery", "power.low_battery"):
        return "alarm" if value is True else "ok" if value is False else None
    if key.startswith("zfs.") and key.endswith(".state"):
        return "ok" if value == "ONLINE" else "alarm" if value in ("FAULTED", "UNAVAIL") else "warn"
    return None


State = Literal["ok", "warn", "alarm", "stale", "na"]


def not_available(key: str, values: Mapping[str, StatusValue]) -> bool:
    """True for a device that does not exist here: the key, or a key under its prefix, is `<prefix>.available`
    and says false (ZFS on a host without zpools). Its values are not stale, they will never come."""
    parts = key.split(".")
    for n in range(1, len(parts)):
        sv = values.get(".".join(parts[:n]) + ".available")  # a key `x.available` is its own flag
        if sv is not None and sv.value is False:
            return True
    return False


def state(cfg: Config, key: str, values: Mapping[str, StatusValue]) -> State | None:
    """What the Monitors page says of a value: N/A (not here at all) before STALE (too old) before its level."""
    if not_available(key, values):
        return "na"
    sv = values[key]
    if sv.stale:
        return "stale"
    return level(cfg, key, sv.value)
