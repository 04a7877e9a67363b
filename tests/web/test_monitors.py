"""The Monitors page's data: /api/status, its history and CSV, /api/monitors over a range, the group plots.

The web app alone behind a real uvicorn, on a SQLite database filled through the status board's
own API (`publish`) with the simulated observatory's keys and hours of history: no supervisord.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine

from gozen.config import Config
from gozen.daq.snapshot import StatusValue
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.monitors.board import Reading, heartbeat, publish
from gozen.web.monitors import safety_reasons, time_range
from tests.conftest import free_port, web_section, write_config
from tests.web.served import served

DISKS = ("daq-vol1", "daq-vol2", "node0", "node1", "node2")
PROGRAMS = ("monitor:weather", "monitor:telescope", "storage:dfmonitor", "queue:scheduler", "daq:readout-0")


def observatory(t: datetime, i: int, age_s: float) -> list[Reading]:
    """The simulated observatory's board at reading i (time t): weather, telescope, dome, safety, GPS,
    temperatures, UPS, disks, and ZFS absent. The UPS is on battery, and the site unsafe, for readings 20 to 39
    before the last; the dome is open in the last quarter of the readings."""
    w = math.sin(i / 30)
    on_battery = 20 <= age_s / 60 < 40
    rows: list[tuple[str, object, str]] = [
        ("weather.temperature_c", round(4 + 3 * w, 2), "degC"),
        ("weather.dewpoint_c", round(-2 + w, 2), "degC"),
        ("weather.sky_temp_c", round(-30 + 5 * w, 2), "degC"),
        ("weather.humidity_pct", round(60 + 25 * w, 2), "%"),
        ("weather.cloud_pct", round(20 + 10 * w, 2), "%"),
        ("weather.pressure_hpa", round(850 + w, 2), "hPa"),
        ("weather.wind_ms", round(3 + 2 * w, 2), "m/s"),
        ("weather.wind_gust_ms", round(5 + 3 * w, 2), "m/s"),
        ("weather.wind_dir_deg", (i * 7) % 360, "deg"),
        ("weather.rain_mmh", 0.0, "mm/h"),
        ("weather.safe", True, ""),
        ("telescope.ra_deg", (i * 0.25) % 360, "deg"),
        ("telescope.dec_deg", 30.0, "deg"),
        ("telescope.alt_deg", 40 + 20 * w, "deg"),
        ("telescope.az_deg", (180 + i) % 360, "deg"),
        ("telescope.airmass", round(1 / math.sin(math.radians(40 + 20 * w)), 3), ""),
        ("telescope.tracking", i % 12 != 0, ""),
        ("telescope.slewing", i % 12 == 0, ""),
        ("telescope.parked", False, ""),
        ("dome.shutter", "open" if age_s < 3600 else "closed", ""),
        ("dome.slewing", False, ""),
        ("dome.az_deg", (180 + i) % 360, "deg"),
        ("safety.safe", not on_battery, ""),
        ("safety.reasons", "on battery power" if on_battery else "", ""),
        ("safety.sun_alt_deg", -30 + 10 * w, "deg"),
        ("gps.fix", True, ""),
        ("gps.mode", 3, ""),
        ("gps.pps", True, ""),
        ("gps.offset_ms", round(0.02 * w, 4), "ms"),
        ("gps.satellites", 9, ""),
        ("temperature.camera_c", -10.0, "degC"),
        ("temperature.chips_max_c", -9.2, "degC"),
        ("temperature.electronics_c", 31.0, "degC"),
        ("temperature.room_c", 12.0, "degC"),
        ("power.ups_state", "OB DISCHRG" if on_battery else "OL", ""),
        ("power.on_battery", on_battery, ""),
        ("power.low_battery", False, ""),
        ("power.ups_charge_pct", 60.0 if on_battery else 100.0, "%"),
        ("power.ups_runtime_s", 1800.0, "s"),
        ("power.ups_load_pct", 35.0, "%"),
    ]
    for n, d in enumerate(DISKS):
        rows += [
            (f"df.{d}.online", True, ""),
            (f"df.{d}.used_pct", 30.0 + n * 5 + i / 100, "%"),
            (f"df.{d}.free_bytes", int(5.09491e10 - i * 1e6), "B"),
            (f"df.{d}.inodes_used_pct", 1.5, "%"),
            (f"df.{d}.fill_rate_bps", 1.2e6, "B/s"),
            (f"df.{d}.time_to_full_s", 42000.0, "s"),
        ]
    rows.append(("daq.localhost.readout-0.frames_per_s", 2.0, "1/s"))
    return [Reading(k, v, u, 30.0) for k, v, u in rows]  # type: ignore[arg-type]


def seed_board(engine: Engine, now: datetime, hours: float, every_s: float) -> None:
    """`hours` of history every `every_s`, ending now, through the board's API; ZFS says once, long ago, that
    it is not here (its value is stale); programs' heartbeats."""
    n = int(hours * 3600 / every_s)
    for i in range(n + 1):
        t = now - timedelta(seconds=(n - i) * every_s)
        publish(engine, "monitor:sim", observatory(t, i, (n - i) * every_s), t)
    publish(
        engine, "storage:zfsmonitor", [Reading("zfs.localhost.available", False, "", 180.0)], now - timedelta(hours=1)
    )
    for p in PROGRAMS:
        heartbeat(engine, "localhost", p, 30.0)


@dataclass(frozen=True)
class App:
    url: str
    cfg: Config
    engine: Engine
    now: datetime


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """Seven hours of the simulated observatory's board, a reading a minute."""
    tmp = tmp_path_factory.mktemp("monitors")
    cfg = write_config(
        tmp / "gozen.yaml", {"data_dir": str(tmp / "var"), "web": web_section(free_port()) | {"refresh_s": 300}}
    )
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    seed_board(engine, now, hours=7, every_s=60)
    with served(cfg, engine) as url:
        yield App(url, cfg, engine, now)


def test_time_ranges_span_their_hours_and_the_night_starts_at_local_noon() -> None:
    tz = ZoneInfo("Asia/Tokyo")
    now = datetime(2026, 11, 26, 16, 30, tzinfo=UTC)  # 01:30 JST on the 27th
    for name, hours in (("1h", 1), ("6h", 6), ("24h", 24)):
        t0, t1 = time_range(name, now, tz)
        assert (t1, t1 - t0) == (now, timedelta(hours=hours))
    assert time_range("night", now, tz)[0] == datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # 12:00 JST on the 26th
    afternoon = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)  # 14:00 JST: tonight began at noon today
    assert time_range("night", afternoon, tz)[0] == datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def test_unsafe_says_why_or_that_the_decision_is_old() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    at = (now - timedelta(minutes=5)).isoformat()
    unsafe = {
        "safety.safe": StatusValue(False, "", "monitor:safety", at),
        "safety.reasons": StatusValue("rain", "", "m", at),
    }
    assert safety_reasons(unsafe, now) == "rain"
    old = {"safety.safe": StatusValue(True, "", "monitor:safety", at, stale=True)}
    assert safety_reasons(old, now) == "the last safety decision is 5.00 min old"
    assert safety_reasons({}, now).startswith("no safety decision on the board")


def test_status_api_says_na_for_zfs_here_and_levels_for_the_rest(app: App) -> None:
    body = httpx.get(f"{app.url}/api/status", timeout=30).json()
    zfs = body["values"]["zfs.localhost.available"]
    assert zfs["stale"] is True and zfs["level"] == "na"  # stale by its age, but not here at all: N/A
    assert body["values"]["weather.humidity_pct"]["level"] in ("ok", "warn")
    assert body["values"]["power.on_battery"]["level"] == "ok" and body["safe_to_observe"] is True


def test_history_and_csv_of_a_group(app: App) -> None:
    since = (app.now - timedelta(hours=2)).isoformat()
    h = httpx.get(f"{app.url}/api/status/history", params={"key": "weather.humidity_pct", "since": since}).json()
    assert len(h["points"]) == 121 and h["unit"] == "%"
    bad = httpx.get(f"{app.url}/api/status/history", params={"key": "weather.humidity_pct", "since": "yesterday"})
    assert bad.status_code == 400 and "since: not an ISO 8601 time" in bad.json()["detail"]
    assert httpx.get(f"{app.url}/api/status/history", params={"key": "no.such"}).status_code == 404
    r = httpx.get(f"{app.url}/api/status/history.csv", params={"key": "power", "since": since}, timeout=30)
    rows = list(csv.reader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv") and rows[0] == ["time_utc", "key", "value", "unit"]
    assert len({row[1] for row in rows[1:]}) == 6 and len(rows) == 1 + 6 * 121


@pytest.mark.parametrize(("name", "hours"), [("1h", 1), ("6h", 6), ("24h", 24)])
def test_api_monitors_spans_the_asked_range(app: App, name: str, hours: float) -> None:
    body = httpx.get(f"{app.url}/api/monitors", params={"range": name}, timeout=30).json()
    t0, t1 = datetime.fromisoformat(body["since"]), datetime.fromisoformat(body["until"])
    assert body["range"] == name and abs((t1 - t0).total_seconds() - hours * 3600) < 1
    weather = next(g for g in body["groups"] if g["group"] == "weather")
    wind = next(p for p in weather["plot"]["numbers"] if p["unit"] == "m/s")
    assert set(wind["lines"]) == {"weather.wind_ms", "weather.wind_gust_ms"}  # one unit: overlaid
    points = wind["lines"]["weather.wind_ms"]
    assert 0 < len(points) <= 300 and datetime.fromisoformat(points[0][0]) >= t0
    first = datetime.fromisoformat(points[0][0])
    assert first - t0 < timedelta(minutes=6) if hours <= 6 else first - t0 > timedelta(hours=16)  # 7 h of history


def test_api_monitors_rows_in_human_units_with_age_and_na(app: App) -> None:
    body = httpx.get(f"{app.url}/api/monitors", timeout=30).json()
    assert body["range"] == "6h" and body["auto"] is True  # 7 h of history: 6 h shows data all along
    rows = {r["key"]: r for g in body["groups"] for r in g["rows"]}
    assert rows["df.node0.free_bytes"]["text"].endswith(" GB") and "e+" not in rows["df.node0.free_bytes"]["text"]
    assert rows["temperature.camera_c"]["text"] == "-10.0 °C" and rows["df.node0.time_to_full_s"]["text"] == "11.7 h"
    assert rows["zfs.localhost.available"]["state"] == "na" and rows["zfs.localhost.available"]["label"] == "N/A"
    assert rows["weather.humidity_pct"]["age_s"] < 120
    assert [g["group"] for g in body["groups"]] == [
        "safety", "weather", "telescope", "dome", "gps", "temperature", "power", "df", "zfs"
    ]  # fmt: skip
    assert {r["key"].split(".")[0] for r in body["other"]} == {"daq", "service"}
    bad = httpx.get(f"{app.url}/api/monitors", params={"range": "2h"})
    assert bad.status_code == 422 and "range" in str(bad.json()["detail"])


def test_a_group_plot_on_its_own_has_its_styles_and_its_bands(app: App) -> None:
    svg = httpx.get(f"{app.url}/monitors/plots/power.svg", params={"range": "1h"}, timeout=30)
    assert svg.headers["content-type"].startswith("image/svg+xml") and "<style>" in svg.text
    assert 'data-key="power.on_battery" data-value="true"' in svg.text and 'data-range="1h"' in svg.text
    assert httpx.get(f"{app.url}/monitors/plots/nothing.svg").status_code == 404
    old = httpx.get(f"{app.url}/monitors/plots/weather.svg", params={"hours": 3}, timeout=30)  # the old query
    assert old.status_code == 200 and 'data-range="custom"' in old.text
