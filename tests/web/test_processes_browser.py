"""A person at the process monitor: logs in, clicks stop, sees STOPPED (headless Chromium)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import OPERATOR, WAIT_S, Fleet

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).parents[2] / "var" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    ctx.set_default_timeout(WAIT_S * 1000)  # clicks, fills, navigation (expect's is set in conftest)
    p = ctx.new_page()
    yield p
    ctx.close()


def row(page: Page, host: str, program: str):  # type: ignore[no-untyped-def]
    return page.locator(f'section[data-host="{host}"] tr[data-program="{program}"]')


def test_operator_logs_in_clicks_stop_and_sees_stopped(fleet: Fleet, page: Page) -> None:
    page.goto(f"{fleet.web_url}/")
    expect(page.locator("#login-link")).to_be_visible()
    expect(page.locator('section[data-host="buf-node2"]')).to_contain_text("UNREACHABLE")
    page.click("#login-link")
    page.fill('input[name="username"]', OPERATOR[0])
    page.fill('input[name="password"]', OPERATOR[1])
    page.click('button[type="submit"]')
    expect(page.locator("#whoami")).to_contain_text("ops")

    r = row(page, "buf-node1", "work:ticker")
    expect(r.locator(".state")).to_have_text("RUNNING")
    r.locator('button[data-action="stop"]').click()
    expect(row(page, "buf-node1", "work:ticker").locator(".state")).to_have_text("STOPPED")
    assert fleet.state("buf-node1", "work:ticker") == "STOPPED"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "processes.png"), full_page=True)

    row(page, "buf-node1", "work:ticker").locator('button[data-action="start"]').click()
    expect(row(page, "buf-node1", "work:ticker").locator(".state")).to_have_text("RUNNING")
    assert fleet.state("buf-node1", "work:ticker") == "RUNNING"


def test_page_refreshes_itself_when_a_process_changes_elsewhere(fleet: Fleet, page: Page) -> None:
    page.goto(f"{fleet.web_url}/")
    expect(row(page, "buf-node0", "work:other").locator(".state")).to_have_text("RUNNING")
    fleet.client("buf-node0").act("stop", "work:other")
    expect(row(page, "buf-node0", "work:other").locator(".state")).to_have_text("STOPPED")
    fleet.client("buf-node0").act("start", "work:other")
    expect(row(page, "buf-node0", "work:other").locator(".state")).to_have_text("RUNNING")


def test_without_login_the_buttons_are_hidden(fleet: Fleet, page: Page) -> None:
    page.goto(f"{fleet.web_url}/")
    expect(row(page, "buf-node0", "work:ticker").locator('button[data-action="stop"]')).to_be_hidden()
