"""The events table: record one, read the newest; a local spool while the database is away.

An event is news that must not be lost because the database is restarting: when the insert
fails for that reason (`is_unavailable`), the event is appended with its real time to a JSON
Lines file in the host's spool directory (`data_dir/spool`, set once per process by
`use_spool`), and `flush_spool` writes every spooled event of the host when the database
answers again (any program of the host may; each file is claimed by an atomic rename, so two
programs never write the same events twice).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from gozen.db.engine import is_unavailable
from gozen.db.tables import events
from gozen.db.types import utcnow

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "error"]
SPOOL_MAX_BYTES = 64 * 1024 * 1024  # per process: days of events; beyond it a disk is filling up
_spool_dir: Path | None = None


@dataclass(frozen=True)
class Event:
    id: int
    time: datetime
    host: str
    source: str
    kind: str
    subject: str
    severity: str
    message: str
    data: dict[str, Any] | None


def use_spool(directory: Path | None) -> None:
    """Spool this process's events under `directory` while the database is away (None: never)."""
    global _spool_dir
    _spool_dir = directory


def record_event(
    engine: Engine,
    *,
    host: str,
    source: str,
    kind: str,
    subject: str,
    message: str,
    severity: Severity = "info",
    data: dict[str, Any] | None = None,
    time: datetime | None = None,
) -> int | None:
    """Insert one event; its id, or None when it was spooled because the database is away."""
    row = {
        "time": time or utcnow(),
        "host": host,
        "source": source,
        "kind": kind,
        "subject": subject,
        "severity": severity,
        "message": message,
        "data": data,
    }
    try:
        with engine.begin() as conn:
            key = conn.execute(insert(events).values(**row)).inserted_primary_key
    except SQLAlchemyError as err:
        if _spool_dir is None or not is_unavailable(err):
            raise
        _spool(row, err)
        return None
    assert key is not None
    return int(key[0])


def _spool(row: dict[str, Any], why: BaseException) -> None:
    assert _spool_dir is not None
    _spool_dir.mkdir(parents=True, exist_ok=True)
    path = _spool_dir / f"events-{os.getpid()}.jsonl"
    if path.exists() and path.stat().st_size > SPOOL_MAX_BYTES:
        raise OSError(f"event spool {path} is over {SPOOL_MAX_BYTES} bytes; the database has been away too long")
    line = json.dumps({**row, "time": row["time"].isoformat()}, default=str)
    with path.open("a", encoding="utf-8") as f:  # one write per line: readers never see half of one
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    log.warning("database away (%s): event %s/%s spooled to %s", type(why).__name__, row["kind"], row["subject"], path)


def spooled(directory: Path | None = None) -> list[Path]:
    """The spool files waiting to be written."""
    d = directory or _spool_dir
    if d is None or not d.is_dir():
        return []
    for claimed in d.glob("events-*.claimed-*"):  # claimed by a program that died before writing it
        if not _alive(int(claimed.name.rpartition("-")[2])):
            claimed.rename(claimed.with_name(f"{claimed.name.partition('.')[0]}-{claimed.stat().st_ino}.jsonl"))
    return sorted(d.glob("events-*.jsonl"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def flush_spool(engine: Engine, directory: Path | None = None) -> int:
    """Write every spooled event of this host to the table, with its real time; how many.

    A file is claimed by renaming it, written in one transaction, then removed. If the database
    goes away again meanwhile, the claimed file goes back to the spool for next time.
    """
    written = 0
    for path in spooled(directory):
        claimed = path.with_name(f"{path.stem}.claimed-{os.getpid()}")
        try:
            path.rename(claimed)
        except FileNotFoundError:
            continue  # another program of this host claimed it first
        rows, bad = [], 0
        for n, line in enumerate(claimed.read_text(encoding="utf-8").splitlines(), 1):
            try:
                r = json.loads(line)
                rows.append({**r, "time": datetime.fromisoformat(r["time"])})
            except (ValueError, KeyError, TypeError) as err:
                bad += 1  # a line cut by a crash mid-write: nothing else to save of it
                log.error("%s line %d: not an event (%s), skipped", path, n, err)
        try:
            if rows:
                with engine.begin() as conn:
                    conn.execute(insert(events), rows)
        except SQLAlchemyError:
            claimed.rename(path.with_name(f"events-{os.getpid()}-{claimed.stat().st_ino}.jsonl"))
            raise
        claimed.unlink()
        written += len(rows)
        log.info("wrote %d spooled events from %s%s", len(rows), path.name, f" ({bad} unreadable)" if bad else "")
    return written


def recent_events(engine: Engine, limit: int = 50, kind: str | None = None, source: str | None = None) -> list[Event]:
    """The newest events first, of one kind and/or from one source if asked."""
    q = select(events).order_by(events.c.id.desc()).limit(limit)
    if kind:
        q = q.where(events.c.kind == kind)
    if source:
        q = q.where(events.c.source == source)
    with engine.connect() as conn:
        return [Event(**row._mapping) for row in conn.execute(q)]


def recent_problems(engine: Engine, since: datetime, limit: int) -> list[Event]:
    """The newest errors and warnings since `since`, newest first."""
    q = (
        select(events)
        .where(events.c.severity.in_(("error", "warning")), events.c.time >= since)
        .order_by(events.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [Event(**r._mapping) for r in conn.execute(q)]


def events_after(engine: Engine, after_id: int, limit: int) -> list[Event]:
    """The events after `after_id`, oldest first: for readers that tell each event once."""
    q = select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
    with engine.connect() as conn:
        return [Event(**row._mapping) for row in conn.execute(q)]


def last_event_id(engine: Engine) -> int:
    """The newest event's id (0 when there is none)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())
