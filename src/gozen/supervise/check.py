"""`gozen fleet check`: from any host, is every host of the config ready? One verdict per host.

For each host: its supervisord answers and runs this gozen version (supervisord's `identifier`,
rendered `gozen-<version>-<host>`); its clock is within `CLOCK_WITHIN_S` of this host's (the Date
headers of supervisord's answers); its programs reach the database (a fresh heartbeat on the
status board); each module of its rsync daemon is writable (a probe file sent with the rsync
password, then deleted; read-only DAQ modules are listed); its volumes' and nodes' free space
(the board's `df.<name>.*`). And once: the database answers and is migrated to the head revision.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gozen import __version__
from gozen.config import Config, Host
from gozen.daq.snapshot import StatusSnapshot
from gozen.db.engine import ping
from gozen.db.migrate import current_revision, head_revision
from gozen.monitors.board import snapshot
from gozen.service import first_line
from gozen.supervise.client import HostUnreachable, SupervisorClient
from gozen.transfer import rsync
from gozen.transfer.rsyncd import modules_for

CLOCK_WITHIN_S = 1.0
TIMEOUT_S = 5.0


@dataclass
class HostCheck:
    """One host's line: a short text per aspect, and what is wrong (nothing: the host is ready)."""

    host: str
    supervisord: str = ""
    version: str = ""
    clock: str = ""
    database: str = ""
    rsync: str = ""
    free: str = ""
    troubles: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.troubles

    def trouble(self, why: str) -> str:
        self.troubles.append(why)
        return why


@dataclass(frozen=True)
class DatabaseCheck:
    shown: str  # the URL without its password
    ok: bool
    text: str


def check_database(engine: Engine) -> DatabaseCheck:
    """The database answers and is at the head revision."""
    shown = engine.url.render_as_string(hide_password=True)
    try:
        ping(engine)
        current, head = current_revision(engine), head_revision()
    except SQLAlchemyError as err:
        cause = getattr(err, "orig", None) or err
        return DatabaseCheck(shown, False, f"does not answer: {type(cause).__name__}: {first_line(cause)}")
    if current != head:
        return DatabaseCheck(shown, False, f"at revision {current}, not migrated to {head} (`gozen db upgrade`)")
    return DatabaseCheck(shown, True, f"answers, migrated (revision {head})")


def check_fleet(cfg: Config, engine: Engine, timeout_s: float = TIMEOUT_S) -> tuple[DatabaseCheck, list[HostCheck]]:
    """Every check of every host, the hosts asked at once."""
    database = check_database(engine)
    try:
        board = snapshot(engine) if database.ok else None
    except SQLAlchemyError:
        board = None
    with ThreadPoolExecutor(max_workers=min(32, len(cfg.hosts))) as pool:
        hosts = list(pool.map(lambda h: check_host(cfg, h, board, timeout_s), cfg.hosts))
    return database, hosts


def check_host(cfg: Config, host: Host, board: StatusSnapshot | None, timeout_s: float) -> HostCheck:
    c = HostCheck(host.name)
    _supervisord(c, host, timeout_s)
    c.database = _heartbeats(c, board) if board is not None else "unknown (the database does not answer)"
    c.rsync = _rsync(c, cfg, host, timeout_s)
    c.free = _free(c, cfg, host, board)
    return c


def _supervisord(c: HostCheck, host: Host, timeout_s: float) -> None:
    try:
        ident = SupervisorClient(host, timeout_s).identify(CLOCK_WITHIN_S)
    except HostUnreachable as err:
        c.supervisord = c.trouble(f"unreachable: {str(err).removeprefix(f'{host.name}: ')}")
        return
    except Exception as err:  # a Fault: supervisord answered, but not this call
        c.supervisord = c.trouble(f"answers, but: {first_line(err)}")
        return
    c.supervisord = "answers"
    version = version_of(ident.identifier, host.name)
    if version is None:
        c.version = c.trouble(f"unknown (identifier {ident.identifier!r}: not started by this gozen's `gozen up`)")
    elif version != __version__:
        c.version = c.trouble(f"{version}, not {__version__}")
    else:
        c.version = version
    if ident.clock_offset_s is None:
        c.clock = c.trouble("unknown (supervisord's answers carry no Date)")
        return
    low, high = ident.clock_offset_s
    shown = f"{(low + high) / 2:+.1f} s (±{(high - low) / 2:.1f})"
    if high < -CLOCK_WITHIN_S or low > CLOCK_WITHIN_S:
        c.clock = c.trouble(f"{shown}: more than {CLOCK_WITHIN_S:g} s off this host's")
    else:
        c.clock = shown


def version_of(identifier: str, host: str) -> str | None:
    """The gozen version in supervisord's identifier `gozen-<version>-<host>` (None: another form)."""
    head, tail = "gozen-", f"-{host}"
    if not identifier.startswith(head) or not identifier.endswith(tail) or len(identifier) <= len(head + tail):
        return None
    return identifier[len(head) : -len(tail)]


def _heartbeats(c: HostCheck, board: StatusSnapshot) -> str:
    """Do the host's programs reach the database? Their heartbeats on the board say so."""
    prefix = f"service.{c.host}."
    beats = [(k, v) for k, v in board.values.items() if k.startswith(prefix) and k.endswith(".alive_at")]
    fresh = [v for _, v in beats if not v.stale]
    if not beats:
        return c.trouble("no program of it has beaten on the status board")
    if not fresh:
        return c.trouble(f"no fresh heartbeat from its {len(beats)} programs")
    now = datetime.fromisoformat(board.time)
    age_s = min((now - datetime.fromisoformat(v.time)).total_seconds() for v in fresh)
    return f"reached ({len(fresh)} programs beat, last {age_s:.0f} s ago)"


def _rsync(c: HostCheck, cfg: Config, host: Host, timeout_s: float) -> str:
    """Each module of the host's rsync daemon: a probe file sent and deleted (read-only ones: listed)."""
    if host.rsync_port is None:
        return "no daemon"
    modules = modules_for(cfg, host)
    if not modules:
        return "daemon, no modules"
    password = cfg.rsync_password()
    done, failed = [], []
    for m in modules:
        url = cfg.rsync_module_url(host, m.name)
        assert url is not None
        try:
            (_list if m.read_only else _probe)(url, password, timeout_s)
            done.append(f"{m.name} {'readable' if m.read_only else 'writable'}")
        except rsync.RsyncError as err:
            failed.append(c.trouble(f"{m.name}: {err.strerror or err}"))
    return "; ".join(failed + done)


def _probe(url: str, password: str | None, timeout_s: float) -> None:
    """Send a small file to the module, then delete it: the module takes writes with our password."""
    name = f".gozen-fleet-check-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="gozen-check-") as d:
        (Path(d) / name).write_bytes(b"gozen fleet check\n")
        rsync.send(Path(d), [name], url, timeout_s, password=password)
    rsync.remove(url, [name], timeout_s, password=password)


def _list(url: str, password: str | None, timeout_s: float) -> None:
    t = max(1, round(timeout_s))
    env = {**os.environ, "RSYNC_PASSWORD": password} if password is not None else None
    cmd = ["rsync", f"--timeout={t}", f"--contimeout={t}", "--list-only", f"{url}/"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s * 2 + 10, env=env)
    except subprocess.TimeoutExpired:
        raise rsync.RsyncError(30, f"listing {url} did not finish") from None
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        raise rsync.RsyncError(p.returncode, f"rsync exit {p.returncode}: {lines[0] if lines else ''}")


def _free(c: HostCheck, cfg: Config, host: Host, board: StatusSnapshot | None) -> str:
    """Free space of the host's DAQ volumes and storage nodes, as storage:dfmonitor last measured it."""
    places = [v.name for v in cfg.daq_volumes if cfg.host_of(v).name == host.name]
    places += [n.name for n in cfg.storage_nodes if cfg.host_of(n).name == host.name]
    if not places:
        return ""
    if board is None:
        return "unknown"
    out = []
    for name in places:
        free, used = board.values.get(f"df.{name}.free_bytes"), board.values.get(f"df.{name}.used_pct")
        online = board.values.get(f"df.{name}.online")
        if online is not None and online.value is False:
            out.append(c.trouble(f"{name} offline"))
        elif free is None or used is None or free.value is None or used.value is None:
            out.append(f"{name} ?")
        else:
            text = f"{name} {float(free.value) / 1e9:.1f} GB ({100 - float(used.value):.0f}% free)"
            if float(used.value) >= cfg.monitors.df_alarm_pct:
                text = c.trouble(f"{text}: over {cfg.monitors.df_alarm_pct:g}% used")
            out.append(text + (" (stale)" if free.stale else ""))
    return ", ".join(out)
