"""The Alerts page and /api/alerts: what the feeds said, what was posted where, the follow-ups."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect
from sqlalchemy import insert

from gozen.config import parse_config
from gozen.couriers.store import enqueue
from gozen.db.engine import make_engine
from gozen.db.tables import alerts
from gozen.db.types import utcnow
from tests.conftest import Fleet, free_port, web_section, write_config
from tests.web.served import served
from tests.web.test_processes_browser import SHOTS, browser  # noqa: F401 - the fixture

TEST_SHOTS = Path(__file__).parents[2] / "var" / "test-screenshots"


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
        no_notifier = parse_config({"couriers": {"simulator": {"enabled": False}}})  # not even the Slack stand-in
        enqueue(conn, no_notifier, "gaia", "Gaia alert Gaia26zzz (SN): ...")  # no notifier: kept, unrouted
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


def test_simulated_feeds_are_marked_and_the_slack_stand_in_linked(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    """No supervisord: the app alone with couriers.simulator on, a message queued through the outbox."""
    data = {
        "data_dir": str(tmp_path / "var"),
        "web": web_section(free_port()),
        "couriers": {"simulator": {"enabled": True}},
    }
    cfg = write_config(tmp_path / "gozen.yaml", data)
    sim = cfg.sim_feeds_url()
    assert sim is not None
    engine = make_engine(cfg.database_url)
    with served(cfg, engine) as url:
        with engine.begin() as conn:
            assert enqueue(conn, cfg, "event", ":warning: node0 over the warning line") == 1  # to sim-slack
        body = httpx.get(f"{url}/api/alerts", timeout=30).json()
        assert body["simulator"] == {"url": sim, "slack_url": f"{sim}/sim/slack"}
        assert all(f["simulated"] and f["url"] == f"{sim}/feeds/{n}" for n, f in body["feeds"].items())
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        try:
            page.goto(f"{url}/alerts")
            expect(page.locator("#sim-slack")).to_have_attribute("href", f"{sim}/sim/slack")
            expect(page.locator('section[data-feed][data-simulated="yes"]')).to_have_count(4)
            expect(page.locator('section[data-feed="maxi"] h2')).to_contain_text("simulated")
            post = page.locator("#posts tr[data-post]").first
            expect(post.locator(".emoji")).to_have_attribute("title", ":warning:")
            expect(post).not_to_contain_text(":warning:")
            expect(post.locator("time").first).to_contain_text(" UTC ")
            expect(post.locator("time .local").first).to_contain_text("JST")
            TEST_SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(TEST_SHOTS / "alerts-simulated.png"), full_page=True)
        finally:
            page.close()
