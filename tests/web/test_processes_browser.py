"""A person at the process monitor: logs in, clicks stop, sees STOPPED (headless Chromium)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def clean_page(
    browser: Browser, width: int, height: int, allowed: Callable[[str], bool] = lambda _: False
) -> Iterator[Page]:
    """A page that must end with no console error (a CSP refusal, a script error) and no answer >= 400
    (an asset missing) but those `allowed` says the test caused on purpose (given the text or
    "STATUS URL")."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    p = ctx.new_page()
    problems: list[str] = []
    p.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    p.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    yield p
    ctx.close()
    assert [x for x in problems if not allowed(x)] == []  # no CSP refusal, no asset missing


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
    page.goto(f"{fleet.web_url}/processes")
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
    page.goto(f"{fleet.web_url}/processes")
    expect(row(page, "buf-node0", "work:other").locator(".state")).to_have_text("RUNNING")
    fleet.client("buf-node0").act("stop", "work:other")
    expect(row(page, "buf-node0", "work:other").locator(".state")).to_have_text("STOPPED")
    fleet.client("buf-node0").act("start", "work:other")
    expect(row(page, "buf-node0", "work:other").locator(".state")).to_have_text("RUNNING")


def test_without_login_the_buttons_are_hidden(fleet: Fleet, page: Page) -> None:
    page.goto(f"{fleet.web_url}/processes")
    expect(row(page, "buf-node0", "work:ticker").locator('button[data-action="stop"]')).to_be_hidden()


def test_an_unreachable_host_is_greyed_with_its_last_known_programs(fleet: Fleet, page: Page) -> None:
    from datetime import UTC, datetime

    from gozen.db.engine import make_engine
    from gozen.monitors.board import publish
    from gozen.service import Context
    from gozen.supervise.client import HostStatus, ProcessInfo
    from gozen.supervise.fleet import FleetWatch, host_readings

    engine = make_engine(fleet.cfg.database_url)
    down = fleet.cfg.host("buf-node2")
    t0 = datetime.now(UTC)
    seen = ProcessInfo(
        "buf-node2", "work", "ticker", "RUNNING", 4242, t0, None, 3600.0, 0, "", "pid 4242, uptime 1:00:00"
    )
    earlier = HostStatus("buf-node2", down.address, down.supervisor.port, True, processes=[seen])
    publish(engine, "fleet:watch", host_readings(earlier, None, 600), history=False)  # when it answered
    FleetWatch(Context(fleet.cfg, "daq-master", engine, "fleet:watch")).run_once()  # now it does not

    page.goto(f"{fleet.web_url}/processes")
    section = page.locator('section[data-host="buf-node2"]')
    expect(section).to_have_class("host unreachable")
    expect(section.locator(".since")).to_contain_text("unreachable since ")
    last = row(page, "buf-node2", "work:ticker")
    expect(last).to_have_class("last-known")
    expect(last.locator(".state")).to_have_text("RUNNING")
    expect(last.locator(".pid")).to_have_text("4242")
    expect(last.locator("button")).to_have_count(0)  # nothing to start or stop on a host that does not answer
    opacity = section.locator("table.last-known").evaluate("t => getComputedStyle(t).opacity")
    assert float(opacity) < 1  # greyed
    first = page.locator("#updated").text_content()
    assert first is not None and " UTC " in first  # UTC, the site's time beside it
    expect(page.locator("#updated")).not_to_have_text(first)  # refreshed in place: still shown after it
    expect(row(page, "buf-node2", "work:ticker").locator(".pid")).to_have_text("4242")
    expect(row(page, "buf-node1", "work:ticker")).not_to_have_class("last-known")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "processes-unreachable.png"), full_page=True)
