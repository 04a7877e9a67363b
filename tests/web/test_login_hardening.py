"""Logins: backoff per user name and address with events, no user-name oracle, sessions that really end."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
import pytest

from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.web.auth import Authenticator, hash_password
from tests.conftest import OPERATOR, wait_until, write_config
from tests.web.test_security import form_token, login, serve_app


def try_login(c: httpx.Client, user: str, password: str) -> httpx.Response:
    token = form_token(c.get("/login").text)
    return c.post("/login", data={"username": user, "password": password, "csrf": token})


def test_wrong_passwords_lock_the_user_with_429_retry_after_and_events(tmp_path: Path) -> None:
    with serve_app(tmp_path) as (url, cfg), httpx.Client(base_url=url, timeout=60, headers={"Origin": url}) as c:
        for _ in range(5):
            assert try_login(c, OPERATOR[0], "wrong").status_code == 401
        r = try_login(c, OPERATOR[0], OPERATOR[1])  # the right password does not help while locked
        assert r.status_code == 429 and "Too many failed logins" in r.text
        assert 0 < int(r.headers["retry-after"]) <= 30  # the first lock
        assert c.post("/api/queue/pause").status_code == 401  # no session came of it
        engine = make_engine(cfg.database_url)
        failed = recent_events(engine, 100, kind="login_failed")
        locked = recent_events(engine, 100, kind="login_locked")
    assert len(failed) == 5 and {e.subject for e in failed} == {OPERATOR[0]}
    assert failed[0].data["address"] == "127.0.0.1" and failed[0].severity == "warning"
    assert len(locked) == 1 and f"user {OPERATOR[0]} after 5 failures" in locked[0].message


def test_many_user_names_from_one_address_lock_the_address(tmp_path: Path) -> None:
    with serve_app(tmp_path) as (url, cfg), httpx.Client(base_url=url, timeout=60, headers={"Origin": url}) as c:
        for i in range(20):
            assert try_login(c, f"guess{i}", "x").status_code == 401
        assert try_login(c, "guess-new", "x").status_code == 429
        locked = recent_events(make_engine(cfg.database_url), 100, kind="login_locked")
    assert [e.message for e in locked if "address 127.0.0.1" in e.message]


def test_basic_auth_failures_are_throttled_too(tmp_path: Path) -> None:
    with serve_app(tmp_path) as (url, _cfg), httpx.Client(base_url=url, timeout=60) as c:
        for _ in range(5):
            assert c.post("/api/queue/pause", auth=(OPERATOR[0], "wrong")).status_code == 401
        r = c.post("/api/queue/pause", auth=OPERATOR)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_each_further_failure_doubles_the_lock() -> None:
    from gozen.web.throttle import LoginThrottle

    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(5):
        assert throttle.retry_after_s("ops", "10.0.0.1") == 0
        throttle.failed("ops", "10.0.0.1")
    waits = []
    for _ in range(3):
        wait_s = throttle.retry_after_s("ops", "10.0.0.1")
        waits.append(wait_s)
        now[0] += wait_s + 1
        assert throttle.retry_after_s("ops", "10.0.0.1") == 0
        throttle.failed("ops", "10.0.0.1")
    assert waits == [30, 60, 120]
    throttle.succeeded("ops")
    assert throttle.retry_after_s("ops", "10.0.0.2") == 0  # the user name is free again
    assert throttle.retry_after_s("other", "10.0.0.1") == 0  # 8 failures: the address is not locked yet


def test_unknown_user_costs_as_much_as_a_wrong_password(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "gozen.yaml",
        {"data_dir": str(tmp_path / "var"), "web": {"users": [{"name": "ops", "password_hash": hash_password("pw")}]}},
    )
    auth = Authenticator(cfg)

    def median_s(name: str) -> float:
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            assert auth.login(name, "wrong") is None
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    known, unknown = median_s("ops"), median_s("nobody-by-this-name")
    assert unknown > 0.5 * known, f"{known=:.4f}s {unknown=:.4f}s"


def test_logout_revokes_the_session_cookie(tmp_path: Path) -> None:
    with serve_app(tmp_path) as (url, _cfg), httpx.Client(base_url=url, timeout=60) as c:
        assert login(c, OPERATOR, url).status_code == 303
        cookie = c.cookies["gozen_session"]
        assert c.post("/api/queue/pause").status_code == 200
        assert c.post("/logout", data={"csrf": form_token(c.get("/").text)}).status_code == 303
        with httpx.Client(base_url=url, timeout=60, headers={"Origin": url}) as replay:
            replay.cookies.set("gozen_session", cookie)
            assert replay.post("/api/queue/resume").status_code == 401
            assert 'id="login-link"' in replay.get("/queue").text


def test_session_ends_after_session_max_age_s(tmp_path: Path) -> None:
    with serve_app(tmp_path, session_max_age_s=3) as (url, _cfg), httpx.Client(base_url=url, timeout=60) as c:
        assert login(c, OPERATOR, url).status_code == 303
        cookie = c.cookies["gozen_session"]
        with httpx.Client(base_url=url, timeout=60, headers={"Origin": url}) as replay:
            replay.cookies.set("gozen_session", cookie)  # as a browser that ignores the cookie's expiry would
            assert replay.post("/api/queue/pause").status_code in (200, 401)
            wait_until(lambda: replay.post("/api/queue/pause").status_code == 401, 60, 0.5, "the session to end")


@pytest.mark.parametrize("secure", [True, False])
def test_session_cookie_is_secure_when_configured(tmp_path: Path, secure: bool) -> None:
    with serve_app(tmp_path, cookie_secure=secure) as (url, _cfg), httpx.Client(base_url=url, timeout=60) as c:
        set_cookie = c.get("/login").headers["set-cookie"].lower()
    assert set_cookie.startswith("gozen_session=") and ("; secure" in set_cookie) == secure
