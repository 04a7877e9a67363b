"""The reports on the web app (a real uvicorn on 127.0.0.1): the list, a night's page and its plots as
written by the report, and clear 422 / 404 answers for names that are not a night or a plot."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import Engine

from gozen.config import Config
from gozen.daq import catalog
from gozen.daq.snapshot import StatusSnapshot
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.report.build import PLOT_TITLES, build_report
from gozen.report.night import night_span
from gozen.report.store import ReportRow
from tests.conftest import free_port
from tests.report.standin import report_config
from tests.web.served import served
from tests.web.test_processes_browser import browser  # noqa: F401 - the fixture

NIGHT = "2026-11-25"
EXPOSURES = [("M31", "Survey M31"), ("M31", "Survey M31"), ("INB1145", "Survey INB 11 45+01")]
SHOTS = Path(__file__).parents[2] / "var" / "test-screenshots"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ReportRow, Config]]:
    tmp = tmp_path_factory.mktemp("reports-web")
    cfg = report_config(tmp, None, None, web={"bind": "127.0.0.1", "port": free_port()})
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    seed_exposures(engine)
    row = build_report(cfg, engine, NIGHT, host="web1")
    with served(cfg, engine) as url:
        yield url, row, cfg


def seed_exposures(engine: Engine) -> None:
    """Exposures of two recipes in the night, asked for and armed through the DAQ catalog."""
    start = night_span(NIGHT, ZoneInfo("Asia/Tokyo")).start_at + timedelta(hours=9)
    for i, (obj, recipe) in enumerate(EXPOSURES):
        [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest(obj, 10, 2.0, recipe_name=recipe), 1)
        t = start + timedelta(minutes=20 * i)
        assert catalog.arm(engine, exp_id, t, t + timedelta(minutes=5), [111], StatusSnapshot(t.isoformat(), {}))


def get(url: str, follow: bool = False) -> httpx.Response:
    return httpx.get(url, timeout=30, follow_redirects=follow)


def test_the_list_shows_each_night_with_its_summary_and_link(site: tuple[str, ReportRow, Config]) -> None:
    url, row, _ = site
    page = get(f"{url}/reports")
    assert page.status_code == 200
    assert f'<a href="/reports/{NIGHT}/">{NIGHT}</a>' in page.text and row.summary in page.text
    [item] = get(f"{url}/api/reports").json()["reports"]
    assert (item["night"], item["url"], item["exposures"], item["slack_state"]) == (
        NIGHT,
        f"/reports/{NIGHT}/",
        len(EXPOSURES),
        "off",
    )


def test_a_nights_page_and_every_plot_it_shows_are_served(site: tuple[str, ReportRow, Config]) -> None:
    url, row, _ = site
    redirect = get(f"{url}/reports/{NIGHT}")
    assert (redirect.status_code, redirect.headers["location"]) == (307, f"/reports/{NIGHT}/")
    page = get(f"{url}/reports/{NIGHT}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert row.summary in page.text
    shown = re.findall(r'<img src="([a-z]+)\.png"', page.text)
    assert sorted(shown) == sorted(PLOT_TITLES)
    for name in shown:
        png = get(f"{url}/reports/{NIGHT}/{name}.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content == (Path(row.path) / f"{name}.png").read_bytes()
    css = get(f"{url}/reports/{NIGHT}/report.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    ("path", "code", "says"),
    [
        ("/reports/2026-13-45/", 422, "night '2026-13-45'"),
        ("/reports/yesterday/", 422, "is not a date YYYY-MM-DD"),
        ("/reports/2026-11-25%2F..%2F..%2F/", 404, "Not Found"),  # several segments: no route
        ("/reports/2026-11-24/", 404, "no report of night 2026-11-24"),
        ("/reports/2026-11-24/overview.png", 404, "no report of night 2026-11-24"),
        (f"/reports/{NIGHT}/Overview.png", 422, "plot name 'Overview'"),
        (f"/reports/{NIGHT}/index.html.png", 422, "plot name 'index.html'"),
        (f"/reports/{NIGHT}/nothing.png", 404, "nothing.png is not on this host"),
        (f"/reports/{NIGHT}/..%2F..%2Fgozen.db", 404, "Not Found"),
        ("/reports/..%2F..%2F/overview.png", 404, "Not Found"),
        ("/reports/.../overview.png", 422, "is not a date"),
    ],
)
def test_names_that_are_not_a_night_or_a_plot_are_refused_clearly(
    site: tuple[str, ReportRow, Config], path: str, code: int, says: str
) -> None:
    url, _, _ = site
    r = get(f"{url}{path}")
    assert (r.status_code, says in r.text) == (code, True), r.text
    assert "SQLite format" not in r.text


def test_in_a_browser_the_list_leads_to_the_night_and_every_plot_draws(
    site: tuple[str, ReportRow, Config],
    browser: Browser,  # noqa: F811
) -> None:
    url, row, _ = site
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{url}/reports")
        expect(page.locator(f'#reports tr[data-night="{NIGHT}"]')).to_contain_text(row.summary)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "reports-list.png"))
        page.click(f'a[href="/reports/{NIGHT}/"]')
        expect(page.locator("#summary")).to_have_text(row.summary)
        expect(page.locator("#n-exposures")).to_have_text(str(len(EXPOSURES)))
        expect(page.locator("#totals")).to_contain_text("Survey M31, Survey INB 11 45+01")
        images = page.locator("figure img")
        expect(images).to_have_count(len(PLOT_TITLES))
        widths = images.evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert all(w >= 600 for w in widths), widths
        color = page.locator("#summary").evaluate("e => getComputedStyle(e).borderLeftColor")
        assert color == "rgb(9, 105, 218)"  # report.css applied: no style refused by the page's policy
        page.screenshot(path=str(SHOTS / "report-night.png"), full_page=True)
        assert refused == []
    finally:
        page.close()
