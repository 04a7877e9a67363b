"""The Monitors page in headless Chromium: the range buttons change the plotted span in place, flags are
bands, values read in human units with N/A for ZFS here, and the page fits a couple of screens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.web.test_monitors import App, app  # noqa: F401 - the fixture: 7 h of the simulated observatory
from tests.web.test_processes_browser import browser, clean_page  # noqa: F401 - the fixture

SHOTS = Path(__file__).parents[2] / "var" / "test-screenshots"
SCREEN_H = 900


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    with clean_page(browser, 1300, SCREEN_H, allowed=lambda x: "favicon" in x) as p:
        yield p


def plot_span(page: Page, group: str) -> dict[str, Any]:
    """The group's plot as drawn: its range, since/until and the times of its axis labels."""
    return page.eval_on_selector(
        f'svg.mplot[data-group="{group}"]',
        """s => ({range: s.dataset.range, since: s.dataset.since, until: s.dataset.until,
                 ticks: [...s.querySelectorAll('text.tick[data-t]')].map(t => t.dataset.t),
                 labels: [...s.querySelectorAll('text.tick')].map(t => t.textContent)})""",
    )


def hours(span: dict[str, Any]) -> float:
    return (datetime.fromisoformat(span["until"]) - datetime.fromisoformat(span["since"])).total_seconds() / 3600


def tick_step_s(span: dict[str, Any]) -> float:
    t = [datetime.fromisoformat(x) for x in span["ticks"]]
    return (t[1] - t[0]).total_seconds()


def test_range_buttons_change_the_plotted_span_in_place(app: App, page: Page) -> None:  # noqa: F811
    page.goto(f"{app.url}/monitors")
    first = plot_span(page, "weather")
    assert first["range"] == "6h" and round(hours(first), 3) == 6 and tick_step_s(first) == 3600
    expect(page.locator('#ranges a[data-range="6h"]')).to_have_class("active")
    page.evaluate("window.notReloaded = true")  # gone if the page reloads instead of changing in place

    page.click('#ranges a[data-range="1h"]')
    expect(page.locator('svg.mplot[data-group="weather"]')).to_have_attribute("data-range", "1h")
    one = plot_span(page, "weather")
    assert round(hours(one), 3) == 1 and tick_step_s(one) == 600 and len(one["ticks"]) >= 5
    assert page.evaluate("window.notReloaded") is True and page.url.endswith("?range=1h")
    assert all(plot_span(page, g)["range"] == "1h" for g in ("power", "df", "telescope"))
    wind = page.locator('svg[data-group="weather"] path.line[data-key="weather.wind_ms"]')
    assert datetime.fromisoformat(wind.get_attribute("data-from") or "") - datetime.fromisoformat(
        one["since"]
    ) < timedelta(minutes=2)  # the data fill the axis: no sliver at the right edge

    page.reload()  # the choice stays
    expect(page.locator('#ranges a[data-range="1h"]')).to_have_class("active")
    assert plot_span(page, "weather")["range"] == "1h"

    page.click('#ranges a[data-range="24h"]')
    expect(page.locator('svg.mplot[data-group="weather"]')).to_have_attribute("data-range", "24h")
    day = plot_span(page, "weather")
    assert round(hours(day), 3) == 24 and tick_step_s(day) == 4 * 3600 and day["labels"] != one["labels"]

    page.click('#ranges a[data-range="night"]')
    expect(page.locator('svg.mplot[data-group="weather"]')).to_have_attribute("data-range", "night")
    night = plot_span(page, "weather")
    since_local = datetime.fromisoformat(night["since"]).astimezone(app.cfg.local_tz)
    assert (since_local.hour, since_local.minute) == (12, 0) and 0 < hours(night) <= 24


def test_flags_are_bands_and_the_table_reads_in_human_units(app: App, page: Page) -> None:  # noqa: F811
    page.goto(f"{app.url}/monitors?range=1h")
    battery = page.locator('svg[data-group="power"] rect.band[data-key="power.on_battery"][data-value="true"]')
    expect(battery).to_have_count(1)
    b = battery.evaluate(
        "r => ({from: r.dataset.from, to: r.dataset.to, w: r.getBBox().width, fill: getComputedStyle(r).fill})"
    )
    on_for = datetime.fromisoformat(b["to"]) - datetime.fromisoformat(b["from"])
    assert timedelta(minutes=18) <= on_for <= timedelta(minutes=23) and b["w"] > 100  # 20 minutes of 60
    assert b["fill"] == "rgb(255, 129, 130)"  # on battery is bad: red
    unsafe = page.locator('svg[data-group="safety"] rect.band[data-key="safety.safe"][data-value="false"]')
    expect(unsafe).to_have_count(1)  # safe is good: its false spans are the ones shaded
    assert (
        page.locator(
            'svg[data-group="power"] polyline, svg[data-group="power"] path.line[data-key="power.on_battery"]'
        ).count()
        == 0
    )
    shutter = page.locator('svg[data-group="dome"] rect.state[data-key="dome.shutter"]')
    assert shutter.evaluate_all("rs => rs.map(r => r.dataset.value)") == ["open"]

    expect(page.locator('td[data-key="df.node0.free_bytes"]')).to_have_text("50.5 GB")  # 50.9 GB less 420 MB
    expect(page.locator('section[data-group="df"] tbody tr')).to_have_count(5)  # a row a disk, its measures across
    expect(page.locator('tr[data-key="temperature.camera_c"] td.val')).to_have_text("-10.0 °C")
    zfs = page.locator('td[data-key="zfs.localhost.available"]')
    expect(zfs).to_have_text("N/A")
    expect(zfs).to_have_attribute("data-state", "na")  # ZFS is not on this host: not STALE
    expect(page.locator('tr[data-key="weather.humidity_pct"] .lvl')).to_have_text(
        "WARN"
    )  # 84.8 %: over the warning line (75 %)
    at = page.locator('tr[data-key="weather.wind_ms"] td.at').inner_text()
    assert "UTC" in at and "JST" in at
    assert page.locator("table.values td.val", has_text="e+").count() == 0

    height = page.evaluate("document.documentElement.scrollHeight")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "monitors.png"), full_page=True)
    assert height <= 2.2 * SCREEN_H, f"the page is {height} px tall"
    assert (SHOTS / "monitors.png").stat().st_size > 20_000  # a page, not a blank


def test_a_phone_sees_the_plots_scaled_to_its_width(app: App, browser: Browser) -> None:  # noqa: F811
    p = browser.new_page(viewport={"width": 390, "height": 844})
    p.goto(f"{app.url}/monitors")
    w = p.eval_on_selector('svg.mplot[data-group="weather"]', "s => s.getBoundingClientRect().width")
    assert 300 < w <= 390 and p.evaluate("document.documentElement.scrollWidth") <= 390
    p.screenshot(path=str(SHOTS / "monitors-phone.png"))
    p.close()
