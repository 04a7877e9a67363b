"""Bad and oversized input to the web app: refused with a clear 4xx while everything else keeps answering."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import func, select

from gozen.db.engine import make_engine
from gozen.db.tables import recipes
from gozen.monitors.board import Reading, publish
from gozen.queue import store
from gozen.queue.recipe import parse_recipe
from tests.conftest import API_TOKEN, Fleet
from tests.web.test_security import serve_app

BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
YAML = {**BEARER, "Content-Type": "application/yaml"}


def recipe_total(fleet: Fleet) -> int:
    with make_engine(fleet.cfg.database_url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(recipes)).scalar_one())


def raw_request(url: str, head: str, timeout_s: float = 60) -> str:
    """Send only a request's head (no body) and read what the server answers."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as s:
        s.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.decode("latin-1")


# -- body size -----------------------------------------------------------------------------------
def test_declared_body_over_max_body_bytes_is_refused_before_it_is_sent(fleet: Fleet) -> None:
    head = (
        "POST /api/recipes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {API_TOKEN}\r\nContent-Type: application/yaml\r\n"
        "Content-Length: 10000000\r\n\r\n"
    )
    answer = raw_request(fleet.web_url, head)  # the app must not wait for the 10 MB
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert httpx.get(f"{fleet.web_url}/api/health", timeout=60).status_code == 200


def test_chunked_body_over_max_body_bytes_is_refused(fleet: Fleet) -> None:
    before = recipe_total(fleet)

    def chunks() -> Iterator[bytes]:
        yield b"name: chunked\nsteps:\n"
        for _ in range(200):
            yield b"- park: {}\n" * 1000  # 2.2 MB in all

    r = httpx.post(f"{fleet.web_url}/api/recipes", content=chunks(), headers=YAML, timeout=60)
    assert r.status_code == 413 and "web.max_body_bytes (1000000 bytes)" in r.json()["detail"]
    assert recipe_total(fleet) == before
    assert httpx.get(f"{fleet.web_url}/api/health", timeout=60).status_code == 200


# -- recipes -------------------------------------------------------------------------------------
def test_recipe_over_queue_max_steps_is_refused_naming_the_limit(fleet: Fleet) -> None:
    before = recipe_total(fleet)
    body = yaml.safe_dump({"name": "too long", "steps": [{"park": {}}] * 1001})
    r = httpx.post(f"{fleet.web_url}/api/recipes", content=body, headers=YAML, timeout=60)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "recipe: steps: 1001 steps, more than queue.max_steps (1000)"
    assert recipe_total(fleet) == before


def test_alias_bomb_and_deep_nesting_are_422_without_echoing_the_input(fleet: Fleet) -> None:
    bomb = "a: &a [lolz,lolz,lolz,lolz,lolz,lolz,lolz,lolz,lolz]\n" + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    deep = "[" * 50_000 + "]" * 50_000
    for body in (bomb, deep):
        r = httpx.post(f"{fleet.web_url}/api/recipes", content=body, headers=YAML, timeout=60)
        assert r.status_code == 422, r.text[:300]
        assert len(r.content) < 2000 and "lolz" not in r.text and "[[[[" not in r.text


def test_recipe_errors_do_not_echo_a_large_input(fleet: Fleet) -> None:
    name = "N" * 500_000
    bad_steps = [{"expose": {"frames": 0, "object": "O" * 2000}}] * 100
    for body in ({"name": name, "steps": [{"park": {}}]}, {"name": "many problems", "steps": bad_steps}):
        r = httpx.post(f"{fleet.web_url}/api/recipes", json=body, headers=BEARER, timeout=60)
        assert r.status_code == 422 and len(r.content) < 10_000, len(r.content)
        assert r.json()["errors"] and "N" * 400 not in r.text and "O" * 400 not in r.text


def test_health_answers_while_a_big_recipe_is_parsed(fleet: Fleet) -> None:
    body = "name: big\nsteps:\n" + "- park: {}\n" * 70_000  # 0.77 MB: seconds of YAML parsing
    done: dict[str, Any] = {}

    def submit() -> None:
        t0 = time.monotonic()
        done["status"] = httpx.post(f"{fleet.web_url}/api/recipes", content=body, headers=YAML, timeout=600).status_code
        done["took_s"] = time.monotonic() - t0

    thread = threading.Thread(target=submit)
    thread.start()
    latencies = []
    while thread.is_alive():
        t0 = time.monotonic()
        assert httpx.get(f"{fleet.web_url}/api/health", timeout=600).status_code == 200
        if thread.is_alive():
            latencies.append(time.monotonic() - t0)
    thread.join()
    assert done["status"] == 422  # over the step limit, once parsed
    assert done["took_s"] > 1.0, "the recipe parsed too fast to show anything"
    # Parsed on the event loop, one health check would wait for the whole parse.
    assert len(latencies) >= 3 and max(latencies) < 0.5 * done["took_s"], (latencies, done)


def test_queue_page_stays_fast_after_huge_recipes(tmp_path: Path) -> None:
    with serve_app(tmp_path) as (url, cfg), httpx.Client(base_url=url, timeout=600) as c:
        engine = make_engine(cfg.database_url)

        def median_s(path: str) -> float:
            times = []
            for _ in range(3):
                t0 = time.monotonic()
                assert c.get(path).status_code == 200
                times.append(time.monotonic() - t0)
            return statistics.median(times)

        c.get("/queue")  # warm up: imports, sky tables
        before = median_s("/queue") + median_s("/api/queue")
        fields = cfg.queue.positions()
        for i in range(3):  # as `gozen queue submit` may store them: the web's step limit does not apply
            huge = parse_recipe({"name": f"huge {i}", "steps": [{"wait": {"seconds": 1}}] * 60_000})
            row = store.submit(engine, huge, "cli", fields)
            store.set_state(engine, row.uuid, "executing" if i == 0 else "done", "test")
        c.get("/queue")  # the executing one is read once here
        after = median_s("/queue") + median_s("/api/queue")
        page = c.get("/queue").text
        assert "huge 0" in page and "60000" in page and "huge 2" in page
        assert after < 2 * before + 0.3, f"{before=:.3f}s {after=:.3f}s"


# -- point 9: plan, CSV, plot names --------------------------------------------------------------
def test_plan_for_an_impossible_night_is_422_naming_night(fleet: Fleet) -> None:
    r = httpx.get(f"{fleet.web_url}/queue/plan.svg", params={"night": "9999-12-31"}, timeout=60)
    assert r.status_code == 422 and r.json()["detail"].startswith("night: 9999-12-31 is more than")
    assert httpx.get(f"{fleet.web_url}/queue/plan.svg", params={"night": "not-a-date"}, timeout=60).status_code == 422
    ok = httpx.get(f"{fleet.web_url}/queue/plan.svg", timeout=120)
    assert ok.status_code == 200 and ok.text.startswith("<svg")


def test_csv_key_with_line_breaks_is_refused_and_quotes_stay_out_of_the_header(fleet: Fleet) -> None:
    engine = make_engine(fleet.cfg.database_url)
    publish(engine, "test", [Reading("csvtest.level", 1.0, "m", 60.0)])
    url = f"{fleet.web_url}/api/status/history.csv"
    r = httpx.get(url, params={"key": "csvtest,x\r\nX-Injected: 1"}, timeout=60)
    assert r.status_code == 422 and "control characters" in r.json()["detail"]
    assert "x-injected" not in r.headers
    r = httpx.get(url, params={"key": 'csvtest,a"b;c'}, timeout=60)
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="csvtest+a_b_c.csv"'
    assert r.text.splitlines()[1].split(",")[1:] == ["csvtest.level", "1", "m"]


def test_percent_and_underscore_in_a_plot_name_are_not_wildcards(fleet: Fleet) -> None:
    engine = make_engine(fleet.cfg.database_url)
    publish(engine, "test", [Reading("plottest.level", 2.0, "m", 60.0)])
    assert httpx.get(f"{fleet.web_url}/monitors/plots/plottest.svg", timeout=60).status_code == 200
    for name in ("%25", "plottes_", "%25test"):
        r = httpx.get(f"{fleet.web_url}/monitors/plots/{name}.svg", timeout=60)
        assert r.status_code == 404, name
