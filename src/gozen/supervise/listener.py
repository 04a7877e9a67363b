"""supervisord event listener (`supervise:events`): every process state change becomes an event.

The protocol is supervisor's own (`supervisor.childutils.listener`). An event is answered OK once
it is stored: in the events table, or, while the database is away, in the host's spool with the
time it was read (written to the table when the database answers again). Only when both fail is
it answered FAIL, so supervisord keeps it and sends it again: nothing is dropped.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from datetime import datetime
from typing import IO, Any

from sqlalchemy.exc import SQLAlchemyError
from supervisor import childutils

from gozen.db.events import Severity, record_event
from gozen.db.types import utcnow
from gozen.service import Context

log = logging.getLogger(__name__)

# The registry subscribes the listener to TICK_60 too: its heartbeat between state changes.
TICK_S = 60.0

# Times of events answered FAIL, by serial: supervisord sends the same event again, and it keeps
# the time it was first read. Bounded, in case supervisord gives up on some.
MAX_REMEMBERED = 10_000

# (severity, words) by the state a program entered.
_STATE_MEANING: dict[str, tuple[Severity, str]] = {
    "STARTING": ("info", "is starting"),
    "RUNNING": ("info", "is running"),
    "BACKOFF": ("warning", "failed to start and is backing off"),
    "STOPPING": ("info", "is stopping"),
    "STOPPED": ("info", "was stopped"),
    "EXITED": ("info", "exited as expected"),
    "FATAL": ("error", "could not be started (FATAL)"),
    "UNKNOWN": ("error", "is in an unknown state"),
}


def describe_state_change(eventname: str, payload: dict[str, str]) -> dict[str, Any]:
    """The events-table row (less host and time) for a PROCESS_STATE_* event."""
    state = eventname.removeprefix("PROCESS_STATE_")
    subject = f"{payload.get('groupname', '?')}:{payload.get('processname', '?')}"
    severity, words = _STATE_MEANING.get(state, ("info", f"entered {state}"))
    kind = "process_state"
    if state == "EXITED" and payload.get("expected") == "0":
        severity, words, kind = "error", "exited unexpectedly", "process_exited"
    pid = payload.get("pid")
    message = f"{subject} {words} (was {payload.get('from_state', '?')}{', pid ' + pid if pid else ''})"
    return {
        "source": "supervisord",
        "kind": kind,
        "subject": subject,
        "severity": severity,
        "message": message,
        "data": {"event": eventname, **payload},
    }


def main(ctx: Context) -> None:
    # stdout is supervisord's protocol channel: logging goes to stderr (basicConfig's default).
    # supervisord's SIGTERM ends the wait for the next event as Ctrl-C does: a clean exit, status 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run_listener(ctx, sys.stdin, sys.stdout)


def run_listener(ctx: Context, stdin: IO[str], stdout: IO[str], max_backoff_s: float = 30.0) -> None:
    """READY, read one event, store it, answer OK (FAIL to get it again); until stdin closes.

    After a failure it waits (doubling up to max_backoff_s) before answering FAIL, so storage that
    is away costs a retry now and then, not a busy loop of resent events.
    """
    first_read: dict[str, datetime] = {}
    failures = 0
    while True:
        childutils.listener.ready(stdout)
        line = stdin.readline()
        if not line:
            return  # supervisord closed our stdin: it is shutting down
        headers = childutils.get_headers(line)
        payload = stdin.read(int(headers["len"]))
        if not headers.get("eventname", "").startswith("PROCESS_STATE_"):
            _tick(ctx)  # TICK_60: no news, but a beat, and a chance to write what was spooled
            childutils.listener.ok(stdout)
            continue
        serial = headers.get("serial", "")
        when = first_read.setdefault(serial, utcnow())  # supervisord's header has no time of its own
        row = describe_state_change(headers["eventname"], childutils.get_headers(payload.partition("\n")[0]))
        if _store(ctx, row, when):
            first_read.pop(serial, None)
            failures = 0
            childutils.listener.ok(stdout)
            continue
        failures += 1
        if len(first_read) > MAX_REMEMBERED:
            first_read.pop(next(iter(first_read)))
        time.sleep(min(max_backoff_s, 0.25 * 2**failures))
        childutils.listener.fail(stdout)


def _store(ctx: Context, row: dict[str, Any], when: datetime) -> bool:
    """Record the event (in the table, else the spool); False when neither would take it."""
    try:
        written = record_event(ctx.engine, host=ctx.host, time=when, **row)
    except (SQLAlchemyError, OSError) as err:  # the database refused it and the spool could not keep it
        log.error("could not store event host=%s subject=%s: %s", ctx.host, row["subject"], err)
        return False
    if written is not None:  # the database answers: write what was spooled meanwhile
        _tick(ctx)
    return True


def _tick(ctx: Context) -> None:
    """Beat on the status board and write the spooled events, if the database answers."""
    try:
        ctx.heartbeat(TICK_S)
        ctx.catch_up()
    except (SQLAlchemyError, OSError) as err:
        log.warning("no heartbeat, spooled events not written yet: %s", err)
