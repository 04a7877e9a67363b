"""The process monitor's HTTP API against real supervisord hosts: who may act, and what acting does."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.monitors.board import Reading, heartbeat, heartbeat_key, publish
from tests.conftest import API_TOKEN, OPERATOR, VIEWER, Fleet

STOP_URL = "/api/processes/buf-node0/work:ticker/stop"


@pytest.fixture
def web(fleet: Fleet) -> httpx.Client:
    with httpx.Client(base_url=fleet.web_url, timeout=60) as c:
        yield c


def test_health_answers(web: httpx.Client) -> None:
    r = web.get("/api/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["database"] == "ok"


def test_json_twin_lists_every_host_with_the_dead_one_unreachable(web: httpx.Client) -> None:
    body = web.get("/api/processes", params={"tail": 200}).json()
    hosts = {h["host"]: h for h in body["hosts"]}
    assert set(hosts) == {"daq-master", "buf-node0", "buf-node1", "buf-node2"}
    assert hosts["buf-node2"]["reachable"] is False
    assert body["summary"]["unreachable"] == 1 and body["summary"]["hosts"] == 4
    ticker = next(p for p in hosts["buf-node1"]["processes"] if p["full_name"] == "work:ticker")
    assert ticker["state"] == "RUNNING" and ticker["pid"] > 0 and ":" in ticker["uptime"]
    assert "tick" in ticker["stdout_tail"]


@pytest.mark.parametrize(
    ("auth", "status"),
    [(None, 401), (("ops", "wrong password"), 401), (("nobody", "x"), 401), (VIEWER, 403)],
)
def test_actions_without_the_right_to_act_are_refused_and_do_nothing(
    fleet: Fleet, web: httpx.Client, auth: tuple[str, str] | None, status: int
) -> None:
    r = web.post(STOP_URL, auth=auth)
    assert r.status_code == status, r.text
    assert fleet.state("buf-node0", "work:ticker") == "RUNNING"


def test_wrong_bearer_token_is_refused(fleet: Fleet, web: httpx.Client) -> None:
    r = web.post(STOP_URL, headers={"Authorization": "Bearer not-the-token"})
    assert r.status_code == 401
    assert fleet.state("buf-node0", "work:ticker") == "RUNNING"


def test_operator_stops_and_starts_a_real_process(fleet: Fleet, web: httpx.Client) -> None:
    r = web.post(STOP_URL, auth=OPERATOR)
    assert r.status_code == 200, r.text
    assert fleet.state("buf-node0", "work:ticker") == "STOPPED"
    r = web.post("/api/processes/buf-node0/work:ticker/start", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert r.status_code == 200, r.text
    assert fleet.state("buf-node0", "work:ticker") == "RUNNING"
    actions = [
        e
        for e in recent_events(make_engine(fleet.cfg.database_url), 200, kind="process_action")
        if e.subject == "work:ticker" and e.host == "buf-node0"
    ]
    assert [e.data["action"] for e in actions[:2]] == ["start", "stop"]  # newest first
    assert {e.data["user"] for e in actions[:2]} == {"ops", "ci"}


def form_token(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no form token on the page"
    return match.group(1)


def test_login_session_can_act(fleet: Fleet, web: httpx.Client) -> None:
    web.headers["Origin"] = fleet.web_url  # as a browser sends it from the app's own pages
    token = form_token(web.get("/login").text)
    bad = web.post("/login", data={"username": OPERATOR[0], "password": "nope", "csrf": token})
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text
    ok = web.post("/login", data={"username": OPERATOR[0], "password": OPERATOR[1], "next": "/", "csrf": token})
    assert ok.status_code == 303 and "gozen_session" in web.cookies
    assert web.post("/api/processes/buf-node1/work:other/restart").status_code == 200
    assert fleet.state("buf-node1", "work:other") == "RUNNING"
    assert web.post("/logout", data={"csrf": form_token(web.get("/").text)}).status_code == 303
    assert web.post("/api/processes/buf-node1/work:other/restart").status_code == 401


@pytest.mark.parametrize(
    ("url", "status", "detail"),
    [
        ("/api/processes/mars/work:ticker/stop", 404, "no host named 'mars'"),
        ("/api/processes/buf-node0/work:nosuch/stop", 409, "no such program"),
        ("/api/processes/buf-node2/work:ticker/stop", 502, "refused"),
        ("/api/processes/buf-node0/work:ticker/explode", 422, "start"),
    ],
)
def test_bad_actions_get_a_clear_4xx_or_502(web: httpx.Client, url: str, status: int, detail: str) -> None:
    r = web.post(url, auth=OPERATOR)
    assert r.status_code == status and detail in r.text


def test_page_shows_hosts_states_and_unreachable(web: httpx.Client) -> None:
    page = web.get("/processes").text
    assert 'id="host-buf-node2"' in page and "UNREACHABLE" in page and "connection refused" in page
    assert 'data-program="work:ticker"' in page and "state-RUNNING" in page
    assert web.get("/processes/fragment").status_code == 200


def test_a_running_program_whose_heartbeat_is_stale_is_marked_and_a_fresh_one_is_not(
    fleet: Fleet, web: httpx.Client
) -> None:
    engine = make_engine(fleet.cfg.database_url)
    hung, alive = ("buf-node0", "work:other"), ("buf-node1", "work:other")
    beat = Reading(heartbeat_key(*hung), "", "", max_age_s=30)
    publish(engine, hung[1], [beat], when=datetime.now(UTC) - timedelta(seconds=120), history=False)
    heartbeat(engine, *alive, max_age_s=60)
    try:
        body = web.get("/api/processes").json()
        procs = {(h["host"], p["full_name"]): p for h in body["hosts"] for p in h["processes"]}
        assert procs[hung]["state"] == "RUNNING" and procs[hung]["heartbeat"]["stale"] is True
        assert procs[hung]["heartbeat"]["age_s"] >= 120
        assert procs[alive]["heartbeat"]["stale"] is False and procs[alive]["heartbeat"]["age_s"] < 60
        assert procs[("buf-node1", "work:ticker")]["heartbeat"] is None  # never beats: nothing to say
        assert body["summary"]["no_heartbeat"] >= 1 and body["summary"]["heartbeats_known"] is True
        page = web.get("/processes").text
        hung_host = page.split('data-host="buf-node0"', 1)[1].split("</section>", 1)[0]
        hung_row = hung_host.split('data-program="work:other"', 1)[1].split("</tr>", 1)[0]
        assert re.search(r"no heartbeat for 1[2-9]\d s", hung_row), hung_row
        alive_host = page.split('data-host="buf-node1"', 1)[1].split("</section>", 1)[0]
        assert "no heartbeat" not in alive_host
        assert 'id="no-heartbeat"' in page
    finally:
        heartbeat(engine, *hung, max_age_s=3600)  # fresh again for the other tests of this fleet
