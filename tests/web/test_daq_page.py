"""The DAQ page in headless Chromium: the focal plane's 84 chips in their places, coloured by state,
each one's numbers on hover and click, and /api/daq answering the same numbers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from gozen.config import tomoe_chip_ids
from gozen.daq.focalplane import chip_center_deg
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from tests.conftest import free_port, web_section, write_config
from tests.daq.test_stats import CHIPS, config_data, seed
from tests.web.served import served
from tests.web.test_processes_browser import browser  # noqa: F401 - the fixture

SHOTS = Path(__file__).parents[2] / "var" / "test-screenshots"
EXPECTED_STATES = {111: "ok", 112: "missing", 121: "dropped", 211: "damaged", 212: "not_recognised", 221: "no_data"}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The web app alone on a seeded SQLite database, behind a real uvicorn on 127.0.0.1.

    The page reloads itself only when the test says (page.reload): a hover must not race a reload."""
    tmp = tmp_path_factory.mktemp("daq-page")
    port = free_port()
    cfg = write_config(tmp / "gozen.yaml", config_data(tmp, web=web_section(port) | {"refresh_s": 300}))
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    seed(cfg, engine, datetime.now(UTC))
    with served(cfg, engine) as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    p = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors: list[str] = []
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" and "404" not in m.text else None)
    p.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
    )
    yield p
    p.close()
    assert errors == []  # no CSP refusal, no asset missing


def chip_boxes(page: Page) -> dict[int, dict[str, Any]]:
    """Every chip drawn: its id, state and box on the page, read from the elements themselves."""
    found = page.eval_on_selector_all(
        "#focal-plane g.chip",
        """gs => gs.map(g => { const r = g.querySelector('rect').getBoundingClientRect();
            return {id: g.id, det: +g.dataset.det, state: g.dataset.state, text: g.querySelector('text.id').textContent,
                    fill: getComputedStyle(g.querySelector('rect')).fill,
                    x: r.x + r.width / 2, y: r.y + r.height / 2, w: r.width, h: r.height}; })""",
    )
    return {f["det"]: f for f in found}


def test_focal_plane_shows_84_chips_in_their_places_coloured_by_state(app_url: str, page: Page) -> None:
    page.goto(f"{app_url}/daq")
    expect(page.locator("#focal-plane g.chip")).to_have_count(84)
    boxes = chip_boxes(page)
    assert sorted(boxes) == sorted(tomoe_chip_ids()) and len({b["id"] for b in boxes.values()}) == 84
    assert all(b["id"] == f"chip-{d}" and b["text"] == str(d) and b["w"] > 40 for d, b in boxes.items())

    def centre(q: int) -> tuple[float, float]:
        mine = [b for d, b in boxes.items() if d // 100 == q]
        return sum(b["x"] for b in mine) / len(mine), sum(b["y"] for b in mine) / len(mine)

    (x1, y1), (x2, y2), (x3, y3), (x4, y4) = (centre(q) for q in (1, 2, 3, 4))
    # East is left, north up: the quadrants sit where focalplane puts them (Q1 +x +y: north-east).
    for q, (x, y) in zip((1, 2, 3, 4), ((x1, y1), (x2, y2), (x3, y3), (x4, y4)), strict=True):
        east, north = chip_center_deg(q * 100 + 11)
        assert (x < x3 if q == 1 else x < x2 if east > 0 else x > x1) and ((y < y3) if north > 0 else (y > y1)), q
    assert x1 < x2 and y1 < y4 and x4 < x3 and y2 < y3
    for q in (1, 2, 3, 4):  # within a column, row 1 is nearest the axis; column 1 too
        for col in (1, 2):
            ys = [boxes[q * 100 + col * 10 + row]["y"] for row in range(1, 7)]
            assert ys == sorted(ys, reverse=q in (1, 2)), (q, col, ys)  # northern rows go up the page
        xs = [boxes[q * 100 + col * 10 + 1]["x"] for col in (1, 2, 3, 4)]
        assert xs == sorted(xs, reverse=q in (1, 4)), (q, xs)  # eastern columns go left
        assert len({round(boxes[q * 100 + col * 10 + 1]["y"]) for col in (1, 2, 3, 4)}) == 1

    states = {d: b["state"] for d, b in boxes.items() if d in CHIPS}
    assert states == EXPECTED_STATES
    assert {b["state"] for d, b in boxes.items() if d not in CHIPS} == {"not_configured"}
    fills = {b["state"]: b["fill"] for b in boxes.values()}
    assert len(set(fills.values())) == len(fills) == 7  # every state its own colour
    expect(page.locator("#legend li")).to_have_count(7)
    expect(page.locator('#legend li[data-state="not_configured"] [data-count]')).to_have_text("78")
    expect(page.locator("figcaption")).to_contain_text("north up, east left")
    expect(page.locator("body")).to_have_attribute("data-reload-s", "300.0")  # page.js reloads it
    expect(page.locator('#daq-hosts tr[data-host="daq0"]')).to_contain_text("UP")
    expect(page.locator('#daq-hosts tr[data-host="daq1"]')).to_contain_text("DOWN")
    expect(page.locator('#daq-hosts tr[data-host="daq1"]')).to_contain_text("stale")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "daq.png"), full_page=True)
    assert (SHOTS / "daq.png").stat().st_size > 20_000


def test_hover_and_click_show_a_chips_numbers_as_the_api_gives_them(app_url: str, page: Page) -> None:
    api = {c["det_id"]: c for c in httpx.get(f"{app_url}/api/daq", timeout=30).json()["chips"]}
    page.goto(f"{app_url}/daq")
    hint = page.locator("#chip-hint")
    expect(hint).to_be_visible()
    assert "112" in page.locator("#chip-112 > title").text_content()  # type: ignore[operator]
    assert f"{api[112]['frames_missing']} missing" in page.locator("#chip-112 > title").text_content()  # type: ignore[operator]

    page.hover("#chip-121")
    card = page.locator('[data-card="121"]')
    expect(card).to_be_visible()
    expect(card.locator('[data-field="frames_dropped"]')).to_have_text(str(api[121]["frames_dropped"]))
    page.mouse.move(1, 1)  # off the map: nothing kept yet
    expect(card).to_be_hidden()

    page.click("#chip-111")
    card = page.locator('[data-card="111"]')
    expect(card).to_be_visible()
    c = api[111]
    for field in ("frames_read", "frames_missing", "frames_damaged", "frames_dropped"):
        expect(card.locator(f'[data-field="{field}"]')).to_have_text(str(c[field]))
    expect(card.locator('[data-field="files"]')).to_have_text(str(c["files"]))
    expect(card.locator('[data-field="mb_per_s"]')).to_have_text(f"{c['mb_per_s']:.1f}")
    expect(card.locator('[data-field="overscan"]')).to_have_text(f"{c['overscan_median']:.1f} ± 3.00 ADU")
    expect(card.locator('[data-field="last_file"]')).to_contain_text(c["last_file"])
    expect(card).to_contain_text("DAQ host daq0")
    page.mouse.move(1, 1)
    expect(card).to_be_visible()  # kept
    page.reload()  # the page refreshes itself: the kept chip stays
    expect(page.locator('[data-card="111"]')).to_be_visible()
    expect(page.locator("#chip-111")).to_have_class("chip st-ok selected")
    page.screenshot(path=str(SHOTS / "daq-chip.png"))


def test_api_daq_hosts_and_hours(app_url: str) -> None:
    doc = httpx.get(f"{app_url}/api/daq", timeout=30).json()
    assert doc["hours"] == 1.0 and [h["host"] for h in doc["hosts"]] == ["daq0", "daq1", "daq9"]
    d0 = doc["hosts"][0]
    assert d0["up"] is True and d0["chips"] == [111, 112, 121] and d0["ring_fill_pct"]["value"] == 40.0
    assert {c["det_id"]: c["state"] for c in doc["chips"] if c["det_id"] in CHIPS} == EXPECTED_STATES
    wider = httpx.get(f"{app_url}/api/daq", params={"hours": 3}, timeout=30).json()
    assert [c["state"] for c in wider["chips"] if c["det_id"] == 221] == ["ok"]
    bad = httpx.get(f"{app_url}/api/daq", params={"hours": "-1"}, timeout=30)
    assert bad.status_code == 422 and "hours" in bad.text
