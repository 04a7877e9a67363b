"""What a readout or writer could not write while the database was away: kept, and written when it returns.

The hot loops never stop for the database. A row (a file's accounting, a readout's report)
waits in memory; when a write fails, the rows go to a JSON Lines file under `data_dir/spool`
(fsynced), so a program stopped or killed meanwhile finds them at its next start. The catalog
ignores a second report of a file or chip, so rows written twice count nothing twice.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from gozen.db.events import Severity
from gozen.db.types import utcnow
from gozen.service import Backoff, Context, first_line, is_outage

log = logging.getLogger(__name__)
T = TypeVar("T")
# A hot loop asks the database again this soon after it failed, and never waits longer:
# a writer holding ring slots for an exposure it has not heard of needs to know soon.
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 1.0


class DatabaseAway(Exception):
    """The database failed a moment ago: not asked again until the backoff has passed."""


def spool_path(ctx: Context, what: str) -> Path:
    """This program's spool of `what` (e.g. `files`): data_dir/spool/daq-writer-01.files.jsonl."""
    return ctx.cfg.data_dir / "spool" / f"{ctx.program.replace(':', '-')}.{what}.jsonl"


class DatabaseWatch:
    """A hot loop's view of the database: away since when, when to ask it again (capped backoff).

    Its outage is one `database_unavailable` event and one `database_back` (with the events
    spooled meanwhile written), however many writes failed; it is back when a write succeeds
    (a database that answers reads but refuses writes, as a read-only SQLite file does, is
    still away). Shared by a program's threads.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.trouble = ctx.trouble("database_unavailable", "database_back", "database")
        self.backoff = Backoff(FIRST_RETRY_S, MAX_RETRY_S)
        self.retry_at = 0.0
        self.down_at: datetime | None = None  # while away: when it went
        self.outages: deque[tuple[datetime, datetime]] = deque(maxlen=8)  # the last ones, (down, back)
        self._lock = threading.Lock()

    @property
    def away(self) -> bool:
        return self.trouble.active

    def ready(self) -> bool:
        """True when the database may be asked now (it answered last time, or the backoff has passed)."""
        return time.monotonic() >= self.retry_at

    def check(self) -> None:
        if not self.ready():
            raise DatabaseAway(f"the database is away ({self.trouble.why}); asking again shortly")

    def failed(self, err: BaseException) -> None:
        with self._lock:
            self.retry_at = time.monotonic() + self.backoff.next()
            if self.down_at is None:
                self.down_at = utcnow()
            why = f"the database does not answer: {type(err).__name__}: {first_line(err)}"
            try:
                self.trouble.failing(why)
            except Exception:  # not even the event spool: the log has it
                log.exception("%s: could not record database_unavailable", self.ctx.program)

    def answered(self, wrote: bool) -> None:
        """The database answered (`wrote`: a write succeeded, so it is back)."""
        self.retry_at = 0.0
        if not self.trouble.active and self.down_at is None:
            return
        self.backoff.reset()
        if not wrote:
            return
        with self._lock:
            if self.down_at is not None:
                self.outages.append((self.down_at, utcnow()))
                self.down_at = None
            try:
                self.ctx.catch_up()
                self.trouble.ok(f"the database answers again after {self.trouble.down_for_s:.0f} s")
            except Exception as err:  # away again already: the next answer tells it
                log.warning("%s: could not record the database's return yet: %s", self.ctx.program, err)

    def was_away_during(self, start: datetime, end: datetime) -> bool:
        """True when the database was away (for this program) at some time between start and end."""
        with self._lock:
            spans = [*self.outages, *([(self.down_at, None)] if self.down_at is not None else [])]
        return any(end > down and (back is None or start < back) for down, back in spans)

    def call(self, fn: Callable[[], T], wrote: bool = False) -> T:
        """fn() (`wrote`: it writes), unless the database is in its backoff (DatabaseAway); an outage
        is noted, and raised."""
        self.check()
        try:
            out = fn()
        except Exception as err:
            if is_outage(err):
                self.failed(err)
            raise
        self.answered(wrote)
        return out

    def heartbeat(self, period_s: float) -> None:
        """The program's heartbeat on the status board (at most every few seconds; at once while
        the database seems away, so its return is noticed); none while it is away."""
        try:
            self.call(partial(self.ctx.heartbeat, period_s, force=self.away), wrote=True)
        except (SQLAlchemyError, DatabaseAway):
            pass  # a stale heartbeat is the truth: this program cannot reach the database


class Backlog(Generic[T]):
    """Rows waiting to be written by `write`: in memory, then in `path` once a write has failed."""

    def __init__(self, path: Path, watch: DatabaseWatch, write: Callable[[list[dict[str, Any]]], T]) -> None:
        self.path, self.watch, self.write = path, watch, write
        self.rows: list[dict[str, Any]] = []
        self.spooled = path.exists()  # the spool is this program's alone: no need to look each loop

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)

    def flush(self) -> T | None:
        """Write the spooled rows and then the new ones; what `write` returned, or None when they wait."""
        if not self.rows and not self.spooled:
            return None
        if not self.watch.ready():
            self.spill()
            return None
        rows = self.read_spool() + self.rows
        try:
            out = self.write(rows)
        except SQLAlchemyError as err:
            self.spill()
            self.watch.failed(err)
            return None
        self.rows = []
        self.path.unlink(missing_ok=True)
        self.spooled = False
        self.watch.answered(wrote=True)
        return out

    def spill(self) -> None:
        """Move the rows in memory to the spool file (durable: a program killed now loses none)."""
        if not self.rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r, default=_iso) + "\n" for r in self.rows)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self.spooled = True
        log.warning("%d rows kept in %s until the database answers", len(self.rows), self.path)
        self.rows = []

    def read_spool(self) -> list[dict[str, Any]]:
        if not self.spooled:
            return []
        rows = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                r = json.loads(line)
            except ValueError as err:  # a line cut by a crash mid-write: the file on disk is still there
                log.error("%s line %d: not a row (%s), skipped", self.path, n, err)
                continue
            if isinstance(r.get("created_at"), str):
                r["created_at"] = datetime.fromisoformat(r["created_at"])
            rows.append(r)
        return rows


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def tell(ctx: Context, kind: str, subject: str, message: str, severity: Severity = "error", **data: Any) -> None:
    """Record an event from a hot loop (spooled while the database is away); never raises."""
    log.log(logging.ERROR if severity == "error" else logging.INFO, "%s: %s %s", ctx.program, subject, message)
    try:
        ctx.event(kind, subject, message, severity, data or None)
    except Exception as err:  # no database and no spool: the log line above is its record
        log.error("%s: could not record event %s: %s", ctx.program, kind, err)
