"""The event listener records every process state change; a crash is an error event."""

from __future__ import annotations

import io
from pathlib import Path

from sqlalchemy import create_engine

from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
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


def test_an_event_that_cannot_be_written_is_answered_fail_so_supervisord_resends(tmp_path: Path) -> None:
    header = "ver:3.0 server:s serial:1 pool:p poolserial:1 eventname:PROCESS_STATE_RUNNING len:{n}\n"
    body = "processname:a groupname:g from_state:STARTING pid:42"
    stdin = io.StringIO(header.format(n=len(body)) + body)

    no_table = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no migrations: the insert fails
    out = io.StringIO()
    run_listener(no_table, "h", stdin=stdin, stdout=out, max_backoff_s=0.01)
    assert out.getvalue() == "READY\nRESULT 4\nFAILREADY\n"

    migrated = make_engine(f"sqlite:///{tmp_path / 'ok.db'}")
    upgrade(migrated)
    out = io.StringIO()
    run_listener(migrated, "h", stdin=io.StringIO(header.format(n=len(body)) + body), stdout=out)
    assert out.getvalue() == "READY\nRESULT 2\nOKREADY\n"
    [e] = recent_events(migrated)
    assert (e.host, e.subject, e.message) == ("h", "g:a", "g:a is running (was STARTING, pid 42)")


def test_expected_exit_and_fatal_are_told_apart() -> None:
    ok = describe_state_change("PROCESS_STATE_EXITED", {"processname": "a", "groupname": "g", "expected": "1"})
    fatal = describe_state_change("PROCESS_STATE_FATAL", {"processname": "a", "groupname": "g"})
    assert (ok["kind"], ok["severity"]) == ("process_state", "info")
    assert (fatal["severity"], fatal["message"]) == ("error", "g:a could not be started (FATAL) (was ?)")
