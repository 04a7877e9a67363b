"""The Monitors page and the status board's JSON, CSV and plots, on the live fleet's web app."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
from playwright.sync_api import Browser, expect

from gozen.db.engine import make_engine
from gozen.monitors.board import Reading, publish
from tests.conftest import Fleet
from tests.web.test_processes_browser import SHOTS, browser  # noqa: F401 - the fixture


def fill_board(fleet: Fleet) -> datetime:
    """A day of weather every 10 minutes, a fresh humid reading, a stale camera and an unsafe decision."""
    engine = make_engine(fleet.cfg.database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(144, 0, -1):
        t = now - timedelta(minutes=10 * i)
        publish(engine, "monitor:weather", [Reading("weather.humidity_pct", 50.0 + i % 30, "%", 30.0)], t)
    publish(
        engine,
        "monitor:weather",
        [Reading("weather.humidity_pct", 88.0, "%", 30.0), Reading("weather.wind_ms", 4.0, "m/s", 30.0)],
        now,
    )
    publish(
        engine,
        "monitor:temperature",
        [Reading("temperature.camera_c", -10.0, "degC", 30.0)],
        now - timedelta(minutes=5),
    )
    publish(
        engine,
        "monitor:safety",
        [Reading("safety.safe", False, "", 30.0), Reading("safety.reasons", "humidity 88% > 85%", "", 30.0)],
        now,
    )
    return now


def test_status_api_history_and_csv(fleet: Fleet) -> None:
    now = fill_board(fleet)
    body = httpx.get(f"{fleet.web_url}/api/status", timeout=30).json()
    hum = body["values"]["weather.humidity_pct"]
    assert (hum["value"], hum["unit"], hum["level"], hum["stale"]) == (88.0, "%", "alarm", False)
    cam = body["values"]["temperature.camera_c"]
    assert cam["stale"] is True and cam["level"] == "stale"
    assert body["safe_to_observe"] is False
    since = (now - timedelta(hours=2)).isoformat()
    h = httpx.get(f"{fleet.web_url}/api/status/history", params={"key": "weather.humidity_pct", "since": since}).json()
    assert len(h["points"]) == 13 and h["points"][-1][1] == 88.0 and h["unit"] == "%"
    bad = httpx.get(f"{fleet.web_url}/api/status/history", params={"key": "weather.humidity_pct", "since": "yesterday"})
    assert bad.status_code == 400 and "since: not an ISO 8601 time" in bad.json()["detail"]
    assert httpx.get(f"{fleet.web_url}/api/status/history", params={"key": "no.such"}).status_code == 404
    r = httpx.get(
        f"{fleet.web_url}/api/status/history.csv",
        params={"key": "weather", "since": (now - timedelta(hours=25)).isoformat()},
        timeout=30,
    )
    rows = list(csv.reader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv") and rows[0] == ["time_utc", "key", "value", "unit"]
    assert {row[1] for row in rows[1:]} == {"weather.humidity_pct", "weather.wind_ms"} and len(rows) == 1 + 145 + 1
    svg = httpx.get(f"{fleet.web_url}/monitors/plots/weather.svg", timeout=30)
    assert svg.headers["content-type"].startswith("image/svg+xml") and svg.text.count("<polyline") == 2
    assert httpx.get(f"{fleet.web_url}/monitors/plots/nothing.svg").status_code == 404


def test_monitors_page_colours_levels_marks_stale_and_draws_plots(fleet: Fleet, browser: Browser) -> None:  # noqa: F811
    fill_board(fleet)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(f"{fleet.web_url}/monitors")
    expect(page.locator("#safety")).to_contain_text("Unsafe to observe: humidity 88% > 85%")
    expect(page.locator('tr[data-key="weather.humidity_pct"] .lvl')).to_have_text("ALARM")
    expect(page.locator('tr[data-key="temperature.camera_c"] .lvl')).to_have_text("STALE")
    expect(page.locator('tr[data-key="temperature.camera_c"]')).to_have_class("stale")
    plot = page.locator('section[data-group="weather"] img')
    expect(plot).to_be_visible()
    assert page.evaluate("img => img.naturalWidth", plot.element_handle()) > 100  # the SVG loaded and drew
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "monitors.png"), full_page=True)
    page.close()
