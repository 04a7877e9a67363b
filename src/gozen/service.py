"""The one program skeleton: every long-running gozen program survives faults the same way.

A program is a `Service` with `run_once()` (one pass) and a period, driven by `run_service`,
as rucio's daemons are driven by `run_daemon`. The runner owns the policy, so no program
writes its own loop:

- SIGTERM or SIGINT: the pass in hand finishes, `teardown()` runs, the process exits 0.
- An exception in a pass is logged with its traceback and the program's name; the next pass
  runs after the period (or a growing backoff while passes keep failing). The program never
  dies of it: supervisord would only restart it into the same fault.
- A database or device that cannot be reached (`is_outage`) is waited for with capped
  exponential backoff (1 s, 2 s, 4 s ... `MAX_BACKOFF_S`); the engine's pool reconnects.
- A failure is recorded as an event once and its recovery once (`Trouble`), however long it
  lasts; events recorded while the database is away are spooled with their real time
  (`gozen.db.events`) and written when it returns.
- A heartbeat on the status board (`service.<host>.<group:name>.alive_at`) goes stale when the
  program hangs, so a program that is RUNNING in supervisord but does nothing is visible.

Programs whose loop must stay their own (the DAQ readout and writer hot loops, uvicorn, the
supervisord event listener) are functions `main(ctx)` that use the same `Context`: its stop
event, `sleep`, `event`, `trouble`, `heartbeat` and `is_outage`.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from gozen.config import Config
from gozen.db.engine import is_unavailable, make_engine
from gozen.db.events import Severity, flush_spool, record_event, spooled, use_spool

log = logging.getLogger(__name__)

HOST_ENV = "GOZEN_HOST"
MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 15.0  # short: every program is back within ~15 s of the database (a ping costs nothing)
HEARTBEAT_EVERY_S = 10.0  # at most this often: each is a write to the status board


class DeviceUnavailable(Exception):
    """A device that does not answer now (refused, timed out, powered off): wait and try again."""

    def __init__(self, device: str, why: str) -> None:
        super().__init__(f"{device}: {why}")
        self.device, self.why = device, why


def is_outage(err: BaseException) -> bool:
    """True when `err` means something this program needs is away (the database, a device), as
    opposed to a bug or bad data: the answer is to wait and try again, not to give up."""
    return isinstance(err, DeviceUnavailable) or is_unavailable(err)


def this_host() -> str:
    """The configured host name this process runs as: $GOZEN_HOST, else the machine's name."""
    return os.environ.get(HOST_ENV) or socket.gethostname()


@dataclass
class Trouble:
    """One thing that can go wrong and come right again, told once each way.

    `failing(why)` records `kind_down` the first time (later calls only log); `ok()` records
    `kind_back` once, if it was failing. The state is the program's: a restarted program that
    finds the same fault tells it again, once.
    """

    ctx: Context
    kind_down: str
    kind_back: str
    subject: str
    severity: Severity = "error"
    source: str | None = None
    since: float | None = None  # time.monotonic() of the first failure, while failing
    why: str = ""

    @property
    def active(self) -> bool:
        return self.since is not None

    @property
    def down_for_s(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def failing(self, why: str, data: dict[str, Any] | None = None) -> None:
        self.why = why
        if self.since is not None:
            log.debug("%s: %s still failing: %s", self.ctx.program, self.subject, why)
            return
        self.since = time.monotonic()
        log.error("%s: %s: %s", self.ctx.program, self.subject, why)
        self.ctx.event(self.kind_down, self.subject, why, self.severity, data, source=self.source)

    def ok(self, message: str | None = None) -> None:
        if self.since is None:
            return
        message = message or f"{self.subject} is back after {self.down_for_s:.0f} s"
        self.since, self.why = None, ""
        log.info("%s: %s", self.ctx.program, message)
        self.ctx.event(self.kind_back, self.subject, message, "info", source=self.source)


@dataclass
class Context:
    """What a program is given: its config, host, database, name, registry args and stop signal."""

    cfg: Config
    host: str
    engine: Engine
    program: str  # group:name
    args: dict[str, Any] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    _last_heartbeat: float = float("-inf")

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait up to `seconds`; True when the program was asked to stop meanwhile."""
        return self.stop.wait(max(0.0, seconds))

    def event(
        self,
        kind: str,
        subject: str,
        message: str,
        severity: Severity = "info",
        data: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> None:
        """Record an event from this program (spooled while the database is away)."""
        record_event(
            self.engine,
            host=self.host,
            source=source or self.program,
            kind=kind,
            subject=subject,
            message=message,
            severity=severity,
            data=data,
        )

    def trouble(
        self, kind_down: str, kind_back: str, subject: str, severity: Severity = "error", source: str | None = None
    ) -> Trouble:
        return Trouble(self, kind_down, kind_back, subject, severity, source)

    def heartbeat(self, period_s: float, force: bool = False) -> None:
        """Say on the status board that this program is alive (at most every HEARTBEAT_EVERY_S)."""
        from gozen.monitors.board import heartbeat

        now = time.monotonic()
        if force or now - self._last_heartbeat >= HEARTBEAT_EVERY_S:
            heartbeat(self.engine, self.host, self.program, max_age_s=max(60.0, 3 * period_s + 30))
            self._last_heartbeat = now

    def catch_up(self) -> None:
        """After the database answers again: write the events spooled meanwhile."""
        if spooled():
            n = flush_spool(self.engine)
            if n:
                log.info("%s: wrote %d events spooled while the database was away", self.program, n)


def make_context(
    cfg: Config, program: str, args: dict[str, Any] | None = None, host: str | None = None, engine: Engine | None = None
) -> Context:
    """The context of `gozen run GROUP:NAME`: this host, a fresh engine, the host's event spool."""
    use_spool(cfg.data_dir / "spool")
    return Context(cfg, host or this_host(), engine or make_engine(cfg.database_url), program, dict(args or {}))


def stop_on_signals(ctx: Context) -> None:
    """SIGTERM (supervisord's stop) and SIGINT (Ctrl-C at `gozen up`) ask the program to stop."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers (tests run services in threads)

    def handler(signum: int, _frame: object) -> None:
        log.info("%s: %s: stopping after this pass", ctx.program, signal.Signals(signum).name)
        ctx.stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


class Backoff:
    """Capped exponential waits with a little jitter, so hosts that lost the same database do
    not all come back in the same second."""

    def __init__(self, first_s: float = MIN_BACKOFF_S, max_s: float = MAX_BACKOFF_S) -> None:
        self.first_s, self.max_s, self.failures = first_s, max_s, 0

    def next(self) -> float:
        wait = min(self.max_s, self.first_s * 2**self.failures)
        self.failures += 1
        return wait * random.uniform(0.9, 1.1)

    def reset(self) -> None:
        self.failures = 0


class Service:
    """A long-running program: subclasses set `period_s` and write `run_once()`."""

    period_s: float = 10.0

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def setup(self) -> None:
        """Once, before the first pass (run again on the next try if the database was away)."""

    def run_once(self) -> bool | None:
        """One pass. Return True when there is more work right now (no wait before the next)."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Once, after the last pass."""


def run_service(service: Service) -> int:
    """Run `service` until asked to stop; the exit code (0: a clean stop)."""
    ctx = service.ctx
    stop_on_signals(ctx)
    database = ctx.trouble("database_unavailable", "database_back", "database")
    device: Trouble | None = None
    passes = ctx.trouble("pass_failed", "pass_ok", ctx.program)
    backoff = Backoff()
    ready = False
    log.info("%s: running on %s (every %.3g s)", ctx.program, ctx.host, service.period_s)
    while not ctx.stopping:
        started = time.monotonic()
        try:
            if not ready:
                service.setup()
                ready = True
            more = service.run_once()
            ctx.heartbeat(service.period_s)
        except Exception as err:
            if isinstance(err, DeviceUnavailable):
                if device is None or device.subject != err.device:
                    device = ctx.trouble("device_unreachable", "device_back", err.device)
                _tell(device, str(err))
            elif is_unavailable(err):
                _tell(database, f"the database does not answer: {type(err).__name__}: {first_line(err)}")
            else:
                log.exception("%s: pass failed", ctx.program)
                _tell(passes, f"{type(err).__name__}: {first_line(err)}")
                ctx.sleep(max(service.period_s, backoff.next()))
                continue
            ctx.sleep(backoff.next())
            continue
        backoff.reset()
        try:
            if database.active:
                ctx.catch_up()
                database.ok(f"the database answers again after {database.down_for_s:.0f} s")
            else:
                ctx.catch_up()
            if device is not None:
                device.ok()
            passes.ok("passes succeed again")
        except Exception as err:  # the database went away again right after the pass
            log.warning("%s: could not record the recovery yet: %s", ctx.program, first_line(err))
        if not more:
            ctx.sleep(service.period_s - (time.monotonic() - started))
    try:
        service.teardown()
    finally:
        log.info("%s: stopped", ctx.program)
    return 0


def _tell(trouble: Trouble, why: str) -> None:
    """Record a trouble; if even the spool refuses (disk full), log it and keep running."""
    try:
        trouble.failing(why)
    except Exception:
        log.exception("%s: could not record %s", trouble.ctx.program, trouble.kind_down)


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:300]
