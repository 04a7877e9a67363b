"""Queries on the events table: record one, read the newest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, insert, select

from gozen.db.tables import events
from gozen.db.types import utcnow

Severity = Literal["info", "warning", "error"]


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
) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            insert(events).values(
                time=time or utcnow(),
                host=host,
                source=source,
                kind=kind,
                subject=subject,
                severity=severity,
                message=message,
                data=data,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def recent_events(engine: Engine, limit: int = 50, kind: str | None = None) -> list[Event]:
    q = select(events).order_by(events.c.id.desc()).limit(limit)
    if kind:
        q = q.where(events.c.kind == kind)
    with engine.connect() as conn:
        return [Event(**row._mapping) for row in conn.execute(q)]
