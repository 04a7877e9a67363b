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

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gozen.couriers import store
from gozen.couriers.store import Message
from gozen.db.events import events_after
from gozen.db.types import utcnow
from gozen.monitors.board import snapshot
from gozen.service import Context, Service

ICON = {"error": ":rotating_light:", "warning": ":warning:"}
BATCH = 500  # events read a pass


@dataclass
class Group:
    opened: datetime
    host: str
    kind: str
    subject: str
    repeats: int = 0


def failure_text(e: Any) -> str:
    return f"{ICON.get(e.severity, '')} {e.host} · {e.kind} · {e.subject}: {e.message}".strip()


class Watcher(Service):
    """`courier:watch`: a pass every `couriers.send_every_s` (at once while events are waiting)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cfg, self.engine = ctx.cfg, ctx.engine
        self.period_s = ctx.cfg.couriers.send_every_s
        self.window = timedelta(seconds=ctx.cfg.couriers.group_window_s)
        self.groups: dict[tuple[str, str, str], Group] = {}
        self.more = False

    def run_once(self) -> bool:
        self.pass_once()
        return self.more

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
        start = store.watch_cursor(self.engine)
        rows = events_after(self.engine, start, BATCH)
        self.more = len(rows) == BATCH
        out: list[Message] = []
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
                out += self.flush(g)
            self.groups[key] = Group(e.time, e.host, e.kind, e.subject)
            out.append(Message("failure", failure_text(e)))
        for key, g in list(self.groups.items()):
            if now - g.opened >= self.window:
                out += self.flush(g)
                del self.groups[key]
        snippets, day = self.snippets(now)
        store.commit_watch(self.engine, self.cfg, rows[-1].id if rows else start, out + snippets, day)
        return len(out) + len(snippets)

    def snippets(self, now: datetime) -> tuple[list[Message], str | None]:
        """Once a day at snippet_at (local time): "zfs pool status on <node>" for each node with ZFS;
        and the day to remember they went out (None when not due)."""
        local = now.astimezone(ZoneInfo(self.cfg.couriers.timezone))
        hh, mm = (int(x) for x in self.cfg.couriers.snippet_at.split(":"))
        today = local.date().isoformat()
        if (local.hour, local.minute) < (hh, mm) or store.snippets_sent_on(self.engine) == today:
            return [], None
        board = snapshot(self.engine, "zfs.").values
        hosts = sorted(k.split(".")[1] for k, v in board.items() if k.endswith(".available") and v.value is True)
        out = []
        for host in hosts:
            texts = [
                v.value for k, v in sorted(board.items()) if k.startswith(f"zfs.{host}.") and k.endswith(".status_text")
            ]
            body = "\n\n".join(str(t).rstrip() for t in texts) or "(no pools)"
            out.append(Message("snippet", f"zfs pool status on {host}\n```\n{local:%Y-%m-%d %H:%M %Z}\n{body}\n```"))
        return out, today

    def flush(self, g: Group) -> list[Message]:
        if not g.repeats:
            return []
        minutes = self.window.total_seconds() / 60
        text = f":repeat: {g.host} · {g.kind} · {g.subject}: {g.repeats} more within {minutes:g} minutes of the first"
        return [Message("failure", text)]
