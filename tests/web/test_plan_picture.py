"""The plan's picture in headless Chromium: the Queue page's image draws, the SVG's rows follow the queue."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine

from gozen.db.engine import make_engine
from gozen.db.types import utcnow
from gozen.queue import store
from gozen.queue.recipe import parse_recipe
from tests.conftest import WAIT_S, free_port, wait_until, web_section, write_config
from tests.web.served import served
from tests.web.test_processes_browser import browser  # noqa: F401 - the fixture

pytestmark = pytest.mark.live  # a real uvicorn


@dataclass(frozen=True)
class App:
    url: str
    engine: Engine


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The web app alone on its own SQLite database behind a real uvicorn on 127.0.0.1."""
    tmp: Path = tmp_path_factory.mktemp("plan-picture")
    port = free_port()
    cfg = write_config(tmp / "gozen.yaml", {"data_dir": str(tmp / "var"), "web": web_section(port)})
    (tmp / "var").mkdir(exist_ok=True)
    engine = make_engine(cfg.database_url)
    with served(cfg, engine) as url:
        yield App(url, engine)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
    ctx.set_default_timeout(WAIT_S * 1000)
    p = ctx.new_page()
    yield p
    ctx.close()


def pole(name: str) -> dict[str, object]:
    """Up all night at Kiso (declination 85): always in the plan; half an hour of exposing."""
    return {
        "name": name,
        "steps": [{"slew": {"ra_deg": 40.0, "dec_deg": 85.0}}, {"expose": {"object": name, "frames": 3600, "fps": 2}}],
    }


def test_the_plan_picture_draws_in_the_browser_and_follows_the_queue(app: App, page: Page) -> None:
    uuids = [store.submit(app.engine, parse_recipe(pole(n)), "test", {}).uuid for n in ("PLAN ONE", "PLAN TWO")]
    page.goto(f"{app.url}/queue")
    image = page.locator("#plan img")
    expect(image).to_be_visible()
    wait_until(lambda: image.evaluate("i => i.complete && i.naturalWidth > 0"), WAIT_S, what="the plan to draw")

    night = (utcnow().date() + timedelta(days=1)).isoformat()  # a night to come: planned from its dusk
    page.goto(f"{app.url}/queue/plan.svg?night={night}")
    for gid in ("#slot-0", "#slot-1", "#overhead-0", "#moon-altitude", "#twilight-nautical"):
        expect(page.locator(gid)).to_have_count(1)
    expect(page.locator("svg")).to_contain_text("PLAN ONE")
    expect(page.locator("svg")).to_contain_text("2 of 2 queued recipes planned")
    box = page.locator("#slot-0").bounding_box()
    assert box is not None and box["width"] > 10 and box["height"] > 5  # drawn, not just present

    store.cancel(app.engine, uuids[0], "test")
    page.goto(f"{app.url}/queue/plan.svg?night={night}")
    expect(page.locator("svg")).to_contain_text("1 of 1 queued recipes planned")
    expect(page.locator("svg")).not_to_contain_text("PLAN ONE")
    expect(page.locator("#slot-1")).to_have_count(0)
