"""The overview page `/` and /api/overview, in headless Chromium at desktop and phone widths, on a
database seeded through the real APIs (the status board, the queue, the DAQ catalog, the events);
and the favicon and the emoji the pages draw."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from matplotlib.image import imsave
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine, insert

from gozen.config import Config
from gozen.daq import catalog
from gozen.daq.snapshot import StatusSnapshot
from gozen.db.engine import make_engine
from gozen.db.events import record_event
from gozen.db.migrate import upgrade
from gozen.db.states import RecipeState
from gozen.db.tables import quicklook
from gozen.monitors.board import Reading, publish
from gozen.queue import store
from gozen.queue.recipe import load_recipe_text
from gozen.supervise.client import HostStatus
from gozen.supervise.fleet import host_readings
from gozen.transfer.agents import push_once
from gozen.web.emoji import emoji_filter, emojize
from gozen.web.overview import overview
from tests.conftest import free_port, web_section, write_config
from tests.daq.test_stats import CHIPS, _file, config_data
from tests.web.served import served
from tests.web.test_processes_browser import browser, clean_page  # noqa: F401 - the fixture

SHOTS = Path(__file__).parents[2] / "var" / "test-screenshots"
OBJECT = "INB 11 45+01"
RECIPE = f"""
name: Queue-Observer {OBJECT}
steps:
  - slew: {{ra_deg: 176.25, dec_deg: 1.0}}
  - expose: {{object: {OBJECT}, frames: 120, fps: 2, count: 3}}
  - park: {{}}
"""
UNSAFE = "humidity 95% > 90%"
SINCE = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0).isoformat()  # unsafe since
ERROR_TEXT = ":rotating_light: readout daq1 lost 12 frames"


@dataclass(frozen=True)
class Observatory:
    url: str
    engine: Engine
    look_exp: int  # the exposure with the latest quick look
    now_exp: int  # the exposure in hand


def grey_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    imsave(buf, np.linspace(0, 1, width * height).reshape(height, width), cmap="gray", format="png")
    return buf.getvalue()


def seed(cfg: Config, engine: Engine, now: datetime) -> Observatory:
    """An unsafe night: a recipe exposing, a quick look, readouts at 14 frames/s, one DAQ host down,
    one storage node offline and one nearly full, an error and a warning."""
    publish(
        engine,
        "monitor:safety",
        [Reading("safety.safe", False, "", 300), Reading("safety.reasons", UNSAFE, "", 300)],
    )
    record_event(engine, host="head", source="monitor:safety", kind="safety_changed", subject="safe_to_observe",
                 message=f"unsafe: {UNSAFE}", severity="warning", time=datetime.fromisoformat(SINCE))  # fmt: skip
    publish(
        engine,
        "daq:readout-01",
        [
            Reading("daq.daq0.readout-01.frames_per_s", 8.0, "1/s", 300),
            Reading("daq.daq1.readout-01.frames_per_s", 6.0, "1/s", 300),
        ],
    )
    publish(
        engine,
        "storage:dfmonitor",
        [
            Reading("df.node0.online", True, "", 300),
            Reading("df.node0.used_pct", 95.5, "%", 300),
            Reading("df.node0.free_bytes", 2_000_000_000, "B", 300),
            Reading("df.node1.online", False, "", 300),
        ],
    )
    hosts = [
        HostStatus("head", "127.0.0.1", 9001, True),
        HostStatus("daq0", "127.0.0.2", 9001, True),
        HostStatus("daq1", "127.0.0.3", 9001, False, error="connection refused"),
    ]
    since = now - timedelta(minutes=7)
    for h in hosts:
        publish(engine, "fleet:watch", host_readings(h, None if h.reachable else since, 600), history=False)

    # The latest quick look: an exposure done five minutes ago, its files and a picture of each chip.
    [look_exp] = catalog.request_exposures(engine, catalog.ExposureRequest("SA 112", 12, 2.0), 1)
    start = now - timedelta(minutes=5)
    assert catalog.arm(engine, look_exp, start, start + timedelta(seconds=6), CHIPS, StatusSnapshot("", {}))
    at = start + timedelta(seconds=8)
    assert catalog.record_files(engine, [_file(look_exp, d, "daq0" if d < 200 else "daq1", at) for d in CHIPS]) == []
    assert push_once(cfg, engine, "head", scan=False) == len(CHIPS)  # transfer:push catalogues them
    with engine.begin() as conn:
        conn.execute(
            insert(quicklook),
            [
                {"exp_id": look_exp, "det_id": d, "daq_host": "daq0", "made_at": at, "binning": 8, "width": 64,
                 "height": 32, "z1": 990.0, "z2": 1100.0, "png": grey_png(64, 32), "sky_adu": 1000.0,
                 "noise_adu": 5.0, "n_stars": 12, "fwhm_px": 3.1}
                for d in CHIPS
            ],
        )  # fmt: skip

    # A recipe executing its second step, its exposure armed 20 s ago for 60 s.
    recipe = load_recipe_text(RECIPE.encode(), "recipe", 100)
    row = store.submit(engine, recipe, "ops", {})
    store.set_state(engine, row.uuid, RecipeState.EXECUTING, "started")
    store.record(engine, row.uuid, "step", "step 1 (slew) done", {"step": 1, "done": 1})
    req = catalog.ExposureRequest(OBJECT, 120, 2.0, recipe_uuid=row.uuid, recipe_name=row.name)
    [now_exp] = catalog.request_exposures(engine, req, 1)
    t0 = now - timedelta(seconds=20)
    assert catalog.arm(engine, now_exp, t0, t0 + timedelta(seconds=60), CHIPS, StatusSnapshot("", {}))

    record_event(engine, host="daq1", source="daq:readout-01", kind="frames_lost", subject="daq1",
                 message=ERROR_TEXT, severity="error")  # fmt: skip
    record_event(engine, host="head", source="storage:dfmonitor", kind="df_level", subject="node0",
                 message="node0 over the alarm line", severity="warning")  # fmt: skip
    return Observatory("", engine, look_exp, now_exp)


def observatory_config(tmp: Path) -> Config:
    data = config_data(tmp, web=web_section(free_port()))
    data["storage_nodes"] = [{"name": f"node{i}", "path": f"nodes/node{i}"} for i in range(3)]
    data["transfer"] = {"replication": 2}
    data["daq_volumes"] = [{"name": "vol1", "path": "daq/vol1", "max_bytes": 10_000_000_000}]
    data["archive"] = {"dest": "archive"}
    cfg = write_config(tmp / "gozen.yaml", data)
    (cfg.data_dir / "daq" / "vol1").mkdir(parents=True)  # measured here; the nodes only on the board
    return cfg


@pytest.fixture(scope="module")
def observatory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observatory]:
    """The web app alone on the seeded SQLite database, behind a real uvicorn on 127.0.0.1 (refresh every 1 s)."""
    cfg = observatory_config(tmp_path_factory.mktemp("overview"))
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    seeded = seed(cfg, engine, datetime.now(UTC))
    with served(cfg, engine) as url:
        yield Observatory(url, engine, seeded.look_exp, seeded.now_exp)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    # The mosaic is daq:quicklook's picture; a missing one is dropped from the page.
    with clean_page(browser, 1280, 1000, allowed=lambda x: "mosaic" in x) as p:
        yield p


def test_api_overview_says_what_the_observatory_does(observatory: Observatory) -> None:
    said_right(httpx.get(f"{observatory.url}/api/overview", timeout=60).json(), observatory)


def test_overview_reads_the_same_on_postgresql(tmp_path: Path, pg_engine: Engine) -> None:
    cfg = observatory_config(tmp_path)
    seeded = seed(cfg, pg_engine, datetime.now(UTC))
    said_right(overview(cfg, pg_engine), seeded)


def said_right(o: dict[str, Any], observatory: Observatory) -> None:
    """The overview of the seeded observatory, tile by tile."""
    assert o["safety"] | {"at": None} == {"level": "alarm", "safe": False, "why": UNSAFE, "at": None, "since": SINCE}
    ex = o["exposing"]
    assert ex["level"] == "ok" and ex["recipe"]["name"] == f"Queue-Observer {OBJECT}"
    assert (ex["recipe"]["step"], ex["recipe"]["steps"], ex["recipe"]["step_kind"]) == (2, 3, "expose")
    assert ex["recipe"]["object"] == OBJECT and ex["recipe"]["field"] == "RA 176.250 Dec +1.000"
    assert ex["exposure"]["exp_id"] == observatory.now_exp and 25 <= ex["exposure"]["progress_pct"] < 100
    q = o["quicklook"]
    assert q["exp_id"] == observatory.look_exp and q["mosaic_url"] == f"/exposures/{observatory.look_exp}/mosaic.png"
    frame_bytes = 54_236_160 / 12  # tests.daq.test_stats' file of 12 frames
    assert o["rates"]["frames_per_s"] == 14.0 and o["rates"]["mb_per_s"] == round(14 * frame_bytes / 1e6, 2)
    disks = {d["name"]: d for d in o["disks"]["disks"]}
    assert (disks["node0"]["used_pct"], disks["node0"]["level"]) == (95.5, "alarm")
    assert (disks["node1"]["online"], disks["node1"]["level"]) == (False, "alarm")
    assert disks["vol1"]["quota"] is True and disks["vol1"]["used_pct"] == round(100 * 6 * 54_236_160 / 1e10, 1)
    assert [e["kind"] for e in o["errors"]["events"]] == ["df_level", "frames_lost", "safety_changed"]
    assert o["errors"]["level"] == "alarm"
    hosts = {h["host"]: h for h in o["hosts"]["hosts"]}
    assert (hosts["head"]["up"], hosts["daq0"]["up"], hosts["daq1"]["up"]) == (True, True, False)
    assert hosts["daq1"]["why"] == "connection refused" and hosts["daq1"]["since"] is not None
    tr = o["transfer"]
    assert (tr["files"], tr["copies_waiting"], tr["copies_failed"]) == (len(CHIPS), 2 * len(CHIPS), 0)  # replication 2
    assert tr["oldest_unreplicated_age_s"] is not None and tr["oldest_unreplicated_age_s"] < 600
    ar = o["archive"]
    assert ar["configured"] is True and ar["files_waiting"] == len(CHIPS) and ar["lag_s"] < 600
    assert o["level"] == "alarm"
    assert set(o) == {"time", "level", "safety", "exposing", "quicklook", "rates", "transfer", "archive",
                      "disks", "errors", "hosts"}  # fmt: skip


def test_overview_at_a_glance_on_a_desktop(observatory: Observatory, page: Page) -> None:
    page.goto(f"{observatory.url}/")
    safety = page.locator("#tile-safety")
    expect(safety).to_have_attribute("data-level", "alarm")
    expect(safety.locator("#safe-word")).to_have_text("Not safe to observe")
    expect(safety.locator("#safe-why")).to_have_text(UNSAFE)
    expect(safety.locator(".lvl")).to_have_text("ALARM")
    expect(safety).to_contain_text(f"not safe since {SINCE[:10]} {SINCE[11:19]} UTC")
    expect(page.locator("#exposing-recipe")).to_have_text(f"Queue-Observer {OBJECT}")
    expect(page.locator("#exposing-object")).to_have_text(OBJECT)
    expect(page.locator("#exposing-exposure")).to_contain_text(f"exposure {observatory.now_exp}")
    expect(page.locator("#frames-per-s")).to_have_text("14.0")
    expect(page.locator('#tile-hosts li[data-host="daq1"]')).to_have_attribute("data-up", "no")
    expect(page.locator('#tile-hosts li[data-host="daq1"]')).to_contain_text("DOWN since")
    expect(page.locator('#tile-hosts li[data-host="daq0"]')).to_have_attribute("data-up", "yes")
    expect(page.locator('#tile-disks tr[data-disk="node0"]')).to_have_attribute("data-level", "alarm")
    expect(page.locator('#tile-disks tr[data-disk="node0"]')).to_contain_text("96%")
    expect(page.locator('#tile-disks tr[data-disk="node1"]')).to_contain_text("OFFLINE")
    errors = page.locator("#tile-errors tr.event-error")
    expect(errors).to_contain_text("frames_lost")
    expect(errors.locator(".emoji")).to_have_text("\U0001f6a8")  # :rotating_light: drawn
    expect(page.locator("#tile-errors")).not_to_contain_text(":rotating_light:")
    expect(page.locator("#tile-quicklook")).to_have_attribute("data-exp-id", str(observatory.look_exp))
    mosaic = page.locator("#mosaic")
    if mosaic.count():  # daq:quicklook's picture when its route answers (else dropped by page.js)
        assert mosaic.evaluate("img => img.complete") and mosaic.evaluate("img => img.naturalWidth") > 0
    assert "UTC" in (page.locator("#updated").text_content() or "")
    colours = {
        lv: page.locator(f'.tile[data-level="{lv}"]').first.evaluate("t => getComputedStyle(t).borderLeftColor")
        for lv in ("ok", "alarm")
    }
    assert colours["ok"] != colours["alarm"]  # OK and ALARM tiles look different
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)
    assert (SHOTS / "overview.png").stat().st_size > 20_000


def test_overview_reads_on_a_phone(observatory: Observatory, page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{observatory.url}/")
    expect(page.locator("#safe-word")).to_have_text("Not safe to observe")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    boxes = page.eval_on_selector_all(".tile", "ts => ts.map(t => t.getBoundingClientRect().toJSON())")
    assert len(boxes) == 8 and all(b["width"] <= 390 and b["x"] >= 0 for b in boxes)
    assert len({round(b["x"]) for b in boxes}) == 1  # one column
    size = page.locator("#safe-word").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 20  # the answer that matters is large
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "overview-phone.png"), full_page=True)
    assert (SHOTS / "overview-phone.png").stat().st_size > 20_000


def test_overview_refreshes_in_place_without_a_reload(observatory: Observatory, page: Page) -> None:
    page.goto(f"{observatory.url}/")
    expect(page.locator("#tile-safety")).to_have_attribute("data-safe", "no")
    page.evaluate("window.notReloaded = true")
    publish(
        observatory.engine,
        "monitor:safety",
        [Reading("safety.safe", True, "", 300), Reading("safety.reasons", "", "", 300)],
    )
    try:
        expect(page.locator("#tile-safety")).to_have_attribute("data-safe", "yes")
        expect(page.locator("#safe-word")).to_have_text("Safe to observe")
        expect(page.locator("#tile-safety")).to_have_attribute("data-level", "ok")
        assert page.evaluate("window.notReloaded") is True  # the same document: refreshed in place
        assert int(page.locator("#overview").get_attribute("data-refreshed") or 0) >= 1
    finally:
        publish(
            observatory.engine,
            "monitor:safety",
            [Reading("safety.safe", False, "", 300), Reading("safety.reasons", UNSAFE, "", 300)],
        )


def test_favicon_is_linked_and_answers(observatory: Observatory) -> None:
    page = httpx.get(f"{observatory.url}/", timeout=60).text
    assert '<link rel="icon" href="' in page and "favicon.svg" in page
    for path in ("/favicon.ico", "/static/favicon.svg"):
        r = httpx.get(f"{observatory.url}{path}", timeout=60)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml"), path
        assert r.text.lstrip().startswith("<svg")


def test_events_page_draws_emoji_and_times_in_utc_and_site_time(observatory: Observatory, page: Page) -> None:
    page.goto(f"{observatory.url}/events")
    row = page.locator("tr.event-error").first
    expect(row.locator(".emoji")).to_have_attribute("title", ":rotating_light:")
    expect(row).to_contain_text("\U0001f6a8 readout daq1 lost 12 frames")
    expect(row.locator("time")).to_contain_text(" UTC ")
    expect(row.locator("time .local")).to_contain_text("JST")  # site.timezone: Asia/Tokyo


def test_every_code_gozens_messages_use_is_drawn() -> None:
    for code in (":warning:", ":rotating_light:", ":white_check_mark:", ":repeat:"):
        assert emojize(code) != code, code
    assert emojize("disk :warning: and :no_such_code:") == "disk \u26a0\ufe0f and :no_such_code:"
    assert str(emoji_filter("<b>:x:</b>")) == '&lt;b&gt;<span class="emoji" title=":x:">\u274c</span>&lt;/b&gt;'
