"""Safe to observe? The limits against the board, the Sun computed with astropy, every change an event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import astropy.units as u
import pytest
from astropy.coordinates import AltAz, EarthLocation, get_sun
from astropy.time import Time
from sqlalchemy import Engine

from gozen.config import SafetyLimits, Site
from gozen.db.events import recent_events
from gozen.monitors.board import Reading, publish, snapshot
from gozen.monitors.safety import SafetyMonitor, decide
from gozen.sky import sun_altitude
from tests.monitors.contexts import monitor_context

NIGHT = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # midnight at Kiso (JST = UTC + 9)
NOON = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
GOOD = {"weather.humidity_pct": 60.0, "weather.wind_ms": 3.0, "weather.rain_mmh": 0.0, "weather.safe": True}


def board(engine: Engine, values: dict[str, object], when: datetime | None = None) -> None:
    publish(engine, "test", [Reading(k, v, "", 60.0) for k, v in values.items()], when)  # type: ignore[arg-type]


def test_sun_altitude_agrees_with_astropy() -> None:
    site = Site()
    loc = EarthLocation(lat=site.lat_deg * u.deg, lon=site.lon_deg * u.deg, height=site.height_m * u.m)
    for when in (NIGHT, NOON, NIGHT + timedelta(hours=6.5)):
        t = Time(when)
        expected = get_sun(t).transform_to(AltAz(obstime=t, location=loc)).alt.deg
        assert sun_altitude(site, when) == pytest.approx(expected, abs=1e-6)
    assert sun_altitude(site, NIGHT) < -60 and sun_altitude(site, NOON) > 20


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"weather.humidity_pct": 93.5}, "humidity 93.5% > 85%"),
        ({"weather.wind_ms": 17.2}, "wind 17.2 m/s > 15 m/s"),
        ({"weather.rain_mmh": 0.4}, "rain 0.4 mm/h > 0 mm/h"),
        ({"power.on_battery": True}, "UPS on battery"),
        ({"weather.safe": False}, "the SafetyMonitor says unsafe"),
    ],
)
def test_each_limit_makes_it_unsafe_with_its_reason(engine: Engine, change: dict[str, object], reason: str) -> None:
    board(engine, GOOD | change)
    d = decide(snapshot(engine), SafetyLimits(), sun_altitude(Site(), NIGHT))
    assert (d.safe, d.reasons) == (False, (reason,))


def test_good_night_is_safe_but_day_and_stale_weather_are_not(engine: Engine) -> None:
    board(engine, GOOD)
    assert decide(snapshot(engine), SafetyLimits(), sun_altitude(Site(), NIGHT)).safe
    day = decide(snapshot(engine), SafetyLimits(), sun_altitude(Site(), NOON))
    assert not day.safe and day.reasons[0].startswith("Sun at +")
    board(engine, GOOD, when=datetime.now(UTC) - timedelta(minutes=5))  # the station went quiet five minutes ago
    stale = decide(snapshot(engine), SafetyLimits(), -40.0)
    assert stale.reasons == ("weather data missing or stale (humidity_pct, wind_ms, rain_mmh)",)
    assert decide(snapshot(engine, "nothing."), SafetyLimits(), -40.0).safe is False  # no news is not good news


def test_the_decision_and_each_change_are_events_and_on_the_board(engine: Engine) -> None:
    mon = SafetyMonitor(monitor_context(engine, "monitor:safety", every_s=1.0))
    mon.clock = lambda: NIGHT
    board(engine, GOOD)
    mon.step()
    board(engine, GOOD | {"weather.humidity_pct": 96.0})
    mon.step()
    mon.step()  # no change: no new event
    board(engine, GOOD)
    mon.step()
    events = [(e.severity, e.message) for e in reversed(recent_events(engine, 10, kind="safety_changed"))]
    assert events == [
        ("info", "safe to observe"),
        ("warning", "unsafe: humidity 96% > 85%"),
        ("info", "safe to observe"),
    ]
    snap = snapshot(engine, "safety.")
    assert snap.get("safety.safe").value is True and snap.get("safety.reasons").value == ""
    assert snap.number("safety.sun_alt_deg") == pytest.approx(sun_altitude(Site(), NIGHT), abs=1e-3)
