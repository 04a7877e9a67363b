"""`courier:watch`: failures told at once, repeats grouped; the daily ZFS snippets.

Every day at `couriers.snippet_at` (`couriers.timezone`; 01:00 in Japan by default) each
storage node's `zpool status` text from the board goes out as "zfs pool status on <node>",
posted as a preformatted message (the incoming webhook carries no files).

Reads the events table from where it stopped (its cursor is kept with the messages it
queues, in one transaction: nothing told twice, nothing skipped). An event of a configured
kind with severity warning or error becomes a `failure` message; the same kind on the same
subject again within `couriers.group_window_s` is only counted, and the count is told when
the window closes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, delete, func, insert, select

from gozen.config import Config
from gozen.couriers.outbox import enqueue
from gozen.db.tables import events, feed_state, status
from gozen.db.types import utcnow

log = logging.getLogger(__name__)
CURSOR = "events"
SNIPPETS = "snippets"
ICON = {"error": ":rotating_light:", "warning": ":warning:"}


@dataclass
class Group:
    opened: datetime
    host: str
    kind: str
    subject: str
    repeats: int = 0


def failure_text(e: Any) -> str:
    return f"{ICON.get(e.severity, '')} {e.host} · {e.kind} · {e.subject}: {e.message}".strip()


class Watcher:
    def __init__(self, cfg: Config, engine: Engine, host: str) -> None:
        self.cfg, self.engine, self.host = cfg, engine, host
        self.window = timedelta(seconds=cfg.couriers.group_window_s)
        self.groups: dict[tuple[str, str, str], Group] = {}

    def cursor(self, conn: Connection) -> int:
        row = conn.execute(select(feed_state.c.cursor).where(feed_state.c.feed == CURSOR)).first()
        if row is not None and row.cursor is not None:
            return int(row.cursor)
        return int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())  # from now on

    def tells(self, e: Any) -> bool:
        if e.kind not in self.cfg.couriers.failure_kinds or e.severity not in ("warning", "error"):
            return False
        if e.kind == "frames_lost":  # a whole exposure missed is always told; drops from the threshold on
            d = e.data or {}
            return bool(d.get("missed_whole")) or int(d.get("dropped", 0)) >= self.cfg.couriers.drops_threshold
        return not (e.source.startswith("courier:"))  # a failing courier does not tell on itself

    def pass_once(self, now: datetime | None = None) -> int:
        """Queue the messages due; how many."""
        now = now or utcnow()
        told = 0
        with self.engine.begin() as conn:
            start = self.cursor(conn)
            rows = conn.execute(select(events).where(events.c.id > start).order_by(events.c.id).limit(500)).all()
            for e in rows:
                if not self.tells(e):
                    continue
                # lost frames name their exposure; a storm of them is one story per readout
                key = (e.host, e.kind, e.source if e.kind == "frames_lost" else e.subject)
                g = self.groups.get(key)
                if g is not None and e.time - g.opened < self.window:
                    g.repeats += 1
                    continue
                if g is not None:
                    told += self.flush(conn, g)
                self.groups[key] = Group(e.time, e.host, e.kind, e.subject)
                enqueue(conn, self.cfg, "failure", failure_text(e))
                told += 1
            for key, g in list(self.groups.items()):
                if now - g.opened >= self.window:
                    told += self.flush(conn, g)
                    del self.groups[key]
            last = rows[-1].id if rows else start
            conn.execute(delete(feed_state).where(feed_state.c.feed == CURSOR))
            conn.execute(insert(feed_state).values(feed=CURSOR, checked_at=now, status="ok", cursor=last))
            told += self.snippets(conn, now)
        return told

    def snippets(self, conn: Connection, now: datetime) -> int:
        """Once a day at snippet_at (local time): "zfs pool status on <node>" for each node with ZFS."""
        local = now.astimezone(ZoneInfo(self.cfg.couriers.timezone))
        hh, mm = (int(x) for x in self.cfg.couriers.snippet_at.split(":"))
        if (local.hour, local.minute) < (hh, mm):
            return 0
        today = local.date().isoformat()
        done = conn.execute(select(feed_state.c.status).where(feed_state.c.feed == SNIPPETS)).scalar()
        if done == today:
            return 0
        board = {r.key: r for r in conn.execute(select(status).where(status.c.key.startswith("zfs.")))}
        hosts = sorted(k.split(".")[1] for k, r in board.items() if k.endswith(".available") and r.value is True)
        for host in hosts:
            texts = [
                r.value for k, r in sorted(board.items()) if k.startswith(f"zfs.{host}.") and k.endswith(".status_text")
            ]
            body = "\n\n".join(str(t).rstrip() for t in texts) or "(no pools)"
            enqueue(
                conn, self.cfg, "snippet", f"zfs pool status on {host}\n```\n{local:%Y-%m-%d %H:%M %Z}\n{body}\n```"
            )
        conn.execute(delete(feed_state).where(feed_state.c.feed == SNIPPETS))
        conn.execute(insert(feed_state).values(feed=SNIPPETS, checked_at=now, status=today))
        return len(hosts)

    def flush(self, conn: Connection, g: Group) -> int:
        if not g.repeats:
            return 0
        minutes = self.window.total_seconds() / 60
        text = f":repeat: {g.host} · {g.kind} · {g.subject}: {g.repeats} more within {minutes:g} minutes of the first"
        enqueue(conn, self.cfg, "failure", text)
        return 1

    def run(self) -> None:
        while True:
            try:
                self.pass_once()
            except Exception:
                log.exception("watch pass failed")
            time.sleep(self.cfg.couriers.send_every_s)
