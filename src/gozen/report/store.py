"""The `nightly_reports` table: one row per night, with its totals and whether it reached Slack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, Engine, delete, insert, select, update

from gozen.db.tables import nightly_reports
from gozen.db.types import utcnow


class SlackState(StrEnum):
    PENDING = "pending"  # made, not posted yet
    POSTED = "posted"
    FAILED = "failed"  # tried and failed: tried again on a later pass
    OFF = "off"  # no Slack to post to (or not asked to post)


@dataclass(frozen=True)
class ReportRow:
    night: str
    host: str
    made_at: datetime
    start_at: datetime
    end_at: datetime
    path: str
    exposures: int
    frames: int
    frames_lost: int
    bytes: int
    summary: str
    slack_state: str
    slack_error: str | None
    posted_at: datetime | None


def save_report(engine: Engine, row: ReportRow, also: Callable[[Connection], object] | None = None) -> None:
    """Write a night's row, replacing one made before, and do `also` (queue its Slack message) in the
    same transaction: a report is never recorded without its message, nor its message queued twice."""
    with engine.begin() as conn:
        conn.execute(delete(nightly_reports).where(nightly_reports.c.night == row.night))
        conn.execute(insert(nightly_reports).values(**row.__dict__))
        if also is not None:
            also(conn)


def report_of(engine: Engine, night: str) -> ReportRow | None:
    with engine.connect() as conn:
        r = conn.execute(select(nightly_reports).where(nightly_reports.c.night == night)).first()
    return None if r is None else ReportRow(**r._mapping)


def has_report(engine: Engine, night: str) -> bool:
    return report_of(engine, night) is not None


def reports(engine: Engine, limit: int = 400) -> list[ReportRow]:
    """The newest nights first."""
    with engine.connect() as conn:
        q = select(nightly_reports).order_by(nightly_reports.c.night.desc()).limit(limit)
        return [ReportRow(**r._mapping) for r in conn.execute(q)]


def unposted(engine: Engine, host: str) -> list[ReportRow]:
    """Reports made on `host` still to be posted (pending, or failed before)."""
    with engine.connect() as conn:
        q = select(nightly_reports).where(
            nightly_reports.c.host == host,
            nightly_reports.c.slack_state.in_([SlackState.PENDING, SlackState.FAILED]),
        )
        return [ReportRow(**r._mapping) for r in conn.execute(q.order_by(nightly_reports.c.night))]


def mark_slack(engine: Engine, night: str, state: SlackState, error: str | None = None) -> None:
    values: dict[str, object] = {"slack_state": state, "slack_error": error}
    if state is SlackState.POSTED:
        values["posted_at"] = utcnow()
    with engine.begin() as conn:
        conn.execute(update(nightly_reports).where(nightly_reports.c.night == night).values(**values))
