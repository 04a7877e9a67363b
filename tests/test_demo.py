"""The demo as a new user sees it: `gozen up` of the simulated observatory with nothing configured for the
couriers. sim:feeds plays the four feeds and stands in for Slack, so the Alerts page fills with items from
every feed, their messages are "posted" to the stand-in (/sim/slack), and a MAXI notice becomes an interrupt
recipe. Only what a test must set is set: the data directory, free ports, a small camera, quick timings."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gozen.config import FEEDS
from gozen.couriers.outbox import slack_escape
from gozen.db.types import utcnow
from tests.conftest import API_TOKEN, Fleet, free_port, start_fleet, tail, wait_until

pytestmark = pytest.mark.live

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DEMO_S = 240.0  # generous: the acceptance is 5 minutes on a person's machine; idle it takes well under one


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp: Path = tmp_path_factory.mktemp("demo")
    alpaca = f"127.0.0.1:{free_port()}"
    host = {"name": "demo", "supervisor": {"port": free_port()}}  # every role, as `./dev up` runs it
    extra = {
        "camera": {"chips": [111], "width_px": 100, "height_px": 50},  # CI has 2 cores
        "monitors": {
            "telescope": {"address": alpaca},
            "weather": {"address": alpaca},
            "safety_monitor": {"address": alpaca},
            "gpsd": {"port": free_port()},
        },
        "couriers": {
            "simulator": {
                "enabled": True,
                "port": free_port(),
                "every_s": 2,
                "new_item_every_s": 8,
                "first_maxi_after_s": 4,
            },
        },  # fmt: skip
    }
    fleet = start_fleet(tmp, [host], down=[], web_port=free_port(), extra=extra)
    yield fleet
    fleet.stop()


def sim_url(fleet: Fleet) -> str:
    url = fleet.cfg.sim_feeds_url()
    assert url is not None
    return url


def api(fleet: Fleet, path: str) -> Any:
    r = httpx.get(fleet.web_url + path, headers=AUTH, timeout=30)
    r.raise_for_status()
    return r.json()


def received(fleet: Fleet) -> list[dict[str, Any]]:
    r = httpx.get(f"{sim_url(fleet)}/sim/slack.json", timeout=30)
    r.raise_for_status()
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


def dump_for(fleet: Fleet) -> Any:
    def dump() -> str:
        out = [fleet.dump()]
        for name in ("sim-feeds", "courier-maxi", "courier-sender"):
            for log in sorted(fleet.cfg.log_dir.glob(f"*{name}*")):
                out.append(f"--- {log.name} (tail)\n{tail(log, 30)}")
        for what, look in (("/api/alerts", lambda: api(fleet, "/api/alerts")), ("/sim/slack.json", received)):
            try:
                out.append(f"--- {what}\n{json.dumps(look() if what == '/api/alerts' else look(fleet))[:4000]}")
            except (httpx.HTTPError, ValueError) as err:
                out.append(f"--- {what}: {err!r}")
        state = fleet.cfg.data_dir / "sim" / "feeds.json"
        out.append(f"--- {state}\n{state.read_text()[:2000] if state.exists() else '(none)'}")
        return "\n".join(out)

    return dump


def test_the_alerts_page_fills_from_all_four_feeds_and_their_messages_reach_the_stand_in(demo: Fleet) -> None:
    dump = dump_for(demo)

    def every_feed_has_items() -> dict[str, Any] | None:
        d = api(demo, "/api/alerts")
        return d if all(d["feeds"][f]["alerts"] for f in FEEDS) else None

    alerts = wait_until(every_feed_has_items, DEMO_S, 1.0, "alerts from all four feeds", dump)
    assert all(alerts["feeds"][f]["url"] == f"{sim_url(demo)}/feeds/{f}" for f in FEEDS)
    for f in FEEDS:  # read without a row skipped, or not modified since
        status = alerts["feeds"][f]["status"]
        assert status == "not modified" or (status.startswith("ok:") and status.endswith(" 0 skipped")), (f, status)
    page = httpx.get(f"{demo.web_url}/alerts", headers=AUTH, timeout=30).text
    for f in FEEDS:
        assert html.escape(alerts["feeds"][f]["alerts"][0]["title"]) in page, f
    assert page.count('data-simulated="yes"') == len(FEEDS) and f'href="{sim_url(demo)}/sim/slack"' in page

    def posted() -> list[dict[str, Any]]:
        return [m for m in received(demo) if m["via"] == "webhook"]

    wait_until(lambda: len(posted()) >= len(FEEDS), DEMO_S, 1.0, "messages posted to the Slack stand-in", dump)
    posts = api(demo, "/api/alerts")["posts"]
    assert any(p["state"] == "sent" and p["notifier"] == "sim-slack" for p in posts), posts
    slack_page = httpx.get(f"{sim_url(demo)}/sim/slack", timeout=30).text
    assert "CNEOS Close Approaches daily updates" in slack_page and "UTC" in slack_page and "JST" in slack_page


def test_a_maxi_notice_becomes_an_interrupt_recipe(demo: Fleet) -> None:
    def followed() -> list[dict[str, Any]]:
        return [a for a in api(demo, "/api/alerts")["feeds"]["maxi"]["alerts"] if a["followup_uuid"]]

    [first, *_] = wait_until(followed, DEMO_S, 1.0, "a MAXI alert followed up", dump_for(demo))
    recipe = api(demo, f"/api/recipes/{first['followup_uuid']}")
    assert recipe["priority"] == "interrupt" and recipe["name"] == f"Queue-Observer MAXI {first['title']}"
    assert first["dec_deg"] > -30  # the rule's limit; the far-south notice of the backlog made none
    south = [a for a in api(demo, "/api/alerts")["feeds"]["maxi"]["alerts"] if a["dec_deg"] < -30]
    assert south and all(a["followup_uuid"] is None for a in south)


def test_every_alert_was_told_and_nothing_stays_in_the_outbox(demo: Fleet) -> None:
    """The audit: each alert has its message, and every message older than a few seconds was delivered and
    is on the stand-in."""

    def settled() -> dict[str, Any] | None:
        d = api(demo, "/api/alerts")
        before = utcnow() - timedelta(seconds=15)
        old = [p for p in d["posts"] if datetime.fromisoformat(p["created_at"]) < before]
        return d if old and all(p["state"] == "sent" for p in old) else None

    d = wait_until(settled, DEMO_S, 1.0, "the outbox delivered", dump_for(demo))
    texts = [p["text"] for p in d["posts"]]
    for f in FEEDS:
        for a in d["feeds"][f]["alerts"]:
            assert any(a["title"] in t for t in texts), f"{f} alert {a['title']} has no message: {texts}"
    on_stand_in = {m["text"] for m in received(demo)}
    missing = [p["text"] for p in d["posts"] if p["state"] == "sent" and slack_escape(p["text"]) not in on_stand_in]
    assert missing == [], missing
    assert {p["notifier"] for p in d["posts"]} == {"sim-slack"}
