"""supervisord event listener: every process state change becomes a row in `events`.

A change that cannot be written is answered FAIL, so supervisord keeps the event and
sends it again: nothing is dropped while the database is away.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gozen.db.events import Severity, record_event

log = logging.getLogger(__name__)

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


def parse_tokens(line: str) -> dict[str, str]:
    """supervisord's `key:value key:value` header and payload lines."""
    out = {}
    for token in line.split():
        key, _, value = token.partition(":")
        out[key] = value
    return out


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


def run_listener(
    engine: Engine,
    host: str,
    stdin: IO[str] = sys.stdin,
    stdout: IO[str] = sys.stdout,
    max_backoff_s: float = 30.0,
) -> None:
    """The listener loop: READY, read one event, record it, answer OK (or FAIL to get it again).

    After a failed write it waits (doubling up to max_backoff_s) before answering FAIL, so a
    database that is away costs a retry now and then, not a busy loop of resent events.
    """
    failures = 0
    while True:
        stdout.write("READY\n")
        stdout.flush()
        header_line = stdin.readline()
        if not header_line:
            return  # supervisord closed our stdin: it is shutting down
        headers = parse_tokens(header_line)
        body = stdin.read(int(headers["len"]))
        answer = "OK"
        if headers.get("eventname", "").startswith("PROCESS_STATE_"):
            first_line, _, _ = body.partition("\n")
            row = describe_state_change(headers["eventname"], parse_tokens(first_line))
            try:
                record_event(engine, host=host, **row)
                failures = 0
            except SQLAlchemyError as err:
                failures += 1
                wait_s = min(max_backoff_s, 0.25 * 2**failures)
                log.error(
                    "could not record event host=%s subject=%s (retry in %.1fs): %s", host, row["subject"], wait_s, err
                )
                time.sleep(wait_s)
                answer = "FAIL"
        stdout.write(f"RESULT {len(answer)}\n{answer}")
        stdout.flush()
