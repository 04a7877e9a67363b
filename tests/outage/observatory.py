"""The simulated observatory under `gozen up`, and what the outage tests look at in it.

One host runs every role (DAQ, copies, archive, monitors, queue, couriers, web) on a small
camera, with a feed and a Slack stand-in on 127.0.0.1, and an extra program `work:ticker`
the tests restart to make supervisord events at a known time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import Engine, func, select

from gozen.config import Site
from gozen.db.engine import make_engine
from gozen.db.tables import daq_files, events, exposures, replicas
from gozen.monitors.board import snapshot
from gozen.sky import zenith_radec
from tests.conftest import (
    OPERATOR,
    START_S,
    Fleet,
    free_port,
    run_gozen,
    start_fleet,
    ticker,
    wait_until,
)
from tests.couriers.test_couriers import DATA as FEEDS
from tests.couriers.test_couriers import Server

HOST = "obs"
CHIPS = [111, 112]
AUTH = httpx.BasicAuth(*OPERATOR)
TICKER = "work:ticker"  # not gozen's: restarted by the tests, so its pid may change


@dataclass
class Services:
    """The outside world the couriers talk to: a feed server and Slack."""

    slack: Server
    feeds: Server

    def slack_payloads(self) -> list[str]:
        return [json.dumps(p) for p in self.slack.received]  # type: ignore[attr-defined]


def start_observatory(tmp: Path, database_url: str | None, services: Services) -> Fleet:
    """`gozen up` of the simulated observatory (every role on one host), every program RUNNING."""
    alpaca = f"127.0.0.1:{free_port()}"
    host = {
        "name": HOST,
        "supervisor": {"port": free_port()},
        "programs": [{"group": "work", "name": "ticker", "command": ticker("ticker")}],
    }
    extra: dict[str, Any] = {
        "camera": {"chips": CHIPS, "width_px": 100, "height_px": 50},
        # A lead time and frame timeout for a machine with both cores busy (see tests/queue/test_live.py).
        "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 3.0, "frame_timeout_s": 20},
        "transfer": {
            "pop_workers": 1,
            "node_reserve_bytes": 0,
            "poll_s": 0.5,
            "scan_every_s": 5,
            "retry_base_s": 1,
            "retry_max_s": 5,
            "janitor_every_s": 10,
            "retention_every_s": 10,
        },
        "archive": {"dest": "archive", "min_age_s": 5, "every_s": 5},
        "monitors": {
            "every_s": 3,
            "df_every_s": 5,
            "start_grace_s": 20,
            "telescope": {"address": alpaca},
            "weather": {"address": alpaca},
            "safety_monitor": {"address": alpaca},
            "simulator": {"dome_shutter_s": 3},
            "gpsd": {"port": free_port()},
        },
        # The demo survey stays on: exposures flow by themselves. An outage with no safety news past
        # start_grace_s closes the dome: it opens again by itself.
        "queue": {"poll_s": 0.5, "auto_open": True, "reopen_after_safe_s": 0},
        "notifiers": [{"name": "tomoe-slack", "kind": "slack", "url": f"{services.slack.url}/services/T0/B0/x"}],
        "couriers": {"cneos": {"url": f"{services.feeds.url}/cneos-cad.json", "every_s": 2}, "send_every_s": 0.5},
    }
    if database_url:
        extra["database"] = {"url": database_url}
    fleet = start_fleet(tmp, [host], down=[], web_port=free_port(), extra=extra)
    try:
        wait_until(lambda: not_running(fleet) == [], START_S, 0.5, "every program RUNNING", dump=fleet.dump)
    except BaseException:
        fleet.stop()
        raise
    return fleet


# -- supervisord's view -----------------------------------------------------------------------------
def programs(fleet: Fleet) -> dict[str, tuple[str, int]]:
    """Every program of the host: state and pid, as supervisord says (XML-RPC)."""
    fleet.check_alive()
    status = fleet.client(HOST).status()
    if not status.reachable:
        raise ConnectionError(f"supervisord: {status.error}")
    return {p.full_name: (p.state, p.pid) for p in status.processes}


def not_running(fleet: Fleet) -> list[str]:
    return [f"{name} {state}" for name, (state, _) in programs(fleet).items() if state != "RUNNING"]


def pids(fleet: Fleet) -> dict[str, int]:
    """The pid of every gozen program (all RUNNING, else the test cannot start)."""
    progs = programs(fleet)
    bad = {n: s for n, (s, _) in progs.items() if s != "RUNNING"}
    assert not bad, f"not RUNNING: {bad}"
    return {n: pid for n, (_, pid) in progs.items() if n != TICKER}


def exited(fleet: Fleet, before: dict[str, int]) -> list[str]:
    """Programs whose process is not the one that ran before (it exited, and maybe was restarted)."""
    now = programs(fleet)
    return [
        f"{n}: pid {pid} -> {now[n][1] if n in now else 'gone'} ({now[n][0] if n in now else '?'})"
        for n, pid in before.items()
        if n not in now or now[n] != ("RUNNING", pid)
    ]


# -- the database's view ----------------------------------------------------------------------------
def engine_of(fleet: Fleet) -> Engine:
    return make_engine(fleet.cfg.database_url)


def count(engine: Engine, q: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def flowing(fleet: Fleet, services: Services) -> str | None:
    """What is not flowing yet: exposures written, copies verified, the feed posted to Slack."""
    engine = engine_of(fleet)
    missing = []
    if not count(engine, select(func.count()).select_from(exposures).where(exposures.c.state == "done")):
        missing.append("an exposure done")
    if not count(engine, select(func.count()).select_from(replicas).where(replicas.c.verified_at.is_not(None))):
        missing.append("a verified copy")
    if not any("CNEOS" in p for p in services.slack_payloads()):
        missing.append("the CNEOS feed on Slack")
    return ", ".join(missing) or None


def wait_flowing(fleet: Fleet, services: Services) -> None:
    # An exposure of our own at once: the demo survey's first one waits for the first safe weather.
    r = run_gozen(fleet, "daq", "expose", "--object", "WARMUP", "--frames", "4", "--no-wait")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_until(lambda: flowing(fleet, services) is None, START_S, 1.0, "exposures, copies and couriers", fleet.dump)


WHOLE = ("done", len(CHIPS), 0)  # an exposure written whole: every chip's file, no frame missing


def exposure_states(engine: Engine, ids: list[int]) -> dict[int, tuple[str, int, int]]:
    """exp_id -> (state, files written, frames missing from them); WHOLE when nothing was lost."""
    with engine.connect() as conn:
        states: dict[int, str] = dict(
            conn.execute(select(exposures.c.exp_id, exposures.c.state).where(exposures.c.exp_id.in_(ids))).all()
        )
        files = {
            int(i): (int(n), int(missing or 0))
            for i, n, missing in conn.execute(
                select(daq_files.c.exp_id, func.count(), func.sum(daq_files.c.frames_missing))
                .where(daq_files.c.exp_id.in_(ids), daq_files.c.state == "written")
                .group_by(daq_files.c.exp_id)
            ).all()
        }
    return {i: (str(states.get(i)), *files.get(i, (0, 0))) for i in ids}


def recipe_exposures(engine: Engine, uuid: str) -> list[int]:
    with engine.connect() as conn:
        q = select(exposures.c.exp_id).where(exposures.c.recipe_uuid == uuid)
        return [int(i) for i in conn.execute(q).scalars()]


@dataclass(frozen=True)
class Event:
    id: int
    time: datetime
    source: str
    kind: str
    subject: str
    message: str


def events_between(engine: Engine, since: datetime, until: datetime) -> list[Event]:
    q = select(events).where(events.c.time >= since, events.c.time <= until).order_by(events.c.id)
    with engine.connect() as conn:
        return [Event(r.id, r.time, r.source, r.kind, r.subject, r.message) for r in conn.execute(q)]


def events_since(engine: Engine, after_id: int) -> list[Event]:
    q = select(events).where(events.c.id > after_id).order_by(events.c.id)
    with engine.connect() as conn:
        return [Event(r.id, r.time, r.source, r.kind, r.subject, r.message) for r in conn.execute(q)]


def last_event_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())


def heartbeats(fleet: Fleet) -> dict[str, datetime]:
    """program -> when it last said it was alive (`service.<host>.<group:name>.alive_at`)."""
    prefix = f"service.{HOST}."
    board = snapshot(engine_of(fleet), prefix).values
    return {k.removeprefix(prefix).removesuffix(".alive_at"): datetime.fromisoformat(v.time) for k, v in board.items()}


def silent_since(fleet: Fleet, since: datetime, programs_: list[str]) -> str | None:
    """Those of `programs_` that have not said they are alive since `since`."""
    beats = heartbeats(fleet)
    silent = [p for p in programs_ if p not in beats or beats[p] <= since]
    return "; ".join(f"{p} (last {beats[p]:%H:%M:%S})" if p in beats else f"{p} (none)" for p in silent) or None


def stale_heartbeats(fleet: Fleet) -> str | None:
    """Programs whose heartbeat is older than its own limit (a few periods): hung, or stopped."""
    prefix = f"service.{HOST}."
    board = snapshot(engine_of(fleet), prefix).values
    return "; ".join(f"{k.removeprefix(prefix)} since {v.time}" for k, v in sorted(board.items()) if v.stale) or None


# -- asking for work ----------------------------------------------------------------------------------
def expose(fleet: Fleet, obj: str, frames: int, count_: int = 1) -> list[int]:
    """`gozen daq expose --no-wait`: the ids it queued."""
    r = run_gozen(fleet, "daq", "expose", "--object", obj, "--frames", str(frames), "--count", str(count_), "--no-wait")
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"queued exposures (\d+)\.\.(\d+)", r.stdout)
    assert m, r.stdout
    return list(range(int(m.group(1)), int(m.group(2)) + 1))


def submit_recipe(fleet: Fleet, name: str, steps: list[dict[str, Any]]) -> str:
    """A recipe pointing near the zenith first (high priority: it runs after the current demo field)."""
    ra, dec = zenith_radec(Site(), datetime.now(UTC) + timedelta(minutes=2))
    body = {
        "name": name,
        "priority": "high",
        "constraints": {"min_alt_deg": 20},
        "steps": [{"slew": {"ra_deg": round(ra, 4), "dec_deg": round(dec - 5, 4)}}, *steps],
    }
    r = httpx.post(f"{fleet.web_url}/api/recipes", content=yaml.safe_dump(body), auth=AUTH, timeout=60)
    assert r.status_code == 201, r.text
    return str(r.json()["uuid"])


def recipe(fleet: Fleet, uuid: str) -> dict[str, Any]:
    r = httpx.get(f"{fleet.web_url}/api/recipes/{uuid}", timeout=30)
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


# -- the check-list ---------------------------------------------------------------------------------
class GiveUp(Exception):
    """A check that can no longer hold (the recipe failed, a file was lost): stop waiting for it."""


@dataclass
class Checks:
    """Conditions waited for together until one deadline; what fails is reported in one go, so
    one run of a slow test says everything that is still wrong."""

    pending: dict[str, Callable[[], str | None]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, what: str, check: Callable[[], str | None]) -> None:
        """`check` returns None once `what` holds, else why not yet; it calls `give_up` if never."""
        self.pending[what] = check

    def fail(self, problem: str) -> None:
        self.problems.append(problem)

    def give_up(self, why: str) -> None:
        raise GiveUp(why)

    def final(self, what: str, check: Callable[[], str | None]) -> None:
        """A condition looked at once, now."""
        why = check()
        if why is not None:
            self.fail(f"{what}: {why}")

    def wait(self, timeout_s: float, dump: Callable[[], str]) -> None:
        last: dict[str, str] = {}

        def all_hold() -> bool:
            for what, check in list(self.pending.items()):
                try:
                    why = check()
                except GiveUp as err:
                    self.fail(f"{what}: {err}")
                    del self.pending[what]
                    continue
                except Exception as err:  # noqa: BLE001 - a look that failed is "not yet"
                    why = f"{type(err).__name__}: {err}"
                if why is None:
                    del self.pending[what]
                else:
                    last[what] = why
            return not self.pending

        try:
            wait_until(all_hold, timeout_s, 1.0, "recovery")
        except AssertionError:
            self.problems += [f"{what}: {last.get(what, '?')} (after {timeout_s:g} s)" for what in self.pending]
            self.pending.clear()
            self.problems.append(dump())

    def assert_none(self) -> None:
        assert not self.problems, "\n".join(["what still fails:", *self.problems])


def web_get(fleet: Fleet, path: str) -> httpx.Response:
    return httpx.get(f"{fleet.web_url}{path}", timeout=30)


FEED_PATH = "/cneos-cad.json"


def add_feed_object(services: Services, designation: str) -> None:
    """The CNEOS feed lists one more close approach from now on."""
    data = json.loads((FEEDS / "cneos-cad.json").read_text())
    row = list(data["data"][-1])
    row[0] = designation
    data["data"].append(row)
    data["count"] = str(len(data["data"]))
    services.feeds.override[FEED_PATH] = json.dumps(data).encode()  # type: ignore[attr-defined]
