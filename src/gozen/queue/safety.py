"""The dome and the mount as queue:server keeps them from the weather: closed and parked when it turns
unsafe, checked until closed (an alarm if not in time), opened again once safe for a while.

`safety(engine)` is the board's word on observing now. `Enclosure` acts on it (`queue.close_when_unsafe`):
- unsafe (`safety.safe: false`; or no news — no fresh decision, or only stale weather — for
  `monitors.start_grace_s`, so a database or monitor restart is waited out): an event `safety_close`,
  CloseShutter, the telescope parked, ShutterStatus watched; not closed within `queue.close_deadline_s`:
  `dome_not_closed` (error, told to Slack at once), CloseShutter sent again every RESEND_EVERY_S, and
  `dome_closed` once it reports closed. The running recipe is stopped by queue:server (it asks
  `unsafe_now()` about once a second).
- closed for the weather, the dome stays closed (recipes that need the sky wait, `held()` says why)
  until it has been safe for `queue.reopen_after_safe_s` with `queue.auto_open`, or an operator
  resumes the queue (pause then resume, or maintenance then normal) after the close.
- before an exposure that needs the sky, a closed dome is opened (`open_dome`): at the first exposure
  after the server starts, or once `held()` allows it; `dome_opened`, or `dome_not_opened` (warning)
  and another try after OPEN_RETRY_S.
- in maintenance mode nothing moves: an engineer may be in the dome (one warning event instead).
A device that does not answer is told once (device_unreachable, subject dome or telescope) and tried
again with a growing backoff; the server never fails a pass for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from gozen.db.events import Event, recent_events
from gozen.db.states import QueueMode
from gozen.db.types import utcnow
from gozen.devices.dome import Dome, Shutter
from gozen.devices.telescope import Telescope, TelescopeError
from gozen.monitors.board import history, snapshot
from gozen.queue import store
from gozen.service import Backoff, Context, DeviceUnavailable

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0  # how often a running recipe asks the board whether it is still safe
POLL_S = 1.0  # ShutterStatus asked this often while the shutter moves
RESEND_EVERY_S = 30.0  # CloseShutter sent again this often while a dome that should be closed is not
OPEN_RETRY_S = 300.0  # after the dome would not open, recipes that need the sky wait this long
# monitor:safety's words when it has no news (right after it starts; the weather monitor late or away):
# no news is not safe, but it closes the dome only once it has lasted monitors.start_grace_s
NO_NEWS = ("waiting for the first weather reading", "weather data missing or stale")
GO_KINDS = ("queue_resumed", "queue_mode")  # an operator's "go on" (queue.store's events)


def safety(engine: Engine) -> tuple[bool, str]:
    """(safe to observe, why not) from the board; a missing or stale decision is unsafe."""
    snap = snapshot(engine, "safety.")
    safe, reasons = snap.get("safety.safe"), snap.get("safety.reasons")
    if safe is None or safe.stale:
        return False, "no fresh safety decision (is monitor:safety running?)"
    return safe.value is True, str(reasons.value) if reasons and reasons.value else ""


def fresh(engine: Engine) -> bool:
    """A fresh decision is on the board (safe or not)."""
    v = snapshot(engine, "safety.safe").get("safety.safe")
    return v is not None and not v.stale


@dataclass
class Watch:
    """A close in progress: from the decision to the shutter reporting closed."""

    started: float  # monotonic
    deadline: float
    sent_at: float | None = None  # CloseShutter last accepted
    alarmed: bool = False  # dome_not_closed told
    report: str = "the dome has not answered yet"
    quiet: bool = False  # a check after a restart: dome_closed only if the alarm was open


class Enclosure:
    """What queue:server does with the dome and the mount for the weather (see the module's words)."""

    def __init__(
        self, ctx: Context, telescope: Telescope, dome: Dome | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ctx, self.engine, self.q = ctx, ctx.engine, ctx.cfg.queue
        self.telescope, self.dome, self.clock = telescope, dome, clock
        self.grace_s = ctx.cfg.monitors.start_grace_s
        self.spell: str | None = None  # why it is unsafe, from the first act of an unsafe spell until safe again
        self.closed_for: str | None = None  # closed for the weather (why), until it opens again
        self.closed_at: datetime | None = None
        self.parked = False  # parked since the close
        self.watch: Watch | None = None
        self.safe_since: float | None = None  # monotonic; None while not safe
        self.news_since: float | None = None  # monotonic since no fresh decision was seen (None: fresh)
        self.checked_at = float("-inf")
        self.open_failed_at: float | None = None
        self.told_maintenance = False
        self.dome_down = ctx.trouble("device_unreachable", "device_back", "dome")
        self.park_trouble = ctx.trouble("telescope_not_parked", "telescope_parked", "telescope")
        self.dome_retry_at = self.park_retry_at = float("-inf")
        self.dome_backoff, self.park_backoff = Backoff(2.0, 60.0), Backoff(2.0, 60.0)

    @property
    def acting(self) -> bool:
        return self.q.close_when_unsafe

    # -- the weather -----------------------------------------------------------------
    def danger(self) -> str | None:
        """Why the observatory must close now (None: safe, or no news yet); keeps safe_since."""
        safe, why = safety(self.engine)
        now = self.clock()
        if safe:
            self.safe_since = self.safe_since if self.safe_since is not None else now
            self.news_since = self.spell = None
            if self.dome is None:  # nothing to open again: the next recipe points where it must
                self.closed_for = self.closed_at = None
            return None
        self.safe_since = None
        if fresh(self.engine) and not all(r.startswith(NO_NEWS) for r in why.split("; ")):
            self.news_since = None
            return why or "unsafe"
        self.news_since = self.news_since if self.news_since is not None else now
        return f"{why} for {now - self.news_since:.0f} s" if now - self.news_since >= self.grace_s else None

    def unsafe_now(self) -> str | None:
        """For a running recipe, about once a second: why it must leave the sky (None: it may go on)."""
        if not self.acting or self.clock() - self.checked_at < CHECK_EVERY_S:
            return None
        self.checked_at = self.clock()
        why = self.danger()
        if self.watch is not None:
            self.keep_closing(block=False)
        return why

    # -- each pass ---------------------------------------------------------------------
    def tend(self, mode: QueueMode) -> None:
        """Each pass of the server (idle, paused or between recipes): close when unsafe, watch a close."""
        if not self.acting:
            return
        why = self.danger()
        if mode == QueueMode.MAINTENANCE:
            if why and not self.told_maintenance:
                self.ctx.event(
                    "safety_not_closed",
                    "dome",
                    f"unsafe ({why}) in maintenance mode: queue:server leaves the dome and the telescope "
                    "to the engineer (switch to normal to have them closed and parked)",
                    "warning",
                    {"reasons": why},
                )
            self.told_maintenance = bool(why)
            return
        self.told_maintenance = False
        if why:
            self.close(why)
        elif self.watch is not None:
            self.keep_closing(block=False)

    def close(self, why: str, park: bool = True) -> None:
        """Close the dome (and park, unless a recipe that observes in any weather has the mount), then
        watch the shutter until it is closed or the deadline has passed."""
        if self.spell is None:  # a new unsafe spell: close (again: the dome may have been opened by hand)
            self.spell, self.closed_for, self.closed_at, self.parked = why, why, utcnow(), False
            store.set_activity(self.engine, f"unsafe ({why}): closing the dome, parking the telescope", self.ctx.host)
            self.ctx.event(
                "safety_close",
                "dome",
                f"unsafe ({why}): exposing stops, the telescope parks and the dome closes",
                "warning",
                {"reasons": why},
            )
            self.watch = Watch(self.clock(), self.clock() + self.q.close_deadline_s) if self.dome else None
        if self.watch is not None and self.watch.sent_at is None:
            self.send_close()
        if park and not self.parked:
            self.park()
        if self.watch is not None:
            self.keep_closing(block=park)

    def send_close(self) -> None:
        w = self.watch
        if self.dome is None or w is None or self.clock() < self.dome_retry_at:
            return
        try:
            self.dome.close_shutter()
        except DeviceUnavailable as err:
            self.dome_failed(err)
            w.report = f"the dome does not answer ({err.why})"
            return
        w.sent_at = self.clock()

    def park(self) -> None:
        if self.clock() < self.park_retry_at:
            return
        try:
            self.telescope.park(self.q.slew_timeout_s, self.ctx.sleep)  # goes on while the server stops
        except (TelescopeError, DeviceUnavailable) as err:
            self.park_retry_at = self.clock() + self.park_backoff.next()
            self.park_trouble.failing(f"the telescope did not park for the weather: {err}")
            return
        self.parked = True
        self.park_backoff.reset()
        self.park_trouble.ok("the telescope is parked")

    def keep_closing(self, block: bool) -> None:
        """Ask the shutter until it reports closed (dome_closed); the alarm at the deadline; CloseShutter
        again now and then. `block`: keep asking until closed or the alarm, else ask once."""
        while (w := self.watch) is not None:
            shutter = self.shutter(w)
            now = self.clock()
            if shutter is Shutter.CLOSED:
                if not w.quiet:
                    self.ctx.event("dome_closed", "dome", f"the dome is closed ({now - w.started:.0f} s after unsafe)")
                self.watch = None
                return
            if not w.alarmed and now >= w.deadline:
                w.alarmed = True
                self.ctx.event(
                    "dome_not_closed",
                    "dome",
                    f"the dome is not closed {self.q.close_deadline_s:g} s after it was told to close: {w.report}",
                    "error",
                    {"reasons": self.closed_for, "report": w.report},
                )
            if w.sent_at is None or now - w.sent_at >= RESEND_EVERY_S:
                self.send_close()
            if not block or w.alarmed or shutter is None:  # a dome not answering is asked again next pass
                return
            self.ctx.heartbeat(self.q.poll_s)
            if self.ctx.sleep(POLL_S):
                return

    def shutter(self, w: Watch | None = None) -> Shutter | None:
        """The shutter now; None when the dome does not answer (or is left alone for a while after that)."""
        if self.dome is None:
            return None
        if self.clock() < self.dome_retry_at:
            return None
        try:
            shutter = self.dome.status().shutter
        except DeviceUnavailable as err:
            self.dome_failed(err)
            if w is not None:
                w.report = f"the dome does not answer ({err.why})"
            return None
        self.dome_backoff.reset()
        self.dome_down.ok("the dome answers again")
        if w is not None:
            w.report = f"the shutter reports {shutter}"
        return shutter

    def dome_failed(self, err: DeviceUnavailable) -> None:
        self.dome_retry_at = self.clock() + self.dome_backoff.next()
        self.dome_down.failing(f"the dome does not answer: {err.why}")

    # -- opening again -----------------------------------------------------------------
    def held(self) -> str:
        """Why recipes that need the sky wait for the dome ("" when they may start)."""
        if not self.acting or self.dome is None:
            return ""
        now = self.clock()
        if self.watch is not None:
            return f"the dome is closing: {self.watch.report}" + (" (dome_not_closed)" if self.watch.alarmed else "")
        if self.closed_for is not None:
            if self.safe_since is None:
                return f"the dome was closed for unsafe weather ({self.closed_for})"
            if not self.operator_said_go():
                if not self.q.auto_open:
                    return (
                        "the dome was closed for unsafe weather; queue.auto_open is off: it opens once an operator "
                        "resumes the queue (pause, then resume)"
                    )
                left = self.q.reopen_after_safe_s - (now - self.safe_since)
                if left > 0:
                    return (
                        f"the dome was closed for unsafe weather; it opens once safe for "
                        f"{self.q.reopen_after_safe_s:g} s (in {left:.0f} s)"
                    )
        if self.open_failed_at is not None and now - self.open_failed_at < OPEN_RETRY_S:
            return f"the dome did not open; trying again in {OPEN_RETRY_S - (now - self.open_failed_at):.0f} s"
        return ""

    def operator_said_go(self) -> bool:
        """An operator resumed the queue (or set it to normal) after the dome was closed for the weather."""
        if self.closed_at is None:
            return False
        for kind in GO_KINDS:
            for e in recent_events(self.engine, 5, kind=kind, source="queue"):  # queue.store's operator events
                if e.time > self.closed_at and (kind != "queue_mode" or (e.data or {}).get("value") == "normal"):
                    return True
        return False

    def open_dome(self, why: str, pause: Callable[[float], object]) -> bool:
        """Before an exposure that needs the sky: the dome open (opened if closed); False if it would not
        open. `pause(seconds)` waits between questions (and may raise to leave)."""
        if not self.acting or self.dome is None:
            return True
        w = Watch(self.clock(), self.clock() + self.q.close_deadline_s)
        try:
            if self.dome.status().shutter is Shutter.OPEN:
                if self.closed_for is not None:
                    self.opened("the dome was found open")
                return True
            self.dome.open_shutter()
            store.set_activity(self.engine, f"opening the dome {why}", self.ctx.host)
            while (shutter := self.dome.status().shutter) is not Shutter.OPEN:
                w.report = f"the shutter reports {shutter}"
                if self.clock() >= w.deadline or shutter is Shutter.ERROR:
                    raise TimeoutError(w.report)
                pause(POLL_S)
        except (DeviceUnavailable, TimeoutError) as err:
            self.open_failed_at = self.clock()
            report = w.report
            if isinstance(err, DeviceUnavailable):
                self.dome_failed(err)
                report = f"the dome does not answer ({err.why})"
            self.ctx.event(
                "dome_not_opened",
                "dome",
                f"the dome did not open within {self.q.close_deadline_s:g} s: {report}; recipes that need the sky "
                f"wait, and it is tried again in {OPEN_RETRY_S:g} s",
                "warning",
            )
            return False
        self.opened(f"the dome is open ({why}; {self.clock() - w.started:.0f} s to open)")
        return True

    def opened(self, message: str) -> None:
        self.ctx.event("dome_opened", "dome", message)
        self.dome_backoff.reset()
        self.dome_down.ok("the dome answers again")
        self.closed_for = self.closed_at = self.open_failed_at = None
        self.parked = False

    # -- a restart ---------------------------------------------------------------------
    def restore(self) -> None:
        """After a restart: still closed for the weather if the last close (safety_close) came after the last
        opening (dome_opened); safe since when, from the board's history of safety.safe."""
        closes, opens = self.last("safety_close"), self.last("dome_opened")
        if closes is not None and (opens is None or closes.id > opens.id):
            self.closed_for = str((closes.data or {}).get("reasons") or "unsafe")
            self.closed_at = closes.time
            alarm, ended = self.last("dome_not_closed"), self.last("dome_closed")
            told = alarm is not None and (ended is None or alarm.id > ended.id)  # its end is still to be told
            now = self.clock()
            self.watch = Watch(now, now + self.q.close_deadline_s, alarmed=told, quiet=not told) if self.dome else None
        since = safe_since(self.engine, self.q.reopen_after_safe_s + 3600)
        if since is not None:
            self.safe_since = self.clock() - (utcnow() - since).total_seconds()

    def last(self, kind: str) -> Event | None:
        """This server's newest event of `kind`."""
        mine = [e for e in recent_events(self.engine, 20, kind, self.ctx.program) if e.host == self.ctx.host]
        return mine[0] if mine else None


def safe_since(engine: Engine, window_s: float) -> datetime | None:
    """Since when safety.safe has been true without a break (in the last window_s); None if it is not now."""
    start = None
    for t, v in reversed(history(engine, "safety.safe", utcnow() - timedelta(seconds=window_s))):
        if v is not True:
            break
        start = t
    return start
