"""Cross-site requests are refused, and every page carries its security headers and works under its CSP.

The CSRF attacks come from a real page on another port of 127.0.0.1 opened in headless Chromium by
an operator who is logged in to the app: SameSite=Strict cookies are sent there (same site, other
port), so only the Origin check and the form token stand in the way.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, expect
from sqlalchemy import func, select

from gozen.config import Config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.states import RecipeState
from gozen.db.tables import recipes
from gozen.queue import store
from tests.conftest import API_TOKEN, OPERATOR, Fleet, free_port, web_section, write_config
from tests.web.served import served
from tests.web.test_processes_browser import browser  # noqa: F401 - the fixture

RECIPE_NAME = "CSRF-RECIPE"


def form_token(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no form token on the page"
    return match.group(1)


def login(client: httpx.Client, user: tuple[str, str], origin: str) -> httpx.Response:
    """Log in through the login form as a browser on the app's own page does."""
    client.headers["Origin"] = origin
    token = form_token(client.get("/login").text)
    return client.post("/login", data={"username": user[0], "password": user[1], "csrf": token})


@contextmanager
def serve_app(tmp: Path, **web: Any) -> Iterator[tuple[str, Config]]:
    """The web app alone (own SQLite, own login state) behind a real uvicorn on 127.0.0.1."""
    port = free_port()
    cfg = write_config(tmp / "gozen.yaml", {"data_dir": str(tmp / "var"), "web": web_section(port) | web})
    (tmp / "var").mkdir(exist_ok=True)
    with served(cfg) as url:
        yield url, cfg


# -- the attacker's site -------------------------------------------------------------------------
def attack_pages(app: str) -> dict[str, str]:
    auto = "<script>document.forms[0].submit()</script>"
    return {
        # A JSON recipe in a text/plain form: name="{...,"x": "" value=""}" makes valid JSON.
        "/text-plain.html": f"""<form method="post" action="{app}/api/recipes" enctype="text/plain">
            <input name='{{"name": "{RECIPE_NAME}", "steps": [{{"park": {{}}}}], "x": "' value='"}}'></form>{auto}""",
        "/no-cors.html": f"""<script>fetch("{app}/api/processes/buf-node0/work:ticker/stop",
            {{method: "POST", mode: "no-cors", credentials: "include"}});</script>""",
        "/maintenance.html": f"""<form method="post" action="{app}/api/queue/mode/maintenance"></form>{auto}""",
        "/login.html": f"""<form method="post" action="{app}/login">
            <input name="username" value="{OPERATOR[0]}"><input name="password" value="{OPERATOR[1]}"></form>{auto}""",
    }


@pytest.fixture(scope="module")
def attacker(fleet: Fleet) -> Iterator[str]:
    pages = attack_pages(fleet.web_url)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = pages.get(self.path, "not here").encode()
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(30)


@pytest.fixture
def operator_context(fleet: Fleet, browser: Browser) -> Iterator[BrowserContext]:  # noqa: F811
    """A browser in which the operator has logged in to the app through its login page."""
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"{fleet.web_url}/login")
    page.fill('input[name="username"]', OPERATOR[0])
    page.fill('input[name="password"]', OPERATOR[1])
    page.click('button[type="submit"]')
    expect(page.locator("#whoami")).to_contain_text(OPERATOR[0])
    page.close()
    yield ctx
    ctx.close()


def attack(ctx: BrowserContext, attacker: str, page_path: str, target: str) -> int:
    """Open an attacker page; the HTTP status the app answered its forged request with."""
    page = ctx.new_page()
    try:
        with page.expect_response(lambda r: r.url == target and r.request.method == "POST", timeout=60_000) as got:
            page.goto(f"{attacker}{page_path}")
        return got.value.status
    finally:
        page.close()


def recipe_count(fleet: Fleet, name: str) -> int:
    with make_engine(fleet.cfg.database_url).connect() as conn:
        return int(conn.execute(select(func.count()).where(recipes.c.name == name)).scalar_one())


def queue_mode(fleet: Fleet) -> str:
    return str(store.queue_status(make_engine(fleet.cfg.database_url)).mode)


def test_cross_site_text_plain_recipe_is_refused_and_not_stored(
    fleet: Fleet, operator_context: BrowserContext, attacker: str
) -> None:
    status = attack(operator_context, attacker, "/text-plain.html", f"{fleet.web_url}/api/recipes")
    assert status == 403
    assert recipe_count(fleet, RECIPE_NAME) == 0


def test_cross_site_no_cors_fetch_cannot_stop_a_program(
    fleet: Fleet, operator_context: BrowserContext, attacker: str
) -> None:
    target = f"{fleet.web_url}/api/processes/buf-node0/work:ticker/stop"
    assert attack(operator_context, attacker, "/no-cors.html", target) == 403
    assert fleet.state("buf-node0", "work:ticker") == "RUNNING"


def test_cross_site_form_cannot_set_maintenance_mode(
    fleet: Fleet, operator_context: BrowserContext, attacker: str
) -> None:
    target = f"{fleet.web_url}/api/queue/mode/maintenance"
    assert attack(operator_context, attacker, "/maintenance.html", target) == 403
    assert queue_mode(fleet) == "normal"


def test_cross_site_login_form_is_refused(fleet: Fleet, browser: Browser, attacker: str) -> None:  # noqa: F811
    ctx = browser.new_context()
    try:
        assert attack(ctx, attacker, "/login.html", f"{fleet.web_url}/login") == 403
        page = ctx.new_page()
        page.goto(f"{fleet.web_url}/processes")
        expect(page.locator("#login-link")).to_be_visible()  # not logged in as anyone
    finally:
        ctx.close()


def test_the_apps_own_page_still_acts_from_the_browser(fleet: Fleet, operator_context: BrowserContext) -> None:
    page = operator_context.new_page()
    page.goto(f"{fleet.web_url}/processes")
    row = page.locator('section[data-host="buf-node1"] tr[data-program="work:other"]')
    with page.expect_response(lambda r: r.url.endswith("/restart") and r.request.method == "POST") as got:
        row.locator('button[data-action="restart"]').click()
    assert got.value.status == 200
    fleet.wait_state("buf-node1", "work:other", "RUNNING", timeout_s=60)


def test_logged_in_request_without_origin_or_referer_is_refused(fleet: Fleet) -> None:
    with httpx.Client(base_url=fleet.web_url, timeout=60) as c:
        assert login(c, OPERATOR, fleet.web_url).status_code == 303
        del c.headers["Origin"]
        r = c.post("/api/queue/mode/maintenance")
        assert r.status_code == 403 and "without Origin or Referer" in r.json()["detail"]
        r = c.post("/api/queue/mode/maintenance", headers={"Referer": "http://127.0.0.1:1/page"})
        assert r.status_code == 403 and "Referer" in r.json()["detail"]
    assert queue_mode(fleet) == "normal"


def test_api_body_of_a_form_type_is_refused_even_from_the_apps_origin(fleet: Fleet) -> None:
    body = f'{{"name": "{RECIPE_NAME}-415", "steps": [{{"park": {{}}}}]}}'
    with httpx.Client(base_url=fleet.web_url, timeout=60) as c:
        assert login(c, OPERATOR, fleet.web_url).status_code == 303
        for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            r = c.post("/api/recipes", content=body, headers={"Content-Type": media})
            assert r.status_code == 415 and "application/json" in r.json()["detail"], media
        ok = c.post("/api/recipes", content=body, headers={"Content-Type": "application/json"})
        assert ok.status_code == 201, ok.text
    assert recipe_count(fleet, f"{RECIPE_NAME}-415") == 1


def test_cross_origin_request_with_basic_credentials_is_refused(fleet: Fleet) -> None:
    # A browser that once answered the Basic prompt re-sends it to any request for the app.
    r = httpx.post(
        f"{fleet.web_url}/api/queue/mode/maintenance",
        auth=OPERATOR,
        headers={"Origin": "http://127.0.0.1:1"},
        timeout=60,
    )
    assert r.status_code == 403
    assert queue_mode(fleet) == "normal"


def test_scripts_with_a_token_need_no_origin(fleet: Fleet) -> None:
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    assert httpx.post(f"{fleet.web_url}/api/queue/pause", headers=bearer, timeout=60).status_code == 200
    assert store.queue_status(make_engine(fleet.cfg.database_url)).paused is True
    assert httpx.post(f"{fleet.web_url}/api/queue/resume", headers=bearer, timeout=60).status_code == 200
    assert store.queue_status(make_engine(fleet.cfg.database_url)).paused is False


def test_login_form_without_its_token_is_refused(fleet: Fleet) -> None:
    with httpx.Client(base_url=fleet.web_url, timeout=60, headers={"Origin": fleet.web_url}) as c:
        c.get("/login")
        r = c.post("/login", data={"username": OPERATOR[0], "password": OPERATOR[1]})
        assert r.status_code == 403 and "expired" in r.text
        assert c.get("/api/processes").status_code == 200  # still anonymous:
        assert c.post("/api/queue/pause").status_code == 401


def test_public_origins_may_send_state_changes(tmp_path: Path) -> None:
    proxy = "https://gozen.example.org"
    with serve_app(tmp_path, public_origins=[proxy]) as (url, cfg), httpx.Client(base_url=url, timeout=60) as c:
        assert login(c, OPERATOR, proxy).status_code == 303
        assert c.post("/api/queue/pause").status_code == 200
        c.headers["Origin"] = "https://gozen.example.org:8443"
        assert c.post("/api/queue/resume").status_code == 403
        assert store.queue_status(make_engine(cfg.database_url)).paused is True


# -- headers and the CSP ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/login", "/queue", "/api/health", "/static/style.css", "/no/such/page"])
def test_every_response_carries_the_security_headers(fleet: Fleet, path: str) -> None:
    r = httpx.get(f"{fleet.web_url}{path}", timeout=60)
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"


IN_PLACE = ("/", "/processes", "/queue", "/monitors")  # refreshed in place by their scripts
STILL = ("/login", "/api/docs")  # nothing to refresh


@pytest.mark.parametrize(
    "path", ["/", "/processes", "/queue", "/monitors", "/events", "/alerts", "/data", "/login", "/api/docs"]
)
def test_pages_run_under_the_csp_without_violations_and_reload_themselves(
    fleet: Fleet,
    browser: Browser,  # noqa: F811
    path: str,
) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        page.goto(f"{fleet.web_url}{path}")
        if path not in IN_PLACE + STILL:
            with page.expect_event("load", timeout=60_000):  # refresh_s is 1 in the fleet
                pass
        else:
            page.wait_for_load_state("load")
        assert problems == []
    finally:
        ctx.close()


# -- an audit trail for queue actions ----------------------------------------------------------------
def test_queue_mode_pause_and_abort_from_the_web_leave_events_naming_the_user(tmp_path: Path) -> None:
    with serve_app(tmp_path) as (url, cfg), httpx.Client(base_url=url, timeout=60) as c:
        engine = make_engine(cfg.database_url)
        assert login(c, OPERATOR, url).status_code == 303
        for path in ("/api/queue/mode/maintenance", "/api/queue/mode/normal", "/api/queue/pause"):
            assert c.post(path).status_code == 200, path
        assert c.post("/api/queue/resume").status_code == 200
        r = c.post("/api/queue/abort")  # nothing executes: nothing is stored to abort a later recipe
        assert r.status_code == 409 and r.json()["detail"] == "nothing is executing"
        recipe = f'{{"name": "{RECIPE_NAME}-ABORT", "steps": [{{"park": {{}}}}]}}'
        uuid = c.post("/api/recipes", content=recipe, headers={"Content-Type": "application/json"}).json()["uuid"]
        store.set_state(engine, uuid, RecipeState.EXECUTING, "started")  # as the queue server does
        assert c.post("/api/queue/abort").status_code == 200
    kinds = {"queue_mode", "queue_paused", "queue_resumed", "queue_abort"}
    mine = [e for e in recent_events(engine, 200) if e.kind in kinds and e.data.get("by") == OPERATOR[0]]
    assert [e.kind for e in mine] == ["queue_abort", "queue_resumed", "queue_paused", "queue_mode", "queue_mode"]
    assert "queue mode set to maintenance by ops" in [e.message for e in mine]
