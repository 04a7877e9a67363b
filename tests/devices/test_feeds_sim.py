"""sim:feeds on a real uvicorn on 127.0.0.1: the four feeds in their real formats, read by the couriers' own
parsers and programs, growing on its clock; the Slack stand-in taking webhook posts and files_upload_v2 from
slack_sdk and showing them; bad requests refused while the server goes on."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image
from playwright.sync_api import Browser, expect
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient
from sqlalchemy import select

from gozen.config import FEEDS, Config, parse_config
from gozen.couriers.courier import Courier
from gozen.couriers.feeds import PARSERS, Parsed
from gozen.couriers.outbox import Sender
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.db.tables import alerts, outbox
from gozen.devices.simulators.feeds import BACKLOG, create_app
from gozen.service import Context
from gozen.sky import horizontal
from tests.conftest import WAIT_S, free_port, wait_until
from tests.web.test_processes_browser import browser  # noqa: F401 - the fixture

PERIOD_S, FIRST_MAXI_S = 100.0, 30.0
SHOTS = Path(__file__).parents[2] / "var" / "test-screenshots"
START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()  # 21:00 JST: night at Kiso


class Clock:
    """sim:feeds' clock, moved by the test."""

    def __init__(self) -> None:
        self.t = START

    def __call__(self) -> float:
        return self.t


class Sim:
    """sim:feeds served by uvicorn in a thread; `restart()` serves a new app on the same data_dir."""

    def __init__(self, cfg: Config, clock: Clock, page_refresh_s: float = 10.0) -> None:
        self.cfg, self.clock, self.page_refresh_s = cfg, clock, page_refresh_s
        self.url = f"http://127.0.0.1:{cfg.couriers.simulator.port}"
        self.server: uvicorn.Server | None = None
        self.start()

    def start(self) -> None:
        app = create_app(self.cfg, self.clock, self.page_refresh_s)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.cfg.couriers.simulator.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server is not None and self.server.started, 60, what="sim:feeds to listen")

    def stop(self) -> None:
        assert self.server is not None
        self.server.should_exit = True
        self.thread.join(60)

    def restart(self) -> None:
        self.stop()
        self.start()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kw)

    def feed(self, name: str) -> Parsed:
        r = self.get(f"/feeds/{name}")
        assert r.status_code == 200, r.text
        parsed = PARSERS[name](r.text)  # type: ignore[index]
        assert parsed.rejected == [], parsed.rejected
        return parsed

    def received(self) -> list[dict[str, Any]]:
        r = self.get("/sim/slack.json")
        assert r.status_code == 200
        messages: list[dict[str, Any]] = r.json()["messages"]
        return messages


def sim_config(tmp: Path) -> Config:
    """No feeds, notifiers or follow-up rules configured: all of them come from sim:feeds."""
    return parse_config(
        {
            "data_dir": str(tmp / "var"),
            "couriers": {
                "simulator": {"port": free_port(), "new_item_every_s": PERIOD_S, "first_maxi_after_s": FIRST_MAXI_S},
                "retry_base_s": 0.01,
            },
        }
    )


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    s = Sim(sim_config(tmp_path), Clock())
    try:
        yield s
    finally:
        s.stop()


def keys(p: Parsed) -> list[str]:
    return [a.key for a in p.alerts]


def test_each_feed_parses_with_the_couriers_parsers_and_new_items_appear_on_the_clock(sim: Sim) -> None:
    first = {f: sim.feed(f) for f in FEEDS}
    assert {f: len(p.alerts) for f, p in first.items()} == BACKLOG
    assert first["maxi"].alerts[0].dec_deg == pytest.approx(-45.2)  # the past notice is far south
    assert all(len(set(keys(p))) == len(p.alerts) for p in first.values())

    sim.clock.t += FIRST_MAXI_S
    maxi = sim.feed("maxi")
    [new] = [a for a in maxi.alerts if a.key not in keys(first["maxi"])]
    assert new.ra_deg is not None and new.dec_deg is not None and new.event_time is not None
    sky = horizontal(sim.cfg.site, new.ra_deg, new.dec_deg, datetime.fromtimestamp(sim.clock.t, UTC))
    assert sky.alt_deg > 40, f"{new.title} is at {sky.alt_deg:.0f} deg from Kiso: a follow-up could not run"
    assert {f: len(sim.feed(f).alerts) for f in FEEDS if f != "maxi"} == {f: BACKLOG[f] for f in FEEDS if f != "maxi"}

    sim.clock.t += 4 * PERIOD_S  # one new item in each feed, in turn
    later = {f: sim.feed(f) for f in FEEDS}
    grown = {f: len(later[f].alerts) - len(first[f].alerts) for f in FEEDS}
    assert grown == {"cneos": 1, "gaia": 1, "mpec": 1, "maxi": 2}
    assert all(set(keys(first[f])) < set(keys(later[f])) for f in FEEDS)  # nothing old renamed or dropped


def test_a_feed_answers_304_to_its_etag_until_it_changes(sim: Sim) -> None:
    for feed in FEEDS:
        r = sim.get(f"/feeds/{feed}")
        etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
        again = sim.get(f"/feeds/{feed}", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
        assert sim.get(f"/feeds/{feed}", headers={"If-Modified-Since": modified}).status_code == 304
        assert sim.get(f"/feeds/{feed}", headers={"If-None-Match": '"other"'}).status_code == 200
    sim.clock.t += 4 * PERIOD_S + FIRST_MAXI_S
    for feed in FEEDS:
        r = sim.get(f"/feeds/{feed}", headers={"If-None-Match": etag})
        assert r.status_code == 200 and r.headers["ETag"] != etag


def test_the_close_approach_api_takes_the_query_the_courier_sends(sim: Sim) -> None:
    r = sim.get("/feeds/cneos?dist-max=0.05&date-min=now&date-max=%2B7&fullname=true")
    doc = r.json()
    assert r.status_code == 200 and doc["fields"][-1] == "fullname" and int(doc["count"]) == len(doc["data"])
    assert PARSERS["cneos"](r.text).rejected == []
    near = sim.get("/feeds/cneos?dist-max=1LD&sort=-dist").json()
    assert all(float(row[4]) <= 384_400 / 149_597_870.7 for row in near["data"])
    for query, named in (("bogus=1", "bogus"), ("dist-max=far", "dist-max"), ("date-min=soon", "date-min")):
        bad = sim.get(f"/feeds/cneos?{query}")
        assert bad.status_code == 400 and named in bad.json()["message"], bad.text
    assert sim.get("/feeds/cneos").status_code == 200


def couriers_pass(cfg: Config, engine: Any) -> dict[str, int]:
    """One read of every feed by its courier, and the sender's pass: how many new alerts each feed had."""
    new = {f: len(Courier(Context(cfg, "gozen", engine, f"courier:{f}", {"feed": f})).poll_once().new) for f in FEEDS}
    sender = Sender(Context(cfg, "gozen", engine, "courier:sender"))
    while sender.send_due():
        pass
    return new


def test_the_couriers_read_it_post_to_the_stand_in_and_a_maxi_notice_becomes_an_interrupt_recipe(
    sim: Sim, tmp_path: Path
) -> None:
    from gozen.queue import store as queue

    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    assert couriers_pass(sim.cfg, engine) == BACKLOG
    assert queue.queued(engine) == []  # the past MAXI notice is too far south for the rule
    sim.clock.t += FIRST_MAXI_S
    assert couriers_pass(sim.cfg, engine) == {"cneos": 0, "gaia": 0, "mpec": 0, "maxi": 1}
    [recipe] = queue.queued(engine)
    assert recipe.priority == "interrupt" and recipe.name.startswith("Queue-Observer MAXI ")

    sim.restart()  # a restarted sim:feeds plays what it played before: nothing is new
    assert couriers_pass(sim.cfg, engine) == {f: 0 for f in FEEDS}
    with engine.connect() as conn:
        states = [r.state for r in conn.execute(select(outbox.c.state))]
        n_alerts = len(conn.execute(select(alerts.c.id)).all())
    assert n_alerts == sum(BACKLOG.values()) + 1
    assert states and set(states) == {"sent"}, states
    texts = [m["text"] for m in sim.received()]
    assert len(texts) == len(states)  # one digest for CNEOS, one per other alert
    assert any(t.startswith("CNEOS Close Approaches") for t in texts)
    assert any(recipe.name.removeprefix("Queue-Observer MAXI ") in t for t in texts)


def test_a_run_after_a_day_off_makes_up_nothing_and_brings_a_maxi_notice_again(sim: Sim) -> None:
    sim.clock.t += FIRST_MAXI_S + 2 * PERIOD_S
    before = {f: keys(sim.feed(f)) for f in FEEDS}
    sim.stop()
    sim.clock.t += 86400
    sim.start()
    assert {f: keys(sim.feed(f)) for f in FEEDS} == before  # the same items, none made up for the day
    sim.clock.t += FIRST_MAXI_S
    after = {f: keys(sim.feed(f)) for f in FEEDS}
    assert {f: len(after[f]) - len(before[f]) for f in FEEDS} == {"cneos": 0, "gaia": 0, "mpec": 0, "maxi": 1}
    assert after["maxi"][1:] == before["maxi"]  # newest first, as GCN pages list them


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 16), (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


def test_the_stand_in_takes_webhook_posts_and_files_upload_v2_and_shows_them(sim: Sim) -> None:
    hook = WebhookClient(f"{sim.url}/slack/webhook")
    r = hook.send(text=":warning: dome *not* closed", blocks=None)
    assert (r.status_code, r.body) == (200, "ok")
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Night report 2026-11-26 :telescope:"}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*<https://example.org/r?a=1&amp;b=2|report>* &lt;ok&gt;"},
        },
    ]
    assert hook.send(text="fallback", blocks=blocks).status_code == 200
    api = WebClient(token="xoxb-simulated", base_url=f"{sim.url}/slack/api/")
    assert api.auth_test()["ok"]
    posted = api.chat_postMessage(channel="CSIMULATED", text="frames lost on chip 12 :x:")
    assert posted["ok"] and posted["ts"]
    png = png_bytes()
    done = api.files_upload_v2(
        content=png, filename="rate.png", title="Frame rate", channel="CSIMULATED", initial_comment="the night"
    )
    snippet = api.files_upload_v2(content="pool: tank\n state: ONLINE", filename="zfs.txt", title="zfs", channel="C1")
    assert done["ok"] and snippet["ok"]

    got = sim.received()
    assert [m["via"] for m in got] == [
        "webhook", "webhook", "chat.postMessage", "files.completeUploadExternal", "files.completeUploadExternal"
    ]  # fmt: skip
    assert got[1]["blocks"] == blocks and got[2]["channel"] == "CSIMULATED"
    [image] = got[3]["files"]
    assert (image["title"], image["mimetype"], image["size"], got[3]["text"]) == (
        "Frame rate",
        "image/png",
        len(png),
        "the night",
    )
    assert sim.get(image["url"]).content == png
    assert float(got[0]["ts"]) < float(got[4]["ts"])

    page = sim.get("/sim/slack").text
    assert "⚠️ dome <b>not</b> closed" in page  # emoji drawn, mrkdwn formatted
    assert "Night report 2026-11-26 🔭" in page and "❌" in page
    assert '<b><a href="https://example.org/r?a=1&amp;b=2" rel="noopener noreferrer">report</a></b> &lt;ok&gt;' in page
    assert f'<img class="file" src="{image["url"]}"' in page and "state: ONLINE</pre>" in page
    assert "12:00:00 UTC" in page and "21:00 JST" in page  # the clock's time, and Kiso's beside it
    assert '<script src="/sim/slack.js">' in page and "<style" not in page
    assert sim.get("/sim/slack.js").status_code == 200 and sim.get("/sim/slack.css").status_code == 200

    sim.restart()  # what was received is kept
    assert [m["ts"] for m in sim.received()] == [m["ts"] for m in got]


@pytest.mark.parametrize(
    ("path", "kw", "status", "says"),
    [
        ("/slack/webhook", {"content": b"not json"}, 400, "invalid_payload"),
        ("/slack/webhook", {"content": b"\xff\xfe{"}, 400, "invalid_payload"),
        ("/slack/webhook", {"data": {"payload": "[1]"}}, 400, "invalid_payload"),
        ("/slack/webhook", {"json": {}}, 400, "no_text"),
        ("/slack/webhook", {"json": {"text": "x", "blocks": "nope"}}, 400, "invalid_blocks"),
        ("/slack/webhook", {"json": {"text": 5}}, 400, "text: must be a string"),
        ("/slack/api/chat.postMessage", {"data": {"channel": "C1", "text": "x"}}, 401, "not_authed"),
        ("/slack/api/chat.postMessage", {"data": {"token": "hunter2", "text": "x"}}, 401, "invalid_auth"),
        ("/slack/api/chat.postMessage", {"data": {"token": "xoxb-1", "text": "x"}}, 400, "channel_not_found"),
        ("/slack/api/chat.postMessage", {"data": {"token": "xoxb-1", "channel": "C1"}}, 400, "no_text"),
        ("/slack/api/files.getUploadURLExternal", {"data": {"token": "xoxb-1", "filename": "a"}}, 400, "length"),
        ("/slack/api/files.completeUploadExternal", {"data": {"token": "xoxb-1", "files": "[{"}}, 400, "files:"),
        (
            "/slack/api/files.completeUploadExternal",
            {"data": {"token": "xoxb-1", "files": '[{"id": "F9"}]'}},
            400,
            "F9",
        ),
        ("/slack/api/chat.delete", {"data": {"token": "xoxb-1"}}, 404, "unknown_method"),
        (
            "/slack/api/chat.postMessage",
            {"content": b"{", "headers": {"content-type": "application/json"}},
            400,
            "JSON",
        ),
        ("/slack/upload/F404", {"content": b"data"}, 404, "F404"),
    ],
)
def test_garbage_is_refused_with_a_reason_and_the_stand_in_goes_on(
    sim: Sim, path: str, kw: dict[str, Any], status: int, says: str
) -> None:
    r = httpx.post(sim.url + path, timeout=30, **kw)
    assert r.status_code == status and says in r.text, (r.status_code, r.text)
    assert sim.received() == []  # nothing recorded
    ok = httpx.post(f"{sim.url}/slack/webhook", json={"text": "still here"}, timeout=30)
    assert ok.text == "ok" and [m["text"] for m in sim.received()] == ["still here"]


def test_an_api_error_reaches_slack_sdk_as_slack_api_error(sim: Sim) -> None:
    api = WebClient(token="xoxb-simulated", base_url=f"{sim.url}/slack/api/")
    with pytest.raises(SlackApiError) as err:
        api.chat_postMessage(channel="", text="where?")
    assert err.value.response["error"] == "channel_not_found"


def test_a_state_file_it_cannot_read_is_started_anew(tmp_path: Path) -> None:
    cfg = sim_config(tmp_path)
    state = cfg.data_dir / "sim" / "feeds.json"
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    s = Sim(cfg, Clock())
    try:
        assert len(s.feed("gaia").alerts) == BACKLOG["gaia"]
        assert json.loads(state.read_text())["seq"]["gaia"] == BACKLOG["gaia"]
    finally:
        s.stop()


def test_a_feed_answers_if_modified_since_a_date_from_before_its_newest_item(sim: Sim) -> None:
    old = format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)
    assert sim.get("/feeds/gaia", headers={"If-Modified-Since": old}).status_code == 200
    assert sim.get("/feeds/gaia", headers={"If-Modified-Since": "garbage"}).status_code == 200


def test_the_channel_page_shows_images_and_new_messages_by_itself(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    s = Sim(sim_config(tmp_path), Clock(), page_refresh_s=1.0)
    try:
        api = WebClient(token="xoxb-simulated", base_url=f"{s.url}/slack/api/")
        api.files_upload_v2(content=png_bytes(), filename="rate.png", title="Frame rate", channel="CSIMULATED")
        page = browser.new_page(viewport={"width": 900, "height": 600})
        page.set_default_timeout(WAIT_S * 1000)
        page.goto(f"{s.url}/sim/slack")
        image = page.locator("img.file")
        expect(image).to_have_count(1)
        assert image.evaluate("img => img.complete && img.naturalWidth") == 32  # the PNG as uploaded
        for n in range(12):  # enough to scroll: the page must keep to the newest
            WebhookClient(f"{s.url}/slack/webhook").send(text=f"message {n} :white_check_mark: *done*")
        last = page.locator(".msg").last
        expect(last).to_contain_text("message 11 ✅ done")  # came without anyone reloading
        expect(last.locator("b")).to_have_text("done")
        expect(last).to_be_in_viewport()
        expect(last.locator("time")).to_contain_text("UTC")
        expect(last.locator("time .local")).to_contain_text("JST")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "sim-slack.png"))  # what the reader sees: the newest messages
        page.close()
    finally:
        s.stop()
