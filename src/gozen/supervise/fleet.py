"""`fleet:watch`: every few seconds, is every host's supervisord, rsync daemon and the database there?

A host, daemon or database that has not answered for `DOWN_AFTER_S` (a few passes, so one slow
answer is no alarm) is one error event (`host_unreachable`, `rsyncd_unreachable`,
`database_unreachable`; subject: the host name, or "database") and its return one info event
(`host_back`, `rsyncd_back`, `database_back`). courier:watch turns both into messages.

Each pass also puts each host's state on the status board (no history), under `fleet.<host>.`:
`reachable` (the time of that reading is when it was checked), `error`, `unreachable_since`
(ISO, while it does not answer), `programs` (JSON: the programs supervisord listed) and
`programs_at`, written only while the host answers: so the Processes page and `gozen ps` show an
unreachable host's last known programs (`last_seen`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from gozen.config import Host
from gozen.db.engine import is_unavailable, make_engine, ping
from gozen.db.types import utcnow
from gozen.monitors.board import Reading, publish, snapshot
from gozen.service import Context, Service, Trouble, first_line
from gozen.supervise.client import HostStatus, ProcessInfo, fetch_all

log = logging.getLogger(__name__)

PREFIX = "fleet."
CALL_TIMEOUT_S = 3.0  # one XML-RPC call, one rsync greeting, one database connection
RSYNC_PROTOCOL = b"@RSYNCD: 31.0\n"


class RsyncdUnreachable(Exception):
    """An rsync daemon that refused, timed out or did not greet as rsync daemons do."""


def rsyncd_greeting(address: str, port: int, timeout_s: float = CALL_TIMEOUT_S) -> str:
    """The `@RSYNCD: <protocol>` line the daemon at address:port greets with; asks for nothing else."""
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            data = b""
            while b"\n" not in data and len(data) < 256:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            line = data.partition(b"\n")[0].decode("ascii", "replace").strip()
            if not line.startswith("@RSYNCD:"):
                raise RsyncdUnreachable(f"{address}:{port} answered {line[:60]!r}, not an rsync daemon's greeting")
            try:  # leave politely: our protocol, then an empty module list request
                s.sendall(RSYNC_PROTOCOL + b"#list\n")
            except OSError:
                pass
            return line
    except ConnectionRefusedError:
        raise RsyncdUnreachable(f"{address}:{port}: connection refused (rsync daemon not running?)") from None
    except TimeoutError:
        raise RsyncdUnreachable(f"{address}:{port}: timed out") from None
    except OSError as err:
        raise RsyncdUnreachable(f"{address}:{port}: {err.strerror or err}") from None


# -- the board: what was last seen of each host -------------------------------------------


@dataclass(frozen=True)
class ProgramSeen:
    """A program as supervisord last listed it."""

    name: str  # group:name
    state: str
    pid: int | None
    uptime_s: float | None
    description: str


@dataclass(frozen=True)
class HostSeen:
    """What fleet:watch last saw of a host."""

    host: str
    reachable: bool
    checked_at: datetime
    stale: bool  # the watcher has not looked for a while: fleet:watch may not be running
    error: str | None = None
    unreachable_since: datetime | None = None
    programs: list[ProgramSeen] = field(default_factory=list)
    programs_at: datetime | None = None  # when the programs were listed (the last time it answered)


def _program_seen(p: ProcessInfo) -> dict[str, Any]:
    return {"name": p.full_name, "state": p.state, "pid": p.pid, "uptime_s": p.uptime_s, "description": p.description}


def host_readings(status: HostStatus, since: datetime | None, max_age_s: float) -> list[Reading]:
    """The board readings of one host's check (its programs only when it answered)."""
    key = f"{PREFIX}{status.host}."
    out = [
        Reading(key + "reachable", status.reachable, "", max_age_s),
        Reading(key + "error", status.error, "", max_age_s),
        Reading(key + "unreachable_since", since.isoformat() if since else None, "", max_age_s),
    ]
    if status.reachable:
        programs = json.dumps([_program_seen(p) for p in status.processes])
        out += [
            Reading(key + "programs", programs, "", max_age_s),
            Reading(key + "programs_at", utcnow().isoformat(), "", max_age_s),
        ]
    return out


def last_seen(engine: Engine) -> dict[str, HostSeen]:
    """Every host fleet:watch has put on the board, by name."""
    fields: dict[str, dict[str, Any]] = {}
    board = snapshot(engine, PREFIX)
    for key, v in board.values.items():
        host, _, name = key.removeprefix(PREFIX).rpartition(".")
        d = fields.setdefault(host, {})
        d[name] = v.value
        if name == "reachable":
            d["checked_at"], d["stale"] = datetime.fromisoformat(v.time), v.stale
    out = {}
    for host, d in fields.items():
        if "reachable" not in d:
            continue
        programs = [ProgramSeen(**p) for p in json.loads(d["programs"])] if d.get("programs") else []
        out[host] = HostSeen(
            host,
            bool(d["reachable"]),
            d["checked_at"],
            d["stale"],
            d.get("error"),
            _when(d.get("unreachable_since")),
            programs,
            _when(d.get("programs_at")),
        )
    return out


def _when(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


# -- the watcher --------------------------------------------------------------------------


@dataclass
class Watched:
    """One thing watched: told unreachable once it has failed for down_after_s, back once when it answers."""

    trouble: Trouble
    what: str  # "store1's supervisord at 127.0.0.12:9001"
    failing_since: datetime | None = None  # the first failed check of this outage
    failing_mono: float = 0.0

    def failed(self, why: str, down_after_s: float, data: dict[str, Any] | None = None) -> None:
        if self.failing_since is None:
            self.failing_since, self.failing_mono = utcnow(), time.monotonic()
        down_for_s = time.monotonic() - self.failing_mono
        if down_for_s >= down_after_s and not self.trouble.active:
            since = f"{self.failing_since:%H:%M:%S} UTC"
            message = f"{self.what} has not answered for {down_for_s:.0f} s (since {since}): {why}"
            self.trouble.failing(message, {**(data or {}), "since": self.failing_since.isoformat(), "error": why})

    def answered(self) -> None:
        if self.trouble.active and self.failing_since is not None:
            down_for_s = time.monotonic() - self.failing_mono
            since = f"{self.failing_since:%H:%M:%S} UTC"
            self.trouble.ok(f"{self.what} answers again after {down_for_s:.0f} s (unreachable since {since})")
        self.failing_since = None


class _WatchContext(Context):
    """The watcher's context: a heartbeat the database refuses is skipped, not a reason to back off,
    so the watcher keeps looking at the hosts every period while the database is away."""

    def heartbeat(self, period_s: float, force: bool = False) -> None:
        try:
            super().heartbeat(period_s, force)
        except SQLAlchemyError as err:
            if not is_unavailable(err):
                raise
            log.debug("no heartbeat while the database is away: %s", first_line(err))


class FleetWatch(Service):
    """`fleet:watch`: one pass every `period_s` over every host, its rsync daemon and the database."""

    period_s = 5.0
    down_after_s = 15.0  # a failure lasting this long (a few passes) is told
    call_timeout_s = CALL_TIMEOUT_S

    def __init__(self, ctx: Context) -> None:
        super().__init__(_WatchContext(**{f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx)}))
        self.cfg = ctx.cfg
        url = ctx.engine.url
        self.db_shown = url.render_as_string(hide_password=True)
        if url.get_backend_name() == "postgresql":  # a database that does not answer costs one timeout
            self.ping_engine = make_engine(
                url.render_as_string(hide_password=False),
                poolclass=NullPool,
                connect_args={"connect_timeout": max(1, round(self.call_timeout_s))},
            )
        else:
            self.ping_engine = ctx.engine
        self.watched: dict[tuple[str, str], Watched] = {}

    def _watched(self, kind: str, subject: str, what: str) -> Watched:
        key = (kind, subject)
        if key not in self.watched:
            self.watched[key] = Watched(self.ctx.trouble(f"{kind}_unreachable", f"{kind}_back", subject), what)
        return self.watched[key]

    def run_once(self) -> None:
        hosts = self.cfg.hosts
        rsync_hosts = [h for h in hosts if h.rsync_port]
        with ThreadPoolExecutor(max_workers=2 + len(rsync_hosts)) as pool:
            db_future = pool.submit(self._ping_database)
            rsync_futures = {h.name: pool.submit(self._rsyncd_error, h) for h in rsync_hosts}
            statuses = fetch_all(hosts, timeout_s=self.call_timeout_s)
            db_error = db_future.result()
            rsync_errors = {name: f.result() for name, f in rsync_futures.items()}
        self._database(db_error)
        readings: list[Reading] = []
        max_age_s = 3 * self.period_s + 30
        for h, status in zip(hosts, statuses, strict=True):
            w = self._watched("host", h.name, f"{h.name}'s supervisord at {status.address}:{status.port}")
            if status.reachable:
                w.answered()
            else:
                why = (status.error or "").removeprefix(f"{h.name}: ")
                w.failed(why, self.down_after_s, {"address": status.address, "port": status.port})
            readings += host_readings(status, w.failing_since, max_age_s)
        for h in rsync_hosts:
            self._rsyncd(h, rsync_errors[h.name])
            readings.append(Reading(f"{PREFIX}{h.name}.rsyncd", rsync_errors[h.name] is None, "", max_age_s))
        self._publish(readings, db_error is None)

    def _ping_database(self) -> str | None:
        try:
            ping(self.ping_engine)
        except SQLAlchemyError as err:
            cause = getattr(err, "orig", None) or err
            return f"{type(cause).__name__}: {first_line(cause)}"
        return None

    def _database(self, error: str | None) -> None:
        w = self._watched("database", "database", f"the database {self.db_shown}")
        if error is None:
            if w.trouble.active:
                try:
                    self.ctx.catch_up()  # its outage event first (it was spooled), then its return
                except SQLAlchemyError as err:
                    if not is_unavailable(err):
                        raise
                    return  # away again already: the next pass tells its return
            w.answered()
        else:
            w.failed(error, self.down_after_s)

    def _rsyncd_error(self, h: Host) -> str | None:
        assert h.rsync_port is not None
        try:
            rsyncd_greeting(h.address, h.rsync_port, self.call_timeout_s)
        except RsyncdUnreachable as err:
            return str(err)
        return None

    def _rsyncd(self, h: Host, error: str | None) -> None:
        w = self._watched("rsyncd", h.name, f"{h.name}'s rsync daemon at {h.address}:{h.rsync_port}")
        if error is None:
            w.answered()
        else:
            why = error.removeprefix(f"{h.address}:{h.rsync_port}: ")
            w.failed(why, self.down_after_s, {"address": h.address, "port": h.rsync_port})

    def _publish(self, readings: list[Reading], database_answers: bool) -> None:
        if not database_answers:
            return  # the board is in the database; the next pass writes it
        try:
            publish(self.ctx.engine, self.ctx.program, readings, history=False)
        except SQLAlchemyError as err:
            if not is_unavailable(err):
                raise
            log.warning("%s: status board not written, the database went away: %s", self.ctx.program, first_line(err))
