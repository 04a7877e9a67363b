"""The Alerts page and /api/alerts: what the feeds said, what was posted where, the follow-ups."""

from __future__ import annotations

import httpx
from playwright.sync_api import Browser, expect
from sqlalchemy import insert

from gozen.config import parse_config
from gozen.couriers.store import enqueue
from gozen.db.engine import make_engine
from gozen.db.tables import alerts
from gozen.db.types import utcnow
from tests.conftest import Fleet
from tests.web.test_processes_browser import SHOTS, browser  # noqa: F401 - the fixture


def test_alerts_page_and_api(fleet: Fleet, browser: Browser) -> None:  # noqa: F811
    engine = make_engine(fleet.cfg.database_url)
    with engine.begin() as conn:
        conn.execute(
            insert(alerts).values(
                feed="gaia",
                key="Gaia26zzz",
                title="Gaia26zzz",
                event_time=utcnow(),
                ra_deg=10.0,
                dec_deg=20.0,
                data={"Class": "SN"},
                seen_at=utcnow(),
                followup_uuid="5f0c6a1e-8a3e-4d7e-9a53-2f7d1a0b9c11",
            )
        )
        enqueue(conn, parse_config({}), "gaia", "Gaia alert Gaia26zzz (SN): ...")  # no notifier: kept, unrouted
    body = httpx.get(f"{fleet.web_url}/api/alerts", timeout=30).json()
    [a] = [x for x in body["feeds"]["gaia"]["alerts"] if x["title"] == "Gaia26zzz"]
    assert a["followup_uuid"].startswith("5f0c6a1e") and body["posts"][0]["state"] == "unrouted"
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(f"{fleet.web_url}/alerts")
    expect(page.locator('section[data-feed="gaia"]')).to_contain_text("Gaia26zzz")
    expect(page.locator('section[data-feed="gaia"] .lvl-ok')).to_have_text("follow-up")
    expect(page.locator("#posts")).to_contain_text("unrouted")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "alerts.png"), full_page=True)
    page.close()
