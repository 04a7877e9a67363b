"""The status board: write readings (latest + history), read a consistent snapshot with staleness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select

from gozen.daq.snapshot import StatusSnapshot, StatusValue
from gozen.db.tables import status, status_history
from gozen.db.types import utcnow


@dataclass(frozen=True)
class Reading:
    key: str
    value: float | int | str | bool | None
    unit: str
    max_age_s: float


def publish(
    engine: Engine, source: str, readings: list[Reading], when: datetime | None = None, history: bool = True
) -> None:
    """Replace the latest values and append them to the history (unless told not), in one transaction."""
    if not readings:
        return
    t = when or utcnow()
    with engine.begin() as conn:
        conn.execute(delete(status).where(status.c.key.in_([r.key for r in readings])))
        conn.execute(
            insert(status),
            [
                {"key": r.key, "value": r.value, "unit": r.unit, "source": source, "time": t, "max_age_s": r.max_age_s}
                for r in readings
            ],
        )
        if history:
            conn.execute(insert(status_history), [{"key": r.key, "value": r.value, "time": t} for r in readings])


def heartbeat_key(host: str, program: str) -> str:
    """The board key where a program says it is alive: `service.<host>.<group:name>.alive_at`."""
    return f"service.{host}.{program}.alive_at"


def heartbeat(engine: Engine, host: str, program: str, max_age_s: float) -> None:
    """Say `program` on `host` is alive now; the value goes stale (a hung program) after max_age_s."""
    now = utcnow()
    publish(engine, program, [Reading(heartbeat_key(host, program), now.isoformat(), "", max_age_s)], now, False)


def snapshot(engine: Engine, prefix: str | None = None) -> StatusSnapshot:
    """Every latest value (under a key prefix), each marked stale when older than its max age."""
    now = utcnow()
    q = select(status)
    if prefix:
        q = q.where(status.c.key.startswith(prefix, autoescape=True))  # `%` and `_` are not wildcards
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    values: dict[str, StatusValue] = {}
    for r in rows:
        stale = (now - r.time).total_seconds() > r.max_age_s
        values[r.key] = StatusValue(r.value, r.unit, r.source, r.time.isoformat(), stale)
    return StatusSnapshot(now.isoformat(), values)


def history(
    engine: Engine, key: str, since: datetime, until: datetime | None = None, limit: int = 100_000
) -> list[tuple[datetime, Any]]:
    """(time, value) of one key since `since`, oldest first."""
    q = select(status_history.c.time, status_history.c.value).where(
        status_history.c.key == key, status_history.c.time >= since
    )
    if until is not None:
        q = q.where(status_history.c.time <= until)
    with engine.connect() as conn:
        return [(t, v) for t, v in conn.execute(q.order_by(status_history.c.time).limit(limit))]


def keys(engine: Engine) -> dict[str, str]:
    """Every key on the board, with its unit."""
    with engine.connect() as conn:
        return dict(conn.execute(select(status.c.key, status.c.unit).order_by(status.c.key)).all())


def prune_history(engine: Engine, before: datetime) -> int:
    """Drop history older than `before`; how many readings went."""
    with engine.begin() as conn:
        return int(conn.execute(delete(status_history).where(status_history.c.time < before)).rowcount)
