"""`monitor:safety`: is it safe to observe? Limits from config against the board, with the reasons.

Unsafe when the humidity, wind or rain is over its limit, the Sun is too high, the UPS is on
battery, the SafetyMonitor says so, or the weather readings are missing or stale (no news
is not good news). The decision is published as `safety.safe` / `safety.reasons`; the first
decision and every change are events. The queue refuses to start exposures while unsafe.
Right after a start, weather not read yet is "waiting for the first weather reading" (not
observing, but no alarm) until the monitors' start grace has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gozen.config import SafetyLimits
from gozen.daq.snapshot import StatusSnapshot
from gozen.db.types import utcnow
from gozen.monitors.base import Monitor
from gozen.monitors.board import Reading, prune_history, snapshot
from gozen.service import Context
from gozen.sky import sun_altitude

WEATHER_NEEDED = ("weather.humidity_pct", "weather.wind_ms", "weather.rain_mmh")


@dataclass(frozen=True)
class Decision:
    safe: bool
    reasons: tuple[str, ...]
    waiting: bool = False  # not safe only because the first weather reading has not come yet

    def words(self) -> str:
        if self.safe:
            return "safe to observe"
        return ("not observing yet: " if self.waiting else "unsafe: ") + "; ".join(self.reasons)


def stale_weather(snap: StatusSnapshot) -> list[str]:
    """The weather keys the decision needs that are missing or stale."""
    return [k for k in WEATHER_NEEDED if (v := snap.get(k)) is None or v.stale]


def decide(
    snap: StatusSnapshot, limits: SafetyLimits, sun_alt_deg: float, waiting_for_weather: bool = False
) -> Decision:
    """Safe or not, with the reasons; `waiting_for_weather`: a start in progress, stale weather is not news."""
    reasons = []
    stale = stale_weather(snap)
    if stale:
        which = ", ".join(k.split(".")[1] for k in stale)
        if waiting_for_weather:
            reasons.append(f"waiting for the first weather reading ({which})")
        else:
            reasons.append(f"weather data missing or stale ({which})")

    def over(key: str, limit: float, what: str, unit: str) -> None:
        v = snap.get(key)
        if v is not None and not v.stale and isinstance(v.value, int | float) and v.value > limit:
            reasons.append(f"{what} {v.value:g}{unit} > {limit:g}{unit}")

    over("weather.humidity_pct", limits.max_humidity_pct, "humidity", "%")
    over("weather.wind_ms", limits.max_wind_ms, "wind", " m/s")
    over("weather.rain_mmh", limits.max_rain_rate_mmh, "rain", " mm/h")
    if sun_alt_deg > limits.max_sun_alt_deg:
        reasons.append(f"Sun at {sun_alt_deg:+.1f} deg > {limits.max_sun_alt_deg:+g} deg")
    battery = snap.get("power.on_battery")
    if limits.unsafe_on_battery and battery is not None and not battery.stale and battery.value is True:
        reasons.append("UPS on battery")
    monitor = snap.get("weather.safe")
    if limits.honour_safety_monitor and monitor is not None and not monitor.stale and monitor.value is False:
        reasons.append("the SafetyMonitor says unsafe")
    return Decision(not reasons, tuple(reasons), waiting=bool(stale) and waiting_for_weather and len(reasons) == 1)


class SafetyMonitor(Monitor):
    """Publishes the decision every `monitors.every_s`; `clock` is the time the Sun is computed for."""

    device = "safety"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        m = ctx.cfg.monitors
        self.limits = m.safety
        if m.simulator.enabled and m.simulator.dark_sky:  # the simulated sky is dark at any hour
            self.limits = self.limits.model_copy(update={"max_sun_alt_deg": 90.0})
        self.site = ctx.cfg.site
        self.history_days = m.history_days
        self.clock: Callable[[], datetime] = utcnow  # tests set the night
        self.last: Decision | None = None
        self.pruned_at = float("-inf")  # trimmed at the first reading, then hourly
        self.weather_seen = False  # fresh weather has been on the board since this program started

    def housekeeping(self) -> None:
        """The board's history is trimmed here: one safety monitor runs per observatory, hourly is enough."""
        if time.monotonic() - self.pruned_at > 3600:
            self.pruned_at = time.monotonic()
            prune_history(self.ctx.engine, utcnow() - timedelta(days=self.history_days))

    def read(self) -> list[Reading]:
        self.housekeeping()
        sun = sun_altitude(self.site, self.clock())
        snap = snapshot(self.ctx.engine)
        self.weather_seen = self.weather_seen or not stale_weather(snap)
        waiting = not self.weather_seen and time.monotonic() - self.started_at < self.start_grace_s
        d = decide(snap, self.limits, sun, waiting_for_weather=waiting)
        if d != self.last:
            self.ctx.event(
                "safety_changed",
                "safe_to_observe",
                d.words(),
                "info" if d.safe or d.waiting else "warning",
                {"safe": d.safe, "reasons": list(d.reasons)},
            )
            self.last = d
        age = self.max_age_s
        return [
            Reading("safety.safe", d.safe, "", age),
            Reading("safety.reasons", "; ".join(d.reasons), "", age),
            Reading("safety.sun_alt_deg", round(sun, 3), "deg", age),
        ]
