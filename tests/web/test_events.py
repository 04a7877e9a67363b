"""The Events page and /api/events: what the hosts' event listeners and the dashboard recorded."""

from __future__ import annotations

import httpx
from playwright.sync_api import Browser, expect

from tests.conftest import WAIT_S, Fleet, wait_until
from tests.web.test_processes_browser import SHOTS, browser  # noqa: F401 - the fixture


def test_an_unexpected_exit_shows_as_an_error_event(fleet: Fleet, browser: Browser) -> None:  # noqa: F811
    fleet.client("daq-master").act("start", "work:crasher")  # exits with code 3 after 1 s

    def crash() -> list[dict]:  # type: ignore[type-arg]
        body = httpx.get(f"{fleet.web_url}/api/events", params={"kind": "process_exited"}, timeout=30).json()
        return [e for e in body["events"] if e["host"] == "daq-master" and e["subject"] == "work:crasher"]

    [event] = wait_until(crash, WAIT_S, what="the crash event", dump=fleet.dump)
    assert event["severity"] == "error" and "exited unexpectedly" in event["message"]
    assert httpx.get(f"{fleet.web_url}/api/events", params={"limit": 0}, timeout=30).status_code == 422
    page = browser.new_page(viewport={"width": 1200, "height": 700})
    page.goto(f"{fleet.web_url}/events?kind=process_exited")
    expect(page.locator("tr.event-error").first).to_contain_text("work:crasher exited unexpectedly")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "events.png"))
    page.close()
