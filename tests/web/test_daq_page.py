"""The DAQ page in headless Chromium: the focal plane's 84 chips in their places, coloured by state,
each one's numbers and latest quick look on hover and click, the latest quick-look mosaic, and /api/daq
answering the same numbers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine, func, select

from gozen.config import tomoe_chip_ids
from gozen.daq.focalplane import FOCAL_PLANE, chip_center_deg
from gozen.daq.quicklook import MOSAIC_SCALE, look_at, record_look
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.db.tables import exposures
from tests.conftest import free_port, web_section, write_config
from tests.daq.test_quicklook import star_field
from tests.daq.test_stats import CHIPS, config_data, seed
from tests.web.served import served
from tests.web.test_processes_browser import browser, clean_page  # noqa: F401 - the fixture

SHOTS = Path(__file__).parents[2] / "var" / "test-screenshots"
EXPECTED_STATES = {111: "ok", 112: "missing", 121: "dropped", 211: "damaged", 212: "not_recognised", 221: "no_data"}
LOOKED = {111: (40, 3.0), 112: (25, 4.5), 211: (60, 2.5)}  # chip: stars, FWHM px of its quick look's frame


def seed_looks(engine: Engine) -> int:
    """Quick looks of three chips of the newest exposure, as daq:quicklook records them; its exp_id."""
    with engine.connect() as conn:
        exp_id = conn.execute(select(func.max(exposures.c.exp_id))).scalar_one()
    for det, (n, fwhm) in LOOKED.items():
        record_look(engine, exp_id, det, "daq0" if det < 200 else "daq1", look_at(star_field(n, fwhm, seed=det), 8))
    return int(exp_id)


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
    seed_looks(engine)
    with served(cfg, engine) as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    with clean_page(browser, 1300, 1000, allowed=lambda x: "favicon" in x) as p:
        yield p


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
    expect(page.locator("figure.focal-plane figcaption")).to_contain_text("north up, east left")
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


def test_focal_plane_map_shows_a_chips_latest_quick_look_and_the_mosaic(app_url: str, page: Page) -> None:
    doc = httpx.get(f"{app_url}/api/daq", timeout=30).json()
    api = {c["det_id"]: c for c in doc["chips"]}
    exp_id = doc["quicklook"]["exp_id"]
    assert doc["quicklook"]["mosaic"] == f"/exposures/{exp_id}/mosaic.png"
    assert {d for d, c in api.items() if c["quicklook"]} == set(LOOKED)
    for det, (n, fwhm) in LOOKED.items():
        look = api[det]["quicklook"]
        assert look["exp_id"] == exp_id and look["n_stars"] == n and look["fwhm_px"] == pytest.approx(fwhm, rel=0.1)
        assert look["sky_adu"] == pytest.approx(1000, abs=2) and look["png"] == f"/exposures/{exp_id}/chips/{det}.png"

    page.goto(f"{app_url}/daq")
    assert "40 stars" in page.locator("#chip-111 > title").text_content()  # type: ignore[operator]
    page.click("#chip-112")
    card = page.locator('[data-card="112"]')
    look = api[112]["quicklook"]
    expect(card.locator('[data-field="n_stars"]')).to_have_text("25")
    expect(card.locator('[data-field="fwhm_px"]')).to_have_text(f"{look['fwhm_px']:.2f} px")
    expect(card.locator('[data-field="sky_adu"]')).to_have_text(f"{look['sky_adu']:.1f} ADU")
    expect(card.locator('[data-field="noise_adu"]')).to_have_text(f"{look['noise_adu']:.2f} ADU")
    expect(card).to_contain_text(f"exp {exp_id}")
    picture = card.locator("img.chip-look")
    expect(picture).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    assert picture.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [250, 141]

    mosaic = page.locator("#quicklook-mosaic img")
    expect(page.locator("#quicklook-mosaic h2")).to_contain_text(f"exposure {exp_id}")
    mosaic.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=mosaic.element_handle())
    size = mosaic.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert size == [round(FOCAL_PLANE.width * MOSAIC_SCALE), round(FOCAL_PLANE.height * MOSAIC_SCALE)]
    page.screenshot(path=str(SHOTS / "daq-quicklook.png"), full_page=True)

    page.click("#chip-121")  # no quick look of this chip
    expect(page.locator('[data-card="121"] [data-field="no_look"]')).to_have_text("none yet")
    expect(page.locator('[data-card="121"] img')).to_have_count(0)


def test_map_coloured_by_a_quick_look_number_ranks_the_chips(app_url: str, page: Page) -> None:
    page.goto(f"{app_url}/daq")
    expect(page.locator("#value-scale")).to_be_hidden()
    page.select_option("#colour-by", "fwhm")
    expect(page.locator("#legend")).to_be_hidden()
    scale = page.locator("#value-scale")
    expect(scale).to_be_visible()
    fwhm = {det: float(page.locator(f"#chip-{det}").get_attribute("data-fwhm") or "nan") for det in LOOKED}
    expect(scale.locator("[data-min]")).to_have_text(f"{min(fwhm.values()):.2f}")
    expect(scale.locator("[data-max]")).to_have_text(f"{max(fwhm.values()):.2f}")
    expect(scale.locator("[data-none]")).to_have_text("3 chips with a quick look")
    fills = {d: b["fill"] for d, b in chip_boxes(page).items()}
    assert fills[112] == "rgb(253, 231, 37)" and fills[211] == "rgb(68, 1, 84)"  # the widest and the sharpest
    assert fills[111] not in (fills[112], fills[211])
    expect(page.locator("#chip-121")).to_have_class("chip st-dropped no-value")  # no quick look
    assert fills[121] == "rgb(246, 248, 250)"
    page.screenshot(path=str(SHOTS / "daq-fwhm.png"))
    page.reload()  # the choice stays
    expect(page.locator("#colour-by")).to_have_value("fwhm")
    expect(scale).to_be_visible()
    page.select_option("#colour-by", "state")
    expect(page.locator("#legend")).to_be_visible()
    states = {d: b["fill"] for d, b in chip_boxes(page).items()}
    assert states[111] == "rgb(45, 164, 78)" and states[121] != fills[121]  # back to the states' colours


def test_quick_look_pictures_answer_png_404_and_422(app_url: str) -> None:
    exp_id = httpx.get(f"{app_url}/api/daq", timeout=30).json()["quicklook"]["exp_id"]
    chip = httpx.get(f"{app_url}/exposures/{exp_id}/chips/211.png", timeout=30)
    assert chip.status_code == 200 and chip.headers["content-type"] == "image/png"
    assert chip.content.startswith(b"\x89PNG")
    mosaic = httpx.get(f"{app_url}/exposures/{exp_id}/mosaic.png", timeout=30)
    assert mosaic.status_code == 200 and mosaic.headers["content-type"] == "image/png"
    none = httpx.get(f"{app_url}/exposures/{exp_id}/chips/121.png", timeout=30)
    assert none.status_code == 404
    assert none.json()["detail"].startswith(f"no quick look of chip 121 of exposure {exp_id}")
    gone = httpx.get(f"{app_url}/exposures/99999/mosaic.png", timeout=30)
    assert gone.status_code == 404 and "exposure 99999" in gone.json()["detail"]
    bad = httpx.get(f"{app_url}/exposures/latest/mosaic.png", timeout=30)
    assert bad.status_code == 422 and "exp_id" in bad.text
    bad = httpx.get(f"{app_url}/exposures/{exp_id}/chips/abc.png", timeout=30)
    assert bad.status_code == 422 and "det_id" in bad.text
