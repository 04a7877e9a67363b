"""The program skeleton: a bad pass, a database that goes away, a stop signal, a heartbeat."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, exc, select

from gozen.config import Config, parse_config
from gozen.db.events import flush_spool, recent_events, spooled, use_spool
from gozen.db.migrate import upgrade
from gozen.db.tables import events
from gozen.monitors.board import heartbeat_key, snapshot
from gozen.service import Context, Service, make_context, run_service
from tests.conftest import wait_until


@pytest.fixture
def cfg(tmp_path: Path) -> Iterator[Config]:
    c = parse_config({"data_dir": str(tmp_path / "var")}, base_dir=tmp_path)
    yield c
    use_spool(None)


@pytest.fixture
def ctx(cfg: Config) -> Context:
    c = make_context(cfg, "test:prog", host="h1")
    upgrade(c.engine)
    return c


class Outage:
    """Make every new database connection (and every statement) of an engine fail while `on`."""

    def __init__(self, engine: Engine) -> None:
        self.on = False
        event.listen(engine, "do_connect", self._refuse)
        event.listen(engine, "before_cursor_execute", self._refuse_statement)

    def _refuse(self, *_: Any) -> None:
        if self.on:
            raise exc.OperationalError("connect", {}, Exception("connection refused (test outage)"))

    def _refuse_statement(self, *_: Any) -> None:
        if self.on:
            raise exc.OperationalError("statement", {}, Exception("server closed the connection (test outage)"))


def run_in_thread(service: Service) -> threading.Thread:
    t = threading.Thread(target=run_service, args=(service,), daemon=True)
    t.start()
    return t


def kinds(engine: Engine) -> list[str]:
    return [e.kind for e in reversed(recent_events(engine, 200))]


class Flaky(Service):
    """Fails passes 2 and 3 with a bug, then works."""

    period_s = 0.05

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.passes = 0

    def run_once(self) -> None:
        self.passes += 1
        if self.passes in (2, 3):
            raise ZeroDivisionError(f"pass {self.passes} divided by zero")


def test_a_failing_pass_is_told_once_and_the_next_pass_runs(ctx: Context) -> None:
    svc = Flaky(ctx)
    t = run_in_thread(svc)
    try:
        wait_until(lambda: "pass_ok" in kinds(ctx.engine), what="pass_ok event")
        wait_until(lambda: svc.passes >= 6, what="passes after the failures")
    finally:
        ctx.stop.set()
        t.join(30)
    assert not t.is_alive()
    assert kinds(ctx.engine).count("pass_failed") == 1, kinds(ctx.engine)
    failed = recent_events(ctx.engine, kind="pass_failed")[0]
    assert failed.source == "test:prog" and "ZeroDivisionError: pass 2 divided by zero" in failed.message
    assert kinds(ctx.engine).count("pass_ok") == 1


class Counter(Service):
    period_s = 0.05

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.done = 0

    def run_once(self) -> None:
        self.ctx.event("counted", "counter", f"pass {self.done}")
        with self.ctx.engine.connect() as conn:
            conn.execute(select(events.c.id).limit(1))
        self.done += 1


def test_a_database_outage_is_waited_out_and_its_events_keep_their_time(ctx: Context) -> None:
    outage = Outage(ctx.engine)
    svc = Counter(ctx)
    t = run_in_thread(svc)
    try:
        wait_until(lambda: svc.done >= 2, what="passes before the outage")
        ctx.engine.dispose()
        outage.on = True
        wait_until(lambda: spooled(), what="an event spooled during the outage")
        spooled_during = svc.done
        outage.on = False
        wait_until(lambda: "database_back" in kinds(ctx.engine), what="database_back event")
        wait_until(lambda: svc.done > spooled_during + 2, what="passes after the outage")
    finally:
        ctx.stop.set()
        t.join(30)
    assert t.is_alive() is False
    seen = kinds(ctx.engine)
    assert seen.count("database_unavailable") == 1 and seen.count("database_back") == 1, seen
    down = recent_events(ctx.engine, kind="database_unavailable")[0]
    back = recent_events(ctx.engine, kind="database_back")[0]
    assert down.id < back.id and down.time < back.time  # written late, stamped when it happened
    assert down.source == "test:prog" and "connection refused" in down.message
    assert not spooled()


def test_spooled_events_survive_their_program_and_are_written_once(ctx: Context, cfg: Config) -> None:
    outage = Outage(ctx.engine)
    outage.on = True
    ctx.event("seen_in_the_dark", "x", "one")
    ctx.event("seen_in_the_dark", "x", "two")
    outage.on = False
    assert len(spooled()) == 1
    other = make_context(cfg, "test:other", host="h1")  # another program of the host writes them
    assert flush_spool(other.engine) == 2
    assert flush_spool(other.engine) == 0
    assert [e.message for e in recent_events(ctx.engine, kind="seen_in_the_dark")] == ["two", "one"]


def test_heartbeat_is_on_the_board_without_history(ctx: Context) -> None:
    svc = Counter(ctx)
    t = run_in_thread(svc)
    key = heartbeat_key("h1", "test:prog")
    try:
        wait_until(lambda: key in snapshot(ctx.engine, "service.").values, what="heartbeat")
    finally:
        ctx.stop.set()
        t.join(30)
    value = snapshot(ctx.engine, "service.").values[key]
    assert not value.stale and value.source == "test:prog"


def test_sigterm_finishes_the_pass_and_exits_0(tmp_path: Path) -> None:
    marker = tmp_path / "torn-down"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from gozen.config import parse_config
        from gozen.db.migrate import upgrade
        from gozen.service import Service, make_context, run_service

        class Slow(Service):
            period_s = 0.1
            def run_once(self):
                print("pass", flush=True)
                time.sleep(0.5)
            def teardown(self):
                Path({str(marker)!r}).write_text("ok")

        ctx = make_context(parse_config({{"data_dir": {str(tmp_path / "var")!r}}}), "test:slow", host="h1")
        upgrade(ctx.engine)
        sys.exit(run_service(Slow(ctx)))
        """
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "pass"
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 0
    assert marker.read_text() == "ok"
