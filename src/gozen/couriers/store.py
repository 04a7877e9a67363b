"""The couriers' tables: the alerts seen, the outbox of messages, each feed's last read.

The only module that reads or writes `alerts`, `outbox` and `feed_state`. A message is queued
in the transaction that makes it due (with the alerts it tells of, or with the watcher's
cursor), so a courier that dies in between neither loses a message nor posts it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from gozen.config import Config, Notifier
from gozen.couriers.feeds import Alert
from gozen.db.events import last_event_id
from gozen.db.states import OutboxState
from gozen.db.tables import alerts, feed_state, outbox
from gozen.db.types import utcnow

WATCH_CURSOR = "events"  # feed_state rows of courier:watch, beside the feeds'
SNIPPETS = "snippets"


@dataclass(frozen=True)
class Message:
    """A message to queue: its kind routes it to notifiers."""

    kind: str
    text: str
    blocks: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    kind: str
    notifier: str
    text: str
    blocks: list[dict[str, Any]] | None
    state: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class FeedState:
    checked_at: datetime
    status: str
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class SeenAlert:
    """An alert as kept: what the Alerts page shows of it."""

    title: str
    event_time: datetime | None
    ra_deg: float | None
    dec_deg: float | None
    seen_at: datetime
    followup_uuid: str | None
    data: dict[str, Any]


def routes(cfg: Config, kind: str) -> list[Notifier]:
    return [n for n in cfg.notifiers_in_use() if "*" in n.kinds or kind in n.kinds]


def enqueue(conn: Connection, cfg: Config, kind: str, text: str, blocks: list[dict[str, Any]] | None = None) -> int:
    """Queue a message to every notifier its kind is routed to (in the caller's transaction); how many.
    A message routed nowhere is kept, visible and never posted."""
    now = utcnow()
    targets = [n.name for n in routes(cfg, kind)]
    row = {"kind": kind, "text": text, "blocks": blocks, "attempts": 0, "next_try_at": now, "created_at": now}
    rows = [row | {"notifier": n, "state": OutboxState.PENDING} for n in targets] or [
        row | {"notifier": "", "state": OutboxState.UNROUTED}
    ]
    conn.execute(insert(outbox), rows)
    return len(targets)


# -- alerts and feeds ------------------------------------------------------------
def feed_state_of(engine: Engine, feed: str) -> FeedState | None:
    with engine.connect() as conn:
        r = conn.execute(select(feed_state).where(feed_state.c.feed == feed)).first()
    return None if r is None else FeedState(r.checked_at, r.status, r.etag, r.last_modified)


def feed_states(engine: Engine) -> dict[str, FeedState]:
    """Every feed's last read (and the watcher's rows, under their own names)."""
    with engine.connect() as conn:
        return {
            r.feed: FeedState(r.checked_at, r.status, r.etag, r.last_modified) for r in conn.execute(select(feed_state))
        }


def remember_read(engine: Engine, feed: str, status: str, validators: dict[str, str] | None) -> None:
    """A feed's read: its status, and the ETag / Last-Modified for the next conditional GET
    (None: keep the ones from before, as after a 304)."""
    with engine.begin() as conn:
        if validators is None:
            old = conn.execute(select(feed_state).where(feed_state.c.feed == feed)).first()
            validators = {"etag": old.etag, "last_modified": old.last_modified} if old is not None else {}
        conn.execute(delete(feed_state).where(feed_state.c.feed == feed))
        conn.execute(insert(feed_state).values(feed=feed, checked_at=utcnow(), status=status, **validators))


def unseen(engine: Engine, feed: str, found: list[Alert]) -> list[Alert]:
    """The alerts of `found` not kept before."""
    with engine.connect() as conn:
        q = select(alerts.c.key).where(alerts.c.feed == feed, alerts.c.key.in_([a.key for a in found]))
        known = set(conn.execute(q).scalars())
    return [a for a in found if a.key not in known]


def keep_alerts(engine: Engine, cfg: Config, new: list[Alert], messages: list[Message]) -> bool:
    """Keep new alerts and queue the messages about them, in one transaction. False when another
    courier of the same feed kept them first (nothing is written then)."""
    now = utcnow()
    rows = [
        {
            "feed": a.feed,
            "key": a.key,
            "title": a.title,
            "event_time": a.event_time,
            "ra_deg": a.ra_deg,
            "dec_deg": a.dec_deg,
            "data": a.data,
            "seen_at": now,
        }
        for a in new
    ]
    try:
        with engine.begin() as conn:
            conn.execute(insert(alerts), rows)
            for m in messages:
                enqueue(conn, cfg, m.kind, m.text, m.blocks)
    except IntegrityError:
        return False
    return True


def note_followup(engine: Engine, a: Alert, recipe_uuid: str) -> None:
    """The queue recipe a follow-up rule made of an alert."""
    with engine.begin() as conn:
        conn.execute(
            update(alerts).where(alerts.c.feed == a.feed, alerts.c.key == a.key).values(followup_uuid=recipe_uuid)
        )


@dataclass(frozen=True)
class FollowedAlert:
    """An alert that made, changed or was folded into a follow-up recipe."""

    key: str
    title: str
    ra_deg: float | None
    dec_deg: float | None
    data: dict[str, Any]
    followup_uuid: str


def followup_of(engine: Engine, a: Alert) -> str | None:
    """The recipe already noted for this alert (it was followed up before), if any."""
    q = select(alerts.c.followup_uuid).where(alerts.c.feed == a.feed, alerts.c.key == a.key)
    with engine.connect() as conn:
        return conn.execute(q).scalar()


def followed_up(engine: Engine, feed: str, since: datetime, limit: int = 1000) -> list[FollowedAlert]:
    """A feed's alerts seen since `since` that have a follow-up recipe, newest first."""
    q = (
        select(alerts)
        .where(alerts.c.feed == feed, alerts.c.followup_uuid.is_not(None), alerts.c.seen_at >= since)
        .order_by(alerts.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [FollowedAlert(a.key, a.title, a.ra_deg, a.dec_deg, a.data, a.followup_uuid) for a in conn.execute(q)]


def recent_alerts(engine: Engine, feed: str, limit: int) -> list[SeenAlert]:
    """A feed's newest alerts first."""
    q = select(alerts).where(alerts.c.feed == feed).order_by(alerts.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [
            SeenAlert(a.title, a.event_time, a.ra_deg, a.dec_deg, a.seen_at, a.followup_uuid, a.data)
            for a in conn.execute(q)
        ]


# -- the outbox -----------------------------------------------------------------
def _message(m: Any) -> OutboxMessage:
    return OutboxMessage(
        m.id, m.kind, m.notifier, m.text, m.blocks, m.state, m.attempts, m.created_at, m.sent_at, m.last_error
    )


def due(engine: Engine, limit: int, now: datetime | None = None) -> list[OutboxMessage]:
    """Pending messages whose time has come, oldest first."""
    q = (
        select(outbox)
        .where(outbox.c.state == OutboxState.PENDING, outbox.c.next_try_at <= (now or utcnow()))
        .order_by(outbox.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [_message(m) for m in conn.execute(q)]


def recent_messages(engine: Engine, limit: int) -> list[OutboxMessage]:
    """The newest messages first, whatever their state."""
    with engine.connect() as conn:
        return [_message(m) for m in conn.execute(select(outbox).order_by(outbox.c.id.desc()).limit(limit))]


def mark_sent(engine: Engine, m: OutboxMessage) -> None:
    values = {"state": OutboxState.SENT, "sent_at": utcnow(), "attempts": m.attempts + 1, "last_error": None}
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == m.id).values(**values))


def retry_later(engine: Engine, m: OutboxMessage, why: str, after_s: float) -> None:
    """A post that failed: counted, and not tried again for `after_s`."""
    values = {
        "attempts": m.attempts + 1,
        "last_error": why[:2000],
        "next_try_at": utcnow() + timedelta(seconds=after_s),
    }
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == m.id).values(**values))


def forget_settled(engine: Engine, before: datetime) -> int:
    """Forget messages delivered (or with nowhere to go) made before `before`; pending ones stay. How many."""
    settled = outbox.c.state.in_([OutboxState.SENT, OutboxState.UNROUTED])
    with engine.begin() as conn:
        return int(conn.execute(delete(outbox).where(settled, outbox.c.created_at < before)).rowcount or 0)


# -- courier:watch's cursor over the events -------------------------------------
def watch_cursor(engine: Engine) -> int:
    """The last event courier:watch has told of; at its first start, the newest event (from now on)."""
    with engine.connect() as conn:
        cursor = conn.execute(select(feed_state.c.cursor).where(feed_state.c.feed == WATCH_CURSOR)).scalar()
    return int(cursor) if cursor is not None else last_event_id(engine)


def snippets_sent_on(engine: Engine) -> str | None:
    """The local date the daily snippets last went out (ISO), if ever."""
    st = feed_state_of(engine, SNIPPETS)
    return None if st is None else st.status


def commit_watch(
    engine: Engine, cfg: Config, cursor: int, messages: list[Message], snippets_day: str | None = None
) -> None:
    """Queue the watcher's messages and move its cursor (and the snippets' date) in one transaction:
    nothing told twice, nothing skipped."""
    now = utcnow()
    with engine.begin() as conn:
        for m in messages:
            enqueue(conn, cfg, m.kind, m.text, m.blocks)
        marks = {WATCH_CURSOR: {"status": "ok", "cursor": cursor}}
        if snippets_day is not None:
            marks[SNIPPETS] = {"status": snippets_day, "cursor": None}
        for name, values in marks.items():
            conn.execute(delete(feed_state).where(feed_state.c.feed == name))
            conn.execute(insert(feed_state).values(feed=name, checked_at=now, **values))
