"""The web app while its database is away: 503 with the reason and Retry-After, a banner on pages,
never a 500 or a traceback; the login page and static files still work; everything answers again
when the database is back, and a web action carried out meanwhile keeps its audit event.

On SQLite the database's directory is replaced by a plain file (root ignores file modes); on
PostgreSQL a scratch database of the shared server refuses connections and its sessions are
terminated (the server itself is never stopped).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from playwright.sync_api import Browser, expect
from sqlalchemy.engine import make_url

from gozen.config import Config
from gozen.db.engine import make_engine
from gozen.db.events import flush_spool, recent_events
from gozen.db.migrate import upgrade
from tests.conftest import (
    OPERATOR,
    PG_ADMIN_URL,
    START_S,
    Fleet,
    free_port,
    gozen_cmd,
    tail,
    wait_until,
    web_section,
    write_config,
)
from tests.web.test_processes_browser import browser  # noqa: F401 - the fixture
from tests.web.test_security import form_token, serve_app

RETRY_S = 1  # web_section's refresh_s: pages and clients retry at the pages' own pace
BANNER = f"The database is not answering; this page will retry in {RETRY_S} s"
API_PATHS = ("/api/data", "/api/events", "/api/status", "/api/queue", "/api/daq")
PAGES = ("/data", "/events", "/monitors", "/queue", "/daq")


def assert_unavailable_json(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json() == {"error": "database unavailable", "retry_after_s": RETRY_S}
    assert r.headers["Retry-After"] == str(RETRY_S)


def assert_banner_page(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text[:500]
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["Retry-After"] == str(RETRY_S)
    assert BANNER in r.text and f'data-reload-s="{RETRY_S}"' in r.text
    assert "Traceback" not in r.text and "OperationalError" not in r.text


# -- SQLite, the app in-process ------------------------------------------------------------------


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    """The app alone on its own SQLite file (in data_dir) behind uvicorn, and that data_dir."""
    with serve_app(tmp_path) as (url, cfg), httpx.Client(base_url=url, timeout=60) as client:
        yield client, cfg.data_dir


@contextmanager
def sqlite_away(db_dir: Path) -> Iterator[None]:
    """The SQLite file cannot be opened: its directory is a plain file meanwhile (the app has no
    connection open yet: one open before would keep reading the moved file, as SQLite does)."""
    moved = db_dir.with_name(db_dir.name + ".away")
    db_dir.rename(moved)
    db_dir.write_text("not a directory\n")
    try:
        yield
    finally:
        db_dir.unlink()
        moved.rename(db_dir)


def test_api_answers_503_with_retry_after_while_sqlite_is_away_then_200(
    sqlite_app: tuple[httpx.Client, Path],
) -> None:
    client, db_dir = sqlite_app
    with sqlite_away(db_dir):
        for path in API_PATHS:
            assert_unavailable_json(client.get(path))
    for path in API_PATHS:
        assert client.get(path).status_code == 200, path


def test_pages_show_the_banner_and_retry_while_sqlite_is_away_then_their_content(
    sqlite_app: tuple[httpx.Client, Path],
) -> None:
    client, db_dir = sqlite_app
    with sqlite_away(db_dir):
        for path in PAGES:
            assert_banner_page(client.get(path))
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200 and BANNER not in r.text, path


def test_login_and_static_files_work_while_sqlite_is_away(sqlite_app: tuple[httpx.Client, Path]) -> None:
    client, db_dir = sqlite_app
    client.headers["Origin"] = str(client.base_url).rstrip("/")  # as a browser sends it from the app's own page
    with sqlite_away(db_dir):
        assert client.get("/static/style.css").status_code == 200
        login = client.get("/login")
        assert login.status_code == 200
        token = form_token(login.text)
        r = client.post(
            "/login",
            data={"username": OPERATOR[0], "password": OPERATOR[1], "csrf": token, "next": "/data"},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/data"
        page = client.get("/data")
        assert_banner_page(page)
        assert 'id="whoami">ops (operator)' in page.text  # the banner page still knows who is logged in


def test_health_is_degraded_with_the_reason_while_sqlite_is_away(sqlite_app: tuple[httpx.Client, Path]) -> None:
    client, db_dir = sqlite_app
    with sqlite_away(db_dir):
        r = client.get("/api/health")
        assert r.status_code == 503 and r.headers["Retry-After"] == str(RETRY_S)
        body = r.json()
        assert body["status"] == "degraded" and body["database"] == "unavailable"
        assert body["reason"].startswith("database unavailable: ") and "unable to open database file" in body["reason"]
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and "reason" not in r.json()


# -- PostgreSQL, the dashboard's own entry point in its own process --------------------------------


@contextmanager
def postgresql_away(url: str) -> Iterator[None]:
    """The scratch database refuses new connections and its open ones are cut, until the block ends."""
    name = make_url(url).database
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@pytest.fixture(scope="module")
def pg_dashboard(fleet: Fleet, pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Config]]:
    """`gozen run www:dashboard`, as supervisord starts it, on PostgreSQL, over the fleet's hosts."""
    tmp = tmp_path_factory.mktemp("pg-dashboard")
    port = free_port()
    data: dict[str, Any] = yaml.safe_load(fleet.config_file.read_text())
    data |= {"data_dir": str(tmp / "var"), "database": {"url": pg_url}, "web": web_section(port)}
    cfg = write_config(tmp / "gozen.yaml", data)
    upgrade(make_engine(pg_url))
    log = tmp / "dashboard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            gozen_cmd(tmp / "gozen.yaml", "run", "www:dashboard"),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "GOZEN_HOST": "daq-master"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/api/health", timeout=10).status_code == 200, START_S, what="the dashboard")
        yield url, cfg
    finally:
        proc.terminate()
        proc.wait(60)
        assert "Traceback" not in log.read_text(), tail(log, 60)


def test_dashboard_on_postgresql_answers_503_while_it_is_away_then_200(pg_dashboard: tuple[str, Config]) -> None:
    url, cfg = pg_dashboard
    with httpx.Client(base_url=url, timeout=60) as web:
        assert web.get("/api/data").status_code == 200
        with postgresql_away(cfg.database_url):
            assert_unavailable_json(web.get("/api/data"))
            assert_banner_page(web.get("/data"))
            procs = web.get("/api/processes")  # supervisord's view needs no database: the page to use now
            assert procs.status_code == 200 and procs.json()["summary"]["heartbeats_known"] is False
            page = web.get("/processes")
            assert page.status_code == 200 and 'data-host="buf-node1"' in page.text
            assert "heartbeats unknown: the database is not answering" in page.text
            health = web.get("/api/health")
            assert health.status_code == 503 and health.json()["database"] == "unavailable"
            assert "not currently accepting connections" in health.json()["reason"]
            token = form_token(web.get("/login").text)
            wrong = {"username": "nobody", "password": "wrong", "csrf": token}
            r = web.post("/login", data=wrong, headers={"Origin": url})  # its login_failed event is spooled
            assert r.status_code == 401 and "Wrong user name or password." in r.text
        wait_until(lambda: web.get("/api/data").status_code == 200, what="/api/data to answer again")
        assert web.get("/api/health").json()["status"] == "ok"


def test_process_action_during_a_postgresql_outage_is_done_and_its_event_written_later(
    fleet: Fleet, pg_dashboard: tuple[str, Config]
) -> None:
    url, cfg = pg_dashboard
    engine = make_engine(cfg.database_url)
    with httpx.Client(base_url=url, timeout=60) as web, postgresql_away(cfg.database_url):
        asked = datetime.now(UTC)
        r = web.post("/api/processes/buf-node1/work:other/restart", auth=OPERATOR)
        assert r.status_code == 200, r.text
        done = datetime.now(UTC)
        assert list((cfg.data_dir / "spool").glob("events-*.jsonl")), "the audit event was not spooled"
    fleet.wait_state("buf-node1", "work:other", "RUNNING")
    assert flush_spool(engine, cfg.data_dir / "spool") >= 1  # as any program of the host does when it is back
    ours = [e for e in recent_events(engine, 200, kind="process_action") if asked <= e.time <= done]
    assert [(e.host, e.subject, e.data and e.data["action"]) for e in ours] == [("buf-node1", "work:other", "restart")]
    assert ours[0].source == "www:dashboard" and ours[0].data and ours[0].data["user"] == OPERATOR[0]


def test_page_in_a_browser_shows_the_banner_and_comes_back_by_itself(
    pg_dashboard: tuple[str, Config],
    browser: Browser,  # noqa: F811
) -> None:
    url, cfg = pg_dashboard
    page = browser.new_page()
    with postgresql_away(cfg.database_url):
        page.goto(f"{url}/data")
        expect(page.locator("#database-unavailable")).to_be_visible()
        expect(page.locator("#database-unavailable")).to_contain_text(BANNER)
    expect(page.locator("#database-unavailable")).to_have_count(0)  # it reloaded itself
    expect(page.locator("main")).to_contain_text("files catalogued")
    page.close()
