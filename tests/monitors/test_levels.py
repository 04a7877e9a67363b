"""What the Monitors page says of a value: levels, STALE, N/A (not here), human units, plot thinning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from gozen.config import Config
from gozen.daq.snapshot import StatusValue
from gozen.monitors import series
from gozen.monitors.board import Reading, publish, snapshot
from gozen.monitors.groups import order, panels
from gozen.monitors.levels import level, not_available, state
from gozen.monitors.units import human

T = "2026-11-26T12:00:00+00:00"


def sv(value: object, unit: str = "", stale: bool = False) -> StatusValue:
    return StatusValue(value, unit, "test", T, stale)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (5.09491e10, "B", "50.9 GB"),
        (2.2e12, "B", "2.20 TB"),
        (900, "B", "900 B"),
        (1.2e6, "B/s", "1.20 MB/s"),
        (85.34, "%", "85.3 %"),
        (-10.0, "degC", "-10.0 °C"),
        (4.25, "m/s", "4.25 m/s"),
        (1013.2, "hPa", "1013 hPa"),
        (0.4, "mm/h", "0.400 mm/h"),
        (12345, "s", "3.43 h"),
        (45, "s", "45 s"),
        (200000, "s", "2.31 d"),
        (182.5, "deg", "182°"),
        (0.0123, "ms", "0.0123 ms"),
        (12, "", "12"),
        (True, "", "yes"),
        (False, "", "no"),
        (None, "m/s", "–"),
        ("OL", "", "OL"),
    ],
)
def test_values_read_in_human_units(value: object, unit: str, text: str) -> None:
    assert human(value, unit) == text


def test_zfs_on_a_host_without_zpools_is_not_available_not_stale() -> None:
    cfg = Config()
    values = {
        "zfs.head.available": sv(False, stale=True),  # published every 600 s, max age 180 s: it goes stale
        "zfs.head.tank.state": sv("ONLINE", stale=True),  # left from before zpool went away
        "zfs.nas.available": sv(True),
        "zfs.nas.tank.state": sv("DEGRADED"),
        "zfs.nas.tank.capacity_pct": sv(40.0, "%", stale=True),
    }
    assert state(cfg, "zfs.head.available", values) == "na"
    assert state(cfg, "zfs.head.tank.state", values) == "na"
    assert state(cfg, "zfs.nas.available", values) is None
    assert state(cfg, "zfs.nas.tank.state", values) == "warn"
    assert state(cfg, "zfs.nas.tank.capacity_pct", values) == "stale"  # a pool that is there but silent
    assert not_available("zfs.head.tank.state", values) and not not_available("zfs.nas.tank.state", values)


def test_stale_comes_before_the_level_and_levels_follow_the_limits() -> None:
    cfg = Config()
    values = {"weather.humidity_pct": sv(99.0, "%", stale=True), "weather.wind_ms": sv(1.0, "m/s")}
    assert state(cfg, "weather.humidity_pct", values) == "stale"
    assert state(cfg, "weather.wind_ms", values) == "ok"
    limit = cfg.monitors.safety.max_humidity_pct
    assert [level(cfg, "weather.humidity_pct", v) for v in (limit - 20, limit - 5, limit + 1)] == [
        "ok",
        "warn",
        "alarm",
    ]
    assert level(cfg, "power.on_battery", True) == "alarm" and level(cfg, "safety.safe", True) == "ok"
    assert level(cfg, "df.node0.online", False) == "alarm"  # a missing mount is not "not available"
    assert level(cfg, "telescope.tracking", True) is None


def test_groups_overlay_keys_of_one_unit_and_draw_flags_and_states_as_bands() -> None:
    values = {
        "weather.wind_ms": sv(3.0, "m/s"),
        "weather.wind_gust_ms": sv(5.0, "m/s"),
        "weather.humidity_pct": sv(50.0, "%"),
        "weather.safe": sv(True),
        "dome.shutter": sv("open"),
        "safety.reasons": sv("humidity 90% > 85%"),
    }
    weather = panels("weather", {k: v for k, v in values.items() if k.startswith("weather.")})
    assert [(p.kind, p.unit, p.keys) for p in weather] == [
        ("number", "%", ("weather.humidity_pct",)),
        ("number", "m/s", ("weather.wind_gust_ms", "weather.wind_ms")),
        ("band", "", ("weather.safe",)),
    ]
    assert [(p.kind, p.unit) for p in panels("dome", {"dome.shutter": values["dome.shutter"]})] == [("band", "state")]
    assert panels("safety", {"safety.reasons": values["safety.reasons"]}) == []  # text: the table only
    df = panels(
        "df",
        {f"df.{n}.{m}": sv(1.0, u) for n in ("vol1", "node0") for m, u in (("used_pct", "%"), ("free_bytes", "B"))},
    )
    assert [(p.measure, len(p.keys)) for p in df] == [("used_pct", 2), ("free_bytes", 2)]  # one measure of every disk
    assert order({"zfs", "weather", "service", "safety"}) == ["safety", "weather", "zfs", "service"]


def test_history_is_thinned_in_the_database_to_min_max_and_mean_per_slice(engine: Engine) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(600):  # 10 minutes at 1 s
        t = now - timedelta(seconds=600 - i)
        publish(engine, "t", [Reading("w.x", float(i % 10), "m", 5.0), Reading("w.f", 200 <= i < 260, "", 5.0)], t)
    got = series.numbers(engine, ["w.x"], now - timedelta(minutes=10), now, buckets=60)["w.x"]
    assert 59 <= len(got) <= 60 and all((b.lo, b.hi, b.mean) == (0.0, 9.0, 4.5) for b in got[1:-1])
    spans = series.states(engine, ["w.f"], now - timedelta(minutes=10), now, buckets=60)["w.f"]
    true = [s for s in spans if s.lo is True and s.hi is True]
    assert len(true) == 6 and abs((true[0].start - (now - timedelta(seconds=400))).total_seconds()) <= 10
    assert snapshot(engine).values["w.f"].value is False


def fill(engine: Engine, now: datetime) -> None:
    """Ten minutes at 1 s: w.x counts 0..9 over and over, the flag w.f is true from 400 s to 340 s ago."""
    for i in range(600):
        t = now - timedelta(seconds=600 - i)
        publish(engine, "t", [Reading("w.x", float(i % 10), "m", 5.0), Reading("w.f", 200 <= i < 260, "", 5.0)], t)


@pytest.mark.parametrize("exact", [True, False])
def test_a_long_history_is_sampled_a_reading_a_slice_through_the_index(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, exact: bool
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    fill(engine, now)
    monkeypatch.setattr(series, "EXACT_ROWS", 10_000 if exact else 100)
    assert series.many(engine, ["w.x"], now - timedelta(minutes=10), now) is not exact
    got = series.numbers(engine, ["w.x"], now - timedelta(minutes=10), now, buckets=60)["w.x"]
    assert 59 <= len(got) <= 60
    if exact:
        assert all((b.lo, b.hi) == (0.0, 9.0) for b in got[1:-1])
    else:  # each slice's first reading: the slices are 10 s, so the same phase of the count every time
        assert len({b.mean for b in got[1:-1]}) == 1 and all(b.lo == b.hi == b.mean for b in got)
    spans = series.states(engine, ["w.f"], now - timedelta(minutes=10), now, buckets=60)["w.f"]
    true = [s for s in spans if s.hi is True]
    assert len(true) in (6, 7) and abs((true[0].start - (now - timedelta(seconds=400))).total_seconds()) <= 10


def test_the_thinning_answers_the_same_on_postgresql(pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    fill(pg_engine, now)
    for cap in (10_000, 100):
        monkeypatch.setattr(series, "EXACT_ROWS", cap)
        got = series.numbers(pg_engine, ["w.x"], now - timedelta(minutes=10), now, buckets=60)["w.x"]
        assert 59 <= len(got) <= 60 and max(b.hi for b in got) == (9.0 if cap == 10_000 else got[1].mean)
        spans = series.states(pg_engine, ["w.f"], now - timedelta(minutes=10), now, buckets=60)["w.f"]
        assert len([s for s in spans if s.hi is True]) in (6, 7)
