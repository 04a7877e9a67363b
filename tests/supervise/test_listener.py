"""The event listener records every process state change; a crash is an error event."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError

from gozen.config import parse_config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events, spooled, use_spool
from gozen.db.migrate import upgrade
from gozen.db.types import utcnow
from gozen.monitors.board import heartbeat_key, snapshot
from gozen.service import Context
from gozen.supervise import listener as listener_module
from gozen.supervise.listener import describe_state_change, run_listener
from tests.conftest import WAIT_S, Fleet, wait_until


def test_a_program_that_exits_unexpectedly_is_recorded_as_an_error(fleet: Fleet) -> None:
    engine = make_engine(fleet.cfg.database_url)
    fleet.client("buf-node1").act("start", "work:crasher")  # exits with code 3 after 1 s
    fleet.wait_state("buf-node1", "work:crasher", "EXITED")

    def crash_event():  # type: ignore[no-untyped-def]
        return [
            e
            for e in recent_events(engine, 200, kind="process_exited")
            if e.host == "buf-node1" and e.subject == "work:crasher"
        ]

    [event] = wait_until(crash_event, WAIT_S, what="the process_exited event", dump=fleet.dump)
    assert event.severity == "error" and event.source == "supervisord"
    assert "work:crasher exited unexpectedly" in event.message
    assert event.data and event.data["expected"] == "0" and event.data["from_state"] == "RUNNING"


def test_ordinary_changes_are_info_events_from_every_live_host(fleet: Fleet) -> None:
    engine = make_engine(fleet.cfg.database_url)
    events = recent_events(engine, 500, kind="process_state")
    running = {(e.host, e.subject) for e in events if "is running" in e.message}
    for host in ("daq-master", "buf-node0", "buf-node1"):
        assert (host, "work:ticker") in running
    assert not any(e.host == "buf-node2" for e in events)


HEADER = "ver:3.0 server:s serial:{serial} pool:p poolserial:1 eventname:PROCESS_STATE_RUNNING len:{n}\n"
BODY = "processname:a groupname:g from_state:STARTING pid:42"


def _event(serial: int = 1) -> str:
    return HEADER.format(serial=serial, n=len(BODY)) + BODY


def _ctx(tmp_path: Path, engine: Engine) -> Context:
    return Context(parse_config({"data_dir": str(tmp_path)}), "h", engine, "supervise:events")


@pytest.fixture
def no_spool() -> Iterator[None]:
    use_spool(None)
    yield
    use_spool(None)


def test_an_event_that_cannot_be_stored_is_answered_fail_so_supervisord_resends(tmp_path: Path, no_spool: None) -> None:
    no_table = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no migrations, no spool: nowhere to keep it
    out = io.StringIO()
    run_listener(_ctx(tmp_path, no_table), io.StringIO(_event()), out, max_backoff_s=0.01)
    assert out.getvalue() == "READY\nRESULT 4\nFAILREADY\n"

    migrated = make_engine(f"sqlite:///{tmp_path / 'ok.db'}")
    upgrade(migrated)
    out = io.StringIO()
    run_listener(_ctx(tmp_path, migrated), io.StringIO(_event()), out)
    assert out.getvalue() == "READY\nRESULT 2\nOKREADY\n"
    [e] = recent_events(migrated)
    assert (e.host, e.subject, e.message) == ("h", "g:a", "g:a is running (was STARTING, pid 42)")


def test_an_event_read_while_the_database_is_away_is_spooled_answered_ok_and_written_later_with_its_time(
    tmp_path: Path, no_spool: None
) -> None:
    use_spool(tmp_path / "spool")
    away = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'gozen.db'}")  # cannot be opened
    before = utcnow()
    out = io.StringIO()
    run_listener(_ctx(tmp_path, away), io.StringIO(_event(1)), out, max_backoff_s=0.01)
    assert out.getvalue() == "READY\nRESULT 2\nOKREADY\n"
    assert spooled()

    back = make_engine(f"sqlite:///{tmp_path / 'ok.db'}")
    upgrade(back)
    time.sleep(0.05)
    run_listener(_ctx(tmp_path, back), io.StringIO(_event(2)), io.StringIO())  # the next event finds it back
    events = recent_events(back)
    assert len(events) == 2 and not spooled()
    first = min(events, key=lambda e: e.time)
    assert first.data and first.data["pid"] == "42"
    assert abs((_aware(first.time) - before).total_seconds()) < 0.05  # the time it was read, not written


def test_a_resent_event_keeps_the_time_it_was_first_read(
    tmp_path: Path, no_spool: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ok.db'}")
    upgrade(engine)
    ctx = _ctx(tmp_path, engine)
    fails = iter([True, False])
    real_insert = listener_module.record_event

    def flaky(*args: Any, **kw: Any) -> int | None:
        if next(fails):
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real_insert(*args, **kw)

    monkeypatch.setattr(listener_module, "record_event", flaky)
    out = io.StringIO()
    before = utcnow()
    run_listener(ctx, io.StringIO(_event(7) + _event(7)), out, max_backoff_s=0.2)
    assert out.getvalue() == "READY\nRESULT 4\nFAILREADY\nRESULT 2\nOKREADY\n"
    [e] = recent_events(engine)
    assert abs((_aware(e.time) - before).total_seconds()) < 0.1  # not after the 0.2 s wait


def test_a_tick_is_a_heartbeat_and_writes_what_was_spooled(tmp_path: Path, no_spool: None) -> None:
    use_spool(tmp_path / "spool")
    away = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'gozen.db'}")
    run_listener(_ctx(tmp_path, away), io.StringIO(_event(1)), io.StringIO(), max_backoff_s=0.01)
    assert spooled()

    back = make_engine(f"sqlite:///{tmp_path / 'ok.db'}")
    upgrade(back)
    tick = "ver:3.0 server:s serial:2 pool:p poolserial:2 eventname:TICK_60 len:15\nwhen:1700000000"
    out = io.StringIO()
    run_listener(_ctx(tmp_path, back), io.StringIO(tick), out)
    assert out.getvalue() == "READY\nRESULT 2\nOKREADY\n"
    assert not spooled() and [e.subject for e in recent_events(back)] == ["g:a"]
    beat = snapshot(back, "service.")
    assert beat.get(heartbeat_key("h", "supervise:events")) is not None


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def test_expected_exit_and_fatal_are_told_apart() -> None:
    ok = describe_state_change("PROCESS_STATE_EXITED", {"processname": "a", "groupname": "g", "expected": "1"})
    fatal = describe_state_change("PROCESS_STATE_FATAL", {"processname": "a", "groupname": "g"})
    assert (ok["kind"], ok["severity"]) == ("process_state", "info")
    assert (fatal["severity"], fatal["message"]) == ("error", "g:a could not be started (FATAL) (was ?)")
