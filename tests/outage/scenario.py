"""The outage of issue 12's acceptance, on whichever database: the observatory at work, the
database away for 30 s, then everything it did and was asked meanwhile accounted for."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, or_, select

from gozen.db.events import spooled
from gozen.db.tables import exposures
from gozen.db.types import utcnow
from tests.conftest import WAIT_S, Fleet, run_gozen, wait_until
from tests.outage.observatory import (
    AUTH,
    HOST,
    TICKER,
    WHOLE,
    Checks,
    Event,
    Services,
    add_feed_object,
    engine_of,
    events_between,
    exited,
    expose,
    exposure_states,
    pids,
    recipe,
    recipe_exposures,
    stale_heartbeats,
    submit_recipe,
    wait_flowing,
    web_get,
)

OUTAGE_S = 30.0
RECOVERY_S = 180.0  # a deadline, not a wait: the checks end as soon as everything holds
RECIPE_WAIT_S = 15  # the recipe's wait step: the database goes in its middle, its exposure is asked for after
NEW_OBJECT = "2026 OUT1"  # a close approach the feed lists only after the outage
AFTER_UP_S = 10.0  # a program may still be in a pass that failed as the database came back
# The database goes this long after an exposure is armed: the worst moment, when some DAQ programs
# may have learnt of it and others not yet.
ARMED_FOR_S = 0.1
ENDED = ("done", "incomplete", "failed")  # an exposure in one of these states is as it will stay


@dataclass
class Outage:
    what: str
    begin: Callable[[], None]
    end: Callable[[], None]
    reads_fail: bool  # nothing can be read either (PostgreSQL stopped): the web must answer 503


@dataclass
class Window:
    down_at: datetime
    up_at: datetime
    action_at: datetime | None = None  # when work:ticker was restarted (from the web, else XML-RPC)


def survive(fleet: Fleet, services: Services, outage: Outage) -> Checks:
    """Run the whole scenario; the checks that failed (the caller asserts none)."""
    wait_flowing(fleet, services)
    before = pids(fleet)
    steps: list[dict[str, Any]] = [
        {"wait": {"seconds": RECIPE_WAIT_S}},
        {"expose": {"object": "OUTAGE-RECIPE", "frames": 4, "fps": 2, "count": 1}},
    ]
    uuid = submit_recipe(fleet, "Queue-Observer OUTAGE", steps)
    wait_until(
        lambda: (d := recipe(fleet, uuid))["state"] == "executing" and d["progress"].get("step", 0) >= 1,
        2 * WAIT_S,
        0.2,
        "the recipe waiting before its exposure",
        fleet.dump,
    )
    queued = expose(fleet, "OUTAGE-PRE", frames=8, count_=3)  # the DAQ at work as the database goes
    engine = engine_of(fleet)
    wait_until(
        lambda: any(s[0] == "armed" for s in exposure_states(engine, queued).values()),
        2 * WAIT_S,
        0.01,
        "an exposure armed",
        fleet.dump,
    )
    time.sleep(ARMED_FOR_S)
    checks = Checks()
    window = Window(utcnow(), utcnow())
    t0 = time.monotonic()
    outage.begin()
    try:
        while_away(fleet, outage, checks, window, t0)
    finally:
        outage.end()
        window.up_at = utcnow()
    add_feed_object(services, NEW_OBJECT)
    after_outage(fleet, services, checks, window, uuid, queued)
    checks.wait(RECOVERY_S, fleet.dump)
    checks.final("0 programs exited (supervisord's pids unchanged)", lambda: "; ".join(exited(fleet, before)) or None)
    audit(fleet, checks)
    checks.final("no program finds the database away once it is back", lambda: away_again(fleet, window))
    print(summary(fleet, window, uuid))  # shown by `pytest -rP`: what the outage looked like
    return checks


def while_away(fleet: Fleet, outage: Outage, checks: Checks, window: Window, t0: float) -> None:
    """What users do during the outage, and what they must see."""
    try:
        web_answers(fleet, outage, checks, t0)
    except httpx.HTTPError as err:
        checks.fail(f"the web during the outage: {type(err).__name__}: {err}")
    restart_ticker(fleet, checks, window)
    cli_says_one_line(fleet, checks, "daq", "expose", "--object", "DURING", "--frames", "4", "--no-wait")
    if outage.reads_fail:
        cli_says_one_line(fleet, checks, "transfer", "status")
    while time.monotonic() - t0 < OUTAGE_S:
        fleet.check_alive()
        time.sleep(0.5)


def web_answers(fleet: Fleet, outage: Outage, checks: Checks, t0: float) -> None:
    """/api/data says 503 with its JSON reason once the web meets the outage; pages never a 500."""
    seen = []
    while True:
        r = web_get(fleet, "/api/data")
        seen.append(r.status_code)
        if r.status_code == 503 or time.monotonic() > t0 + OUTAGE_S / 2:
            break
        time.sleep(0.5)
    body = _json(r)
    if outage.reads_fail:
        if r.status_code != 503 or body.get("error") != "database unavailable":
            checks.fail(f"GET /api/data during the outage: {r.status_code} {r.text[:300]!r} (statuses seen {seen})")
        elif not isinstance(body.get("retry_after_s"), int | float) or body["retry_after_s"] <= 0:
            checks.fail(f"GET /api/data during the outage: retry_after_s missing or not > 0: {body}")
    elif r.status_code not in (200, 503):
        checks.fail(f"GET /api/data with the database unwritable: {r.status_code} {r.text[:300]!r}")
    page = web_get(fleet, "/data")
    if page.status_code >= 500 and page.status_code != 503 or "Traceback" in page.text:
        checks.fail(f"GET /data during the outage: {page.status_code} {page.text[:300]!r}")
    elif outage.reads_fail and "database" not in page.text.lower():
        checks.fail(f"GET /data during the outage: no banner naming the database: {page.text[:300]!r}")


def restart_ticker(fleet: Fleet, checks: Checks, window: Window) -> None:
    """An operator restarts a program from the web: supervisord's events and the action's own
    event must reach the events table later, with their times."""
    window.action_at = utcnow()
    try:
        r = httpx.post(f"{fleet.web_url}/api/processes/{HOST}/{TICKER}/restart", auth=AUTH, timeout=60)
        if r.status_code == 200:
            return
        if r.status_code != 503:
            checks.fail(f"POST restart {TICKER} during the outage: {r.status_code} {r.text[:300]!r} (not 200 or 503)")
    except httpx.HTTPError as err:
        checks.fail(f"POST restart {TICKER} during the outage: {type(err).__name__}: {err}")
    window.action_at = None  # refused, so not carried out: restart it behind the web's back
    fleet.client(HOST).act("restart", TICKER)


def cli_says_one_line(fleet: Fleet, checks: Checks, *args: str) -> None:
    r = run_gozen(fleet, *args, timeout_s=120)
    text = (r.stdout + r.stderr).strip()
    if r.returncode != 1 or len(text.splitlines()) != 1 or "Traceback" in text:
        checks.fail(f"`gozen {' '.join(args)}` during the outage: exit {r.returncode}, {text[-600:]!r}")


def after_outage(
    fleet: Fleet, services: Services, checks: Checks, window: Window, uuid: str, queued: list[int]
) -> None:
    engine = engine_of(fleet)

    def recipe_exposure_written() -> str | None:
        d = recipe(fleet, uuid)
        if d["state"] in ("failed", "aborted", "cancelled"):
            checks.give_up(f"the recipe ended {d['state']}: {d['history'][-3:]}")
        ids = recipe_exposures(engine, uuid)
        states = exposure_states(engine, ids)
        if any(s[0] in ENDED and s != WHOLE for s in states.values()):
            checks.give_up(f"(state, files, frames missing): {states}")
        if d["state"] != "done" or not ids or any(s != WHOLE for s in states.values()):
            return f"recipe {d['state']} at {d['progress']}, exposures {states}"
        return None

    def queued_written() -> str | None:
        states = exposure_states(engine, sorted(set(queued) | set(in_flight(engine, window))))
        if any(s[0] in ENDED and s != WHOLE for s in states.values()):
            checks.give_up(f"(state, files, frames missing): {states}")
        bad = {i: s for i, s in states.items() if s != WHOLE}
        return f"(state, files, frames missing): {bad}" if bad else None

    def outage_events() -> str | None:
        seen = events_between(engine, window.down_at, window.up_at)
        if not any(e.kind == "database_unavailable" for e in seen):
            return f"no database_unavailable event timed inside the outage; inside it: {_kinds(seen)}"
        return None

    def supervisord_events() -> str | None:
        at = window.action_at or window.down_at
        seen = [e for e in events_between(engine, at - timedelta(seconds=1), window.up_at) if e.subject == TICKER]
        if not any(e.kind == "process_state" and "RUNNING" in e.message.upper() for e in seen):
            return f"{TICKER}'s restart not in the events with a time inside the outage: {_kinds(seen)}"
        if window.action_at and not any(e.kind == "process_action" for e in seen):
            return "the web's restart (answered 200) has no process_action event timed inside the outage"
        return None

    def feed_posted() -> str | None:
        return None if any(NEW_OBJECT in p for p in services.slack_payloads()) else "not posted yet"

    checks.add("the exposure the recipe asked for during the outage is written", recipe_exposure_written)
    checks.add("the exposures queued, armed or taken as the database went are written whole", queued_written)
    checks.add("events of the outage are in the events table with their real times", outage_events)
    checks.add("supervisord's events during the outage are in the events table with their times", supervisord_events)
    checks.add("the couriers read and post after the outage", feed_posted)
    checks.add("the events spooled during the outage are written", lambda: spool_left(fleet))
    checks.add("no program's heartbeat is stale after the outage", lambda: stale_heartbeats(fleet))


def in_flight(engine: Engine, window: Window) -> list[int]:
    """Exposures queued or armed when the database went, or taken during the outage (none is
    longer than 10 s here)."""
    q = select(exposures.c.exp_id).where(
        exposures.c.requested_at <= window.up_at,
        or_(exposures.c.start_at.is_(None), exposures.c.start_at >= window.down_at - timedelta(seconds=10)),
    )
    with engine.connect() as conn:
        return [int(i) for i in conn.execute(q).scalars()]


def spool_left(fleet: Fleet) -> str | None:
    """Events, file rows and readout reports kept in data_dir/spool while the database was away."""
    spool = fleet.cfg.data_dir / "spool"
    left = {p.name for p in spooled(spool)} | {p.name for p in spool.glob("*") if p.is_file() and p.stat().st_size}
    return f"still spooled: {sorted(left)}" if left else None


def away_again(fleet: Fleet, window: Window) -> str | None:
    """database_unavailable events timed after the database came back: a program that cannot use
    it although it answers (e.g. a connection opened during the outage that stays read-only)."""
    since = window.up_at + timedelta(seconds=AFTER_UP_S)
    late = [e for e in events_between(engine_of(fleet), since, utcnow()) if e.kind == "database_unavailable"]
    return "; ".join(f"{e.time:%H:%M:%S} {e.source}: {e.message}" for e in late[:10]) or None


def audit(fleet: Fleet, checks: Checks) -> None:
    """`gozen audit` reports 0 lost (and exits 0: every file has its verified copies, or will soon)."""

    def clean() -> str | None:
        r = run_gozen(fleet, "audit", timeout_s=300)
        lost = next((line for line in r.stdout.splitlines() if line.strip().startswith("files lost")), None)
        if lost is None or lost.split()[-1] != "0":
            checks.give_up(f"gozen audit: {lost!r}\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
        return None if r.returncode == 0 else f"exit {r.returncode}:\n{r.stdout[-1500:]}{r.stderr[-800:]}"

    checks.add("gozen audit reports 0 lost and exits 0", clean)
    checks.wait(2 * WAIT_S, fleet.dump)


def summary(fleet: Fleet, window: Window, uuid: str) -> str:
    """The outage as the events table and the catalog tell it."""
    engine = engine_of(fleet)
    inside = events_between(engine, window.down_at, window.up_at)
    told = sorted({e.source for e in inside if e.kind == "database_unavailable"})
    daq_events = [e for e in events_between(engine, window.down_at, utcnow()) if e.source.startswith("daq:")]
    daq_events = [e for e in daq_events if not e.kind.startswith("database_")]
    with engine.connect() as conn:
        q = select(exposures.c.exp_id, exposures.c.requested_at, exposures.c.start_at).where(
            exposures.c.recipe_uuid == uuid
        )
        asked = [f"exp {i} requested {r:%H:%M:%S}, start {s and f'{s:%H:%M:%S}'}" for i, r, s in conn.execute(q).all()]
    return "\n".join(
        [
            f"outage {window.down_at:%H:%M:%S.%f} .. {window.up_at:%H:%M:%S.%f}",
            f"{len(inside)} events timed inside it: {_kinds(inside)}",
            f"database_unavailable told by {len(told)} programs: {', '.join(told)}",
            f"the recipe's exposures: {asked}",
            *(f"{e.time:%H:%M:%S} {e.source} {e.kind}: {e.message}" for e in daq_events),
        ]
    )


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _kinds(seen: list[Event]) -> str:
    return ", ".join(sorted({f"{e.source}/{e.kind}" for e in seen})) or "none"
