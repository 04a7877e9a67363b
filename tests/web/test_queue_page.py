"""Operators act from the Queue page (headless Chromium): pause/resume, maintenance/normal, abort,
cancel, move up and submit, each recorded as an event naming them; a viewer sees no control and
the API refuses every action to a viewer (403) and to nobody (401)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine

from gozen.config import Config
from gozen.db.engine import make_engine
from gozen.db.events import Event, events_after, last_event_id, recent_events
from gozen.db.states import QueueMode, RecipeState
from gozen.queue import store
from gozen.queue.recipe import parse_recipe
from gozen.web.auth import token_sha256
from tests.conftest import API_TOKEN, OPERATOR, VIEWER, WAIT_S, free_port, web_section, write_config
from tests.web.served import served
from tests.web.test_processes_browser import browser  # noqa: F401 - the fixture
from tests.web.test_security import login

pytestmark = pytest.mark.live  # a real uvicorn

SHOTS = Path(__file__).parents[2] / "var" / "test-screenshots"
VIEWER_TOKEN = "wall-screen-token-0a1b2c3d"
REFRESH_S = 2
VALID_YAML = """name: Queue-Observer PAGE SUBMIT
priority: low
constraints: {min_alt_deg: 30}
steps:
  - slew: {ra_deg: 176.25, dec_deg: 1.0}
  - expose: {object: INB 11 45+01, frames: 12, fps: 2, count: 1}
  - park: {}
"""
INVALID_YAML = """name: Queue-Observer PAGE BAD
steps:
  - expose: {object: INB 11 45+01, frames: 0}
  - slew: {ra_deg: 400, dec_deg: 1.0}
"""


@dataclass(frozen=True)
class App:
    url: str
    cfg: Config
    engine: Engine


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The web app alone on its own SQLite database behind a real uvicorn on 127.0.0.1 (no queue server)."""
    tmp = tmp_path_factory.mktemp("queue-page")
    port = free_port()
    web = web_section(port) | {"refresh_s": REFRESH_S}
    web["api_tokens"] = [
        *web["api_tokens"],
        {"name": "wall", "token_sha256": token_sha256(VIEWER_TOKEN), "role": "viewer"},
    ]
    cfg = write_config(tmp / "gozen.yaml", {"data_dir": str(tmp / "var"), "web": web})
    (tmp / "var").mkdir(exist_ok=True)
    engine = make_engine(cfg.database_url)
    with served(cfg, engine) as url:
        yield App(url, cfg, engine)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
    ctx.set_default_timeout(WAIT_S * 1000)
    p = ctx.new_page()
    problems: list[str] = []
    p.on("pageerror", lambda err: problems.append(str(err)))
    p.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    yield p
    ctx.close()
    assert problems == []  # no script error, no CSP refusal


def log_in(page: Page, app: App, user: tuple[str, str]) -> None:
    page.goto(f"{app.url}/login?next=/queue")
    page.fill('input[name="username"]', user[0])
    page.fill('input[name="password"]', user[1])
    page.click('button[type="submit"]')
    expect(page.locator("#whoami")).to_contain_text(user[0])
    expect(page).to_have_url(f"{app.url}/queue")


def queued(app: App, name: str, priority: str = "low") -> str:
    """A recipe in the queue, as `gozen queue submit` stores it."""
    recipe = parse_recipe({"name": name, "priority": priority, "steps": [{"park": {}}]})
    return store.submit(app.engine, recipe, "cli", app.cfg.queue.positions()).uuid


def actions(app: App, kind: str, by: str = OPERATOR[0]) -> list[Event]:
    """The queue's events of this kind naming `by`, newest first."""
    return [e for e in recent_events(app.engine, 1000) if e.kind == kind and (e.data or {}).get("by") == by]


def row(page: Page, uuid: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#queued tr[data-uuid="{uuid}"]')


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)
    assert (SHOTS / name).stat().st_size > 10_000


# -- an operator ------------------------------------------------------------------------------------
def test_operator_pauses_resumes_and_switches_maintenance_from_the_page(app: App, page: Page) -> None:
    log_in(page, app, OPERATOR)
    controls = page.locator("#queue-controls")
    expect(controls.locator("button")).to_have_text(["Pause", "Maintenance"])  # nothing executes: no Abort

    controls.locator('[data-action="pause"]').click()
    expect(page.locator("#mode")).to_have_text("normal (paused)")
    expect(page.locator("#message")).to_have_text("queue paused")
    expect(controls.locator("button")).to_have_text(["Resume", "Maintenance"])
    assert store.queue_status(app.engine).paused is True
    expect(page.locator('#queue-actions tr[data-kind="queue_paused"]')).to_contain_text("queue paused by ops")
    shot(page, "queue-paused.png")

    controls.locator('[data-action="resume"]').click()
    expect(page.locator("#mode")).to_have_text("normal")
    controls.locator('[data-action="maintenance"]').click()
    expect(page.locator("#mode")).to_have_text("maintenance")
    expect(page.locator("#mode")).to_have_class("bad")
    assert store.queue_status(app.engine).mode == QueueMode.MAINTENANCE
    controls.locator('[data-action="normal"]').click()
    expect(page.locator("#mode")).to_have_text("normal")
    expect(controls.locator("button")).to_have_text(["Pause", "Maintenance"])

    st = store.queue_status(app.engine)
    assert st.paused is False and st.mode == QueueMode.NORMAL
    assert len(actions(app, "queue_paused")) == 1 and len(actions(app, "queue_resumed")) == 1
    modes = [e.data["value"] for e in actions(app, "queue_mode") if e.data]
    assert modes[:2] == ["normal", "maintenance"]


def test_operator_cancels_a_queued_recipe_after_confirming(app: App, page: Page) -> None:
    keep, gone = queued(app, "Queue-Observer PAGE KEEP"), queued(app, "Queue-Observer PAGE CANCEL")
    log_in(page, app, OPERATOR)
    expect(row(page, gone)).to_be_visible()
    page.once("dialog", lambda d: d.dismiss())  # the operator thinks again
    row(page, gone).locator('[data-action="cancel"]').click()
    expect(page.locator("#message")).to_be_hidden()
    assert store.get(app.engine, gone).state == RecipeState.QUEUED  # type: ignore[union-attr]

    page.once("dialog", lambda d: d.accept())
    row(page, gone).locator('[data-action="cancel"]').click()
    expect(row(page, gone)).to_have_count(0)
    expect(page.locator("#message")).to_have_text("Queue-Observer PAGE CANCEL: cancelled")
    expect(page.locator(f'#executed tr[data-uuid="{gone}"]')).to_contain_text("cancelled by ops")
    expect(row(page, keep)).to_be_visible()
    got = store.get(app.engine, gone)
    assert got is not None and got.state == RecipeState.CANCELLED and got.message == "cancelled by ops"
    assert store.get(app.engine, keep).state == RecipeState.QUEUED  # type: ignore[union-attr]
    events = [e for e in actions(app, "recipe_cancelled") if e.data and e.data["uuid"] == gone]
    assert len(events) == 1 and events[0].message == "Queue-Observer PAGE CANCEL cancelled by ops"
    expect(page.locator('#queue-actions tr[data-kind="recipe_cancelled"]').first).to_contain_text("by ops")


def test_operator_moves_a_recipe_up_until_it_is_high(app: App, page: Page) -> None:
    first, second = queued(app, "Queue-Observer PAGE UP-A"), queued(app, "Queue-Observer PAGE UP-B")
    log_in(page, app, OPERATOR)
    names = page.locator("#queued tbody tr td.name")
    expect(row(page, second).locator("td.priority")).to_have_text("low")
    order = names.all_text_contents()
    assert order.index("Queue-Observer PAGE UP-A") < order.index("Queue-Observer PAGE UP-B")

    with page.expect_request(lambda r: "/queue/plan.svg?at=" in r.url):  # the plan is drawn again
        row(page, second).locator('[data-action="move-up"]').click()
    expect(row(page, second).locator("td.priority")).to_have_text("normal")
    expect(page.locator("#message")).to_have_text("Queue-Observer PAGE UP-B moved up: now normal")
    order = names.all_text_contents()
    assert order.index("Queue-Observer PAGE UP-B") < order.index("Queue-Observer PAGE UP-A")  # its row moved

    row(page, second).locator('[data-action="move-up"]').click()
    expect(row(page, second).locator("td.priority")).to_have_text("high")
    expect(row(page, second).locator('[data-action="move-up"]')).to_have_count(0)  # high is as far as it goes
    expect(row(page, second).locator('[data-action="cancel"]')).to_have_count(1)
    expect(row(page, first).locator('[data-action="move-up"]')).to_have_count(1)
    assert store.get(app.engine, second).priority == "high"  # type: ignore[union-attr]
    assert store.get(app.engine, first).priority == "low"  # type: ignore[union-attr]
    moved = [e for e in actions(app, "recipe_moved_up") if e.data and e.data["uuid"] == second]
    assert [e.message for e in moved] == [
        "Queue-Observer PAGE UP-B moved up to high by ops",
        "Queue-Observer PAGE UP-B moved up to normal by ops",
    ]
    shot(page, "queue-moved-up.png")


def test_move_up_api_answers_409_with_the_reason_and_404_for_an_unknown_recipe(app: App) -> None:
    high = queued(app, "Queue-Observer API HIGH", "high")
    low = queued(app, "Queue-Observer API LOW")
    store.cancel(app.engine, low, "cli")
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=app.url, timeout=60, headers=bearer) as c:
        r = c.post(f"/api/recipes/{high}/move-up")
        assert r.status_code == 409 and "is high already" in r.json()["detail"], r.text
        r = c.post(f"/api/recipes/{low}/move-up")
        assert r.status_code == 409 and "is cancelled: only a queued recipe can move up" in r.json()["detail"]
        r = c.post("/api/recipes/no-such-uuid/move-up")
        assert r.status_code == 404 and r.json()["detail"] == "uuid: no recipe no-such-uuid"
        normal = queued(app, "Queue-Observer API NORMAL", "normal")
        r = c.post(f"/api/recipes/{normal}/move-up")
        assert r.status_code == 200 and r.json() == {"uuid": normal, "priority": "high", "by": "ci"}
    assert store.get(app.engine, high).priority == "high"  # type: ignore[union-attr]
    assert len(actions(app, "recipe_moved_up", by="ci")) == 1


def test_operator_submits_recipes_from_the_textarea_and_sees_errors_by_field_path(app: App, page: Page) -> None:
    log_in(page, app, OPERATOR)
    expect(page.locator('#submit a[href="/api/recipes/schema"]')).to_be_visible()
    assert "steps:" in (page.locator("#recipe-text").get_attribute("placeholder") or "")

    page.fill("#recipe-text", INVALID_YAML)
    page.click("#submit-recipe")
    errors = page.locator("#recipe-errors li")
    expect(errors).to_have_count(2)
    expect(errors.locator("code.path")).to_have_text(["steps[0].expose.frames", "steps[1].slew.ra_deg"])
    expect(errors.nth(0)).to_have_text("steps[0].expose.frames: must be >= 1, got 0")
    expect(page.locator("#submit-result")).to_have_text("not queued: fix these fields")
    expect(page.locator("#recipe-text")).to_have_value(INVALID_YAML)  # kept, to be fixed
    shot(page, "queue-submit-errors.png")
    assert not [r for r in store.listed(app.engine, (RecipeState.QUEUED,), 1000) if r.name == "Queue-Observer PAGE BAD"]

    page.fill("#recipe-text", "name: [unclosed\nsteps: [")
    page.click("#submit-recipe")
    expect(errors).to_have_count(1)
    expect(errors.first).to_contain_text("not valid YAML/JSON at line")

    page.fill("#recipe-text", VALID_YAML)
    with page.expect_request(f"{app.url}/api/recipes") as sent:
        page.click("#submit-recipe")
    assert sent.value.headers["content-type"] == "application/yaml"
    result = page.locator("#submit-result")
    expect(result).to_contain_text("queued Queue-Observer PAGE SUBMIT (")
    expect(page.locator("#recipe-errors")).to_be_hidden()
    expect(page.locator("#recipe-text")).to_have_value("")
    uuid = (result.text_content() or "").rsplit("(", 1)[1].rstrip(")")
    expect(row(page, uuid)).to_contain_text("Queue-Observer PAGE SUBMIT")
    got = store.get(app.engine, uuid)
    assert got is not None and got.state == RecipeState.QUEUED and got.submitted_by == "ops"
    assert [s for s in got.recipe.model_dump()["steps"] if "expose" in s][0]["expose"]["frames"] == 12

    page.fill("#recipe-text", '{"name": "Queue-Observer PAGE JSON", "steps": [{"wait": {"seconds": 5}}]}')
    with page.expect_request(f"{app.url}/api/recipes") as sent:
        page.press("#recipe-text", "Control+Enter")
    assert sent.value.headers["content-type"] == "application/json"
    expect(result).to_contain_text("queued Queue-Observer PAGE JSON (")
    json_uuid = (result.text_content() or "").rsplit("(", 1)[1].rstrip(")")
    expect(row(page, json_uuid)).to_be_visible()
    submitted = {e.data["uuid"]: e.message for e in actions(app, "recipe_submitted") if e.data}
    assert submitted[uuid] == "Queue-Observer PAGE SUBMIT submitted by ops"
    assert submitted[json_uuid] == "Queue-Observer PAGE JSON submitted by ops"
    assert len([u for u in submitted if u in (uuid, json_uuid)]) == 2
    shot(page, "queue-operator.png")


def test_a_recipe_being_typed_survives_the_pages_refresh(app: App, page: Page) -> None:
    log_in(page, app, OPERATOR)
    page.evaluate("window.notReloaded = true")
    page.fill("#recipe-text", "name: half-typed\nsteps:\n  - ")
    page.focus("#recipe-text")
    uuid = queued(app, "Queue-Observer PAGE ELSEWHERE")  # added elsewhere: the page shows it by itself
    store.set_paused(app.engine, True, by="cli")
    expect(row(page, uuid)).to_be_visible(timeout=(WAIT_S + 4 * REFRESH_S) * 1000)
    expect(page.locator("#mode")).to_have_text("normal (paused)")
    expect(page.locator("#queue-controls button").first).to_have_text("Resume")
    assert page.evaluate("window.notReloaded") is True  # refreshed in place, not reloaded
    expect(page.locator("#recipe-text")).to_have_value("name: half-typed\nsteps:\n  - ")
    assert page.evaluate("document.activeElement.id") == "recipe-text"
    store.set_paused(app.engine, False, by="cli")
    expect(page.locator("#mode")).to_have_text("normal")


def test_operator_aborts_the_executing_recipe_only_after_confirming(app: App, page: Page) -> None:
    uuid = queued(app, "Queue-Observer PAGE RUNNING")
    store.set_state(app.engine, uuid, RecipeState.EXECUTING, "started")  # as the queue server does
    try:
        log_in(page, app, OPERATOR)
        expect(page.locator("#executing")).to_contain_text("Queue-Observer PAGE RUNNING")
        abort = page.locator('#queue-controls [data-action="abort"]')
        page.once("dialog", lambda d: d.dismiss())
        abort.click()
        assert store.abort_asked_by(app.engine, uuid) is None and not actions(app, "queue_abort")

        seen: list[str] = []

        def accept(d: Any) -> None:
            seen.append(d.message)
            d.accept()

        page.once("dialog", accept)
        page.locator('#queue-controls [data-action="abort"]').click()
        expect(page.locator("#message")).to_have_text("abort asked of the executing recipe")
        assert seen == ["Abort the executing recipe Queue-Observer PAGE RUNNING?"]
        assert store.abort_asked_by(app.engine, uuid) == "ops"
        assert len(actions(app, "queue_abort")) == 1
    finally:
        store.set_state(app.engine, uuid, RecipeState.ABORTED, "aborted")  # as the server would
    expect(page.locator('#queue-controls [data-action="abort"]')).to_have_count(0)


# -- a viewer and nobody ----------------------------------------------------------------------------
def test_viewer_and_anonymous_readers_see_no_controls(app: App, page: Page) -> None:
    uuid = queued(app, "Queue-Observer PAGE VIEWED")
    store.set_paused(app.engine, True, by="cli")  # whatever the state, no Resume either
    try:
        for who in ("anonymous", "viewer"):
            if who == "viewer":
                log_in(page, app, VIEWER)
            else:
                page.goto(f"{app.url}/queue")
            expect(row(page, uuid)).to_be_visible()
            expect(page.locator("#mode")).to_have_text("normal (paused)")
            assert page.locator("#queue-controls").count() == 0
            assert page.locator("#submit, #submit-form, #recipe-text").count() == 0
            assert page.locator("main button").count() == 0
            later = queued(app, f"Queue-Observer PAGE VIEWED BY {who}")
            expect(row(page, later)).to_be_visible()  # the page refreshed itself: still no control
            assert page.locator("main button").count() == 0
            assert page.locator("#queued th").count() == 6
        shot(page, "queue-viewer.png")
    finally:
        store.set_paused(app.engine, False, by="cli")


def post_all(c: httpx.Client, uuid: str) -> dict[str, int]:
    """Every queue action the API offers, as its status code."""
    recipe = '{"name": "Queue-Observer FORBIDDEN", "steps": [{"park": {}}]}'
    paths = [
        "/api/queue/pause",
        "/api/queue/resume",
        "/api/queue/abort",
        "/api/queue/mode/maintenance",
        "/api/queue/mode/normal",
        f"/api/recipes/{uuid}/cancel",
        f"/api/recipes/{uuid}/move-up",
    ]
    got = {p: c.post(p).status_code for p in paths}
    got["/api/recipes"] = c.post(
        "/api/recipes", content=recipe, headers={"Content-Type": "application/json"}
    ).status_code
    return got


def test_the_api_refuses_every_action_to_a_viewer_403_and_to_nobody_401(app: App, page: Page) -> None:
    uuid = queued(app, "Queue-Observer PAGE FORBIDDEN")
    before = last_event_id(app.engine)
    with httpx.Client(base_url=app.url, timeout=60) as c:  # the viewer's session, from the app's own origin
        assert login(c, VIEWER, app.url).status_code == 303
        assert c.get("/queue").status_code == 200 and 'id="whoami">guest (viewer)' in c.get("/queue").text
        assert set(post_all(c, uuid).values()) == {403}, post_all(c, uuid)
        assert "may only look (role viewer)" in c.post("/api/queue/pause").json()["detail"]
    with httpx.Client(base_url=app.url, timeout=60, headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}) as c:
        assert set(post_all(c, uuid).values()) == {403}
    with httpx.Client(base_url=app.url, timeout=60) as c:
        assert set(post_all(c, uuid).values()) == {401}
    # In the viewer's browser, from the page itself (same origin, session cookie): refused for the role.
    log_in(page, app, VIEWER)
    got = page.evaluate(
        """async (uuid) => {
            const out = {};
            for (const p of ["/api/queue/pause", `/api/recipes/${uuid}/cancel`, `/api/recipes/${uuid}/move-up`]) {
                const r = await fetch(p, {method: "POST", credentials: "same-origin"});
                out[p] = [r.status, (await r.json()).detail];
            }
            const r = await fetch("/api/recipes", {method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/yaml"}, body: "name: X\\nsteps: [{park: {}}]\\n"});
            out["/api/recipes"] = [r.status, (await r.json()).detail];
            return out;
        }""",
        uuid,
    )
    assert {p: s for p, (s, _) in got.items()} == dict.fromkeys(got, 403), got
    assert all("may only look" in detail for _, detail in got.values()), got
    # Nothing changed, nothing recorded as done.
    r = store.get(app.engine, uuid)
    assert r is not None and r.state == RecipeState.QUEUED and r.priority == "low"
    st = store.queue_status(app.engine)
    assert st.paused is False and st.mode == QueueMode.NORMAL
    assert not [
        r for r in store.listed(app.engine, (RecipeState.QUEUED,), 1000) if r.name == "Queue-Observer FORBIDDEN"
    ]
    assert [e for e in events_after(app.engine, before, 1000) if e.source == "queue"] == []
