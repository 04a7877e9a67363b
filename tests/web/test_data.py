"""The Data page and its JSON twin: free space per volume and node, the copy backlog."""

from __future__ import annotations

import httpx
from playwright.sync_api import Browser, expect

from tests.conftest import Fleet
from tests.web.test_processes_browser import SHOTS, browser  # noqa: F401 - the fixture


def test_api_data_lists_volumes_nodes_and_backlog(fleet: Fleet) -> None:
    body = httpx.get(f"{fleet.web_url}/api/data", timeout=30).json()
    kinds = [(v["kind"], v["name"], v["online"]) for v in body["volumes"]]
    assert kinds == [
        ("daq", "daq-vol1", True),
        ("daq", "daq-vol2", True),
        ("node", "node0", True),
        ("node", "node1", True),
        ("node", "node2", True),
    ]
    node0 = body["volumes"][2]
    # Measured against its max_bytes quota (nothing catalogued there yet), not the host's disk.
    assert 0 <= node0["used_pct"] < 100 and node0["free_bytes"] > 0 and node0["backlog"]["queued"] == 0
    assert body["files"] == 0 and body["oldest_unreplicated_age_s"] is None
    assert node0["backlog"]["rate_mb_s"] == 0 and body["archive"]["files"] == {}


def test_data_page_shows_each_node_with_a_usage_bar(fleet: Fleet, browser: Browser) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 1100, "height": 600})
    page.goto(f"{fleet.web_url}/data")
    expect(page.locator('tr[data-volume="node1"] .bar')).to_be_visible()  # empty: its quota is unused
    expect(page.locator(".summary").first).to_contain_text("every file fully replicated")
    expect(page.locator("#archive")).to_contain_text("0 acknowledged")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "data.png"), full_page=True)
    page.close()
