"""`courier:watch`: failures told at once, repeats grouped; the daily ZFS snippets.

Every day at `couriers.snippet_at` (`couriers.timezone`; 01:00 in Japan by default) each
storage node's `zpool status` text from the board goes out as "zfs pool status on <node>",
posted as a preformatted message (the incoming webhook carries no files).

Reads the events table from where it stopped (its cursor is kept with the messages it
queues, in one transaction: nothing told twice, nothing skipped). An event of a configured
kind with severity warning or error becomes a `failure` message; the same kind on the same
subject again within `couriers.group_window_s` is only counted, and the count is told when
the window closes. The end of a failure it told (`couriers.recovery_kinds`: `host_back` after
`host_unreachable`, a program RUNNING again after `process_exited` ...) is told once, with a tick;
the failures still open are found again at start in the events before the cursor.
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
RECOVERED = ":white_check_mark:"
BATCH = 500  # events read a pass
REPLAY = 5000  # events before the cursor read at start, to find the failures not yet ended
EARLY_KEEP = timedelta(hours=1)  # how long a recovery waits for its failure (spooled, written later)

# The failures each recovery ends; a recovery is told only when one of them was told.
ENDS: dict[str, tuple[str, ...]] = {
    "host_back": ("host_unreachable",),
    "rsyncd_back": ("rsyncd_unreachable",),
    "database_back": ("database_unreachable",),
    "device_back": ("device_unreachable",),
    "dome_closed": ("dome_not_closed",),
    "node_ok": ("node_failed",),
    "archive_export_ok": ("archive_export_failing",),
    "retention_ok": ("retention_blocked",),
    "disk_ok": ("disk_warn", "disk_alarm", "disk_offline"),
    "process_running": ("process_exited",),
}
ENDED_BY = {failure: recovery for recovery, failures in ENDS.items() for failure in failures}

OpenKey = tuple[str, str, str, str]  # host, source, subject, the recovery kind that ends it


@dataclass
class Group:
    opened: datetime
    host: str
    kind: str
    subject: str
    repeats: int = 0


def failure_text(e: Any) -> str:
    return f"{ICON.get(e.severity, '')} {e.host} · {e.kind} · {e.subject}: {e.message}".strip()


def recovery_kind(e: Any) -> str | None:
    """The recovery `e` is, if any: its kind, or process_running for a program entering RUNNING."""
    if e.kind == "process_state":
        return "process_running" if (e.data or {}).get("event") == "PROCESS_STATE_RUNNING" else None
    return e.kind if e.kind in ENDS else None


def recovery_text(e: Any, kind: str, failure: Any) -> str:
    if kind == "process_running":
        pid = (e.data or {}).get("pid")
        message = (
            f"{e.subject} is running again{f' (pid {pid})' if pid else ''} after it exited unexpectedly "
            f"at {failure.time:%H:%M:%S} UTC"
        )
    else:
        message = e.message
    return f"{RECOVERED} {e.host} · {kind} · {e.subject}: {message}"


class Watcher(Service):
    """`courier:watch`: a pass every `couriers.send_every_s` (at once while events are waiting)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cfg, self.engine = ctx.cfg, ctx.engine
        self.period_s = ctx.cfg.couriers.send_every_s
        self.window = timedelta(seconds=ctx.cfg.couriers.group_window_s)
        self.groups: dict[tuple[str, str, str], Group] = {}
        self.open: dict[OpenKey, Any] = {}  # failures told and not yet ended
        self.early: dict[OpenKey, Any] = {}  # recoveries read before their failure (spooled, written later)
        self.replayed = False
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

    def recovery(self, e: Any) -> str | None:
        """The recovery kind of `e` when such recoveries are told (whether its failure was: `ends`)."""
        kind = recovery_kind(e)
        if kind is None or kind not in self.cfg.couriers.recovery_kinds or e.source.startswith("courier:"):
            return None
        return kind

    def replay(self, cursor: int) -> None:
        """At start: the failures told before the cursor that have not ended yet, so their end is told."""
        after = max(0, cursor - REPLAY)
        while after < cursor:
            rows = [e for e in events_after(self.engine, after, BATCH) if e.id <= cursor]
            if not rows:
                break
            for e in rows:
                if self.tells(e) and e.kind in ENDED_BY:
                    self.open[(e.host, e.source, e.subject, ENDED_BY[e.kind])] = e
                elif (kind := recovery_kind(e)) is not None:
                    self.open.pop((e.host, e.source, e.subject, kind), None)
            after = rows[-1].id
        self.replayed = True

    def ends(self, e: Any, kind: str) -> Any:
        """The told failure `e` (a recovery of `kind`) ends, if any; else keep `e` for a failure written later."""
        key = (e.host, e.source, e.subject, kind)
        failure = self.open.pop(key, None)
        if failure is None:
            self.early[key] = e
        return failure

    def told(self, e: Any) -> Any:
        """Note a told failure; the recovery already read that ends it, if any."""
        if e.kind not in ENDED_BY:
            return None
        key = (e.host, e.source, e.subject, ENDED_BY[e.kind])
        early = self.early.pop(key, None)
        if early is not None and early.time >= e.time:
            return early
        self.open[key] = e
        return None

    def pass_once(self, now: datetime | None = None) -> int:
        """Queue the messages due; how many."""
        now = now or utcnow()
        start = store.watch_cursor(self.engine)
        if not self.replayed:
            self.replay(start)
        rows = events_after(self.engine, start, BATCH)
        self.more = len(rows) == BATCH
        out: list[Message] = []
        for e in rows:
            if self.tells(e):
                # lost frames name their exposure; a storm of them is one story per readout
                self.group(e, e.kind, e.source if e.kind == "frames_lost" else e.subject, failure_text(e), out)
                early = self.told(e)
                if early is not None:
                    self.recovered(early, ENDED_BY[e.kind], e, out)
            elif (kind := self.recovery(e)) is not None and (failure := self.ends(e, kind)) is not None:
                self.recovered(e, kind, failure, out)
        for key, g in list(self.groups.items()):
            if now - g.opened >= self.window:
                out += self.flush(g)
                del self.groups[key]
        for okey, e in list(self.early.items()):
            if now - e.time >= EARLY_KEEP:
                del self.early[okey]
        snippets, day = self.snippets(now)
        store.commit_watch(self.engine, self.cfg, rows[-1].id if rows else start, out + snippets, day)
        return len(out) + len(snippets)

    def group(self, e: Any, kind: str, subject: str, text: str, out: list[Message]) -> None:
        """Tell `text`, unless the same kind on the same subject was told within the window (then count it)."""
        key = (e.host, kind, subject)
        g = self.groups.get(key)
        if g is not None and e.time - g.opened < self.window:
            g.repeats += 1
            return
        if g is not None:
            out += self.flush(g)
        self.groups[key] = Group(e.time, e.host, kind, e.subject)
        out.append(Message("failure", text))

    def recovered(self, e: Any, kind: str, failure: Any, out: list[Message]) -> None:
        self.group(e, kind, e.subject, recovery_text(e, kind, failure), out)

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
