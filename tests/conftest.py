"""Fixtures that build real things: data dirs, databases, supervisord hosts, the web app."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy.exc
import yaml
from playwright.sync_api import expect
from sqlalchemy import Engine

from gozen.config import Config, load_config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import downgrade, upgrade
from gozen.supervise.client import SupervisorClient
from gozen.web.auth import hash_password, token_sha256

# Every shared-memory ring the tests (and the observatories they start) make goes in one
# folder of our own, removed at the end: rings are large and /dev/shm is memory. Set before
# anything imports gozen.daq.layout, which reads it once.
_SHM = Path(tempfile.mkdtemp(prefix="gozen-tests-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
os.environ["GOZEN_SHM_DIR"] = str(_SHM)

DATA = Path(__file__).parent / "data"
TICKER = DATA / "ticker.py"
PG_ADMIN_URL = os.environ.get("GOZEN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

# Deadlines for waiting on a condition. A wait ends as soon as the condition holds, so a long
# deadline costs nothing on an idle machine and keeps the tests passing on a busy one
# (`.ci/run` runs the live tests with both cores taken by a CPU hog).
WAIT_S = 120.0
START_S = 300.0  # a supervisord host, its programs, the web app coming up
SUPERVISOR_RPC_S = 30.0  # one XML-RPC call from a test (the product's own default is 3 s)
expect.set_options(timeout=int(WAIT_S * 1000))  # Playwright's assertions (default 5 s)

OPERATOR = ("ops", "correct horse battery")
VIEWER = ("guest", "just looking")
API_TOKEN = "test-token-9f8e7d6c5b4a"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "live: starts real supervisord hosts (run under a CPU hog by .ci/run)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `live` every test that starts supervisord: through the `fleet` fixture or `start_fleet`."""
    for item in items:
        module = getattr(item, "module", None)
        if "fleet" in getattr(item, "fixturenames", ()) or getattr(module, "start_fleet", None) is start_fleet:
            item.add_marker(pytest.mark.live)


@pytest.fixture(autouse=True, scope="session")
def remove_rings() -> Iterator[None]:
    yield
    shutil.rmtree(_SHM, ignore_errors=True)


PORTS_FROM = 20000  # below the kernel's ephemeral ports (32768-60999), which clients' sockets take
PORTS_PER_WORKER = 2000
_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now that no other test of this run is given: each pytest-xdist worker hands out its
    own range below the ephemeral ports, never the same port twice. (Port 0's answer could go to two
    workers at once: a live test's programs bind theirs a minute after the config names them.)"""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    low = PORTS_FROM + index * PORTS_PER_WORKER
    start = (os.getpid() * 37) % PORTS_PER_WORKER  # a subprocess of the same worker starts elsewhere
    for i in range(PORTS_PER_WORKER):
        port = low + (start + i) % PORTS_PER_WORKER
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port left in {low}..{low + PORTS_PER_WORKER - 1}")


# What a busy machine makes a single look fail with, though the condition may hold a moment later.
TRANSIENT = (httpx.TransportError, sqlalchemy.exc.OperationalError, ConnectionError, TimeoutError)


def wait_until(
    predicate: Callable[[], Any],
    timeout_s: float = WAIT_S,
    interval_s: float = 0.2,
    what: str = "condition",
    dump: Callable[[], str] | None = None,
) -> Any:
    """Poll `predicate` until it returns something true, and return that.

    A look that fails the way a loaded machine makes it fail (an HTTP timeout, a locked SQLite)
    counts as "not yet". On timeout the error carries the last value, the last such error and,
    if given, `dump()`: the states and logs that say why (see `Fleet.dump`)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    error: BaseException | None = None
    while True:
        try:
            last, error = predicate(), None
        except TRANSIENT as err:
            last, error = None, err
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    message = f"timed out after {timeout_s:g} s waiting for {what} (last: {last!r}"
    message += f"; last error: {error!r})" if error else ")"
    raise AssertionError(message + _dump_text(dump))


def _dump_text(dump: Callable[[], str] | None) -> str:
    if dump is None:
        return ""
    try:
        return "\n" + dump()
    except Exception as err:  # noqa: BLE001 - the dump must never hide the timeout itself
        return f"\n(diagnostics failed: {err!r})"


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"({err.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def fake_command(tmp: Path, monkeypatch: pytest.MonkeyPatch, name: str, script: str) -> Path:
    """A shell script `name` first on PATH, standing in for a system command (zpool, upsc)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}")
    path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return path


def ticker(name: str, *args: object) -> str:
    return " ".join([sys.executable, str(TICKER), name, *map(str, args)])


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of its own (root only), to fill a filesystem up for real."""
    p = tmp_path / "small-fs"
    p.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(p)], check=True)
    yield p
    subprocess.run(["umount", str(p)], check=False)


@contextmanager
def scratch_pg_database(prefix: str = "gozen_t") -> Iterator[str]:
    """The URL of a new database on the local PostgreSQL server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A scratch PostgreSQL database on the local server, dropped afterwards."""
    with scratch_pg_database() as url:
        yield url


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """An engine on the scratch PostgreSQL database with gozen's schema, removed again afterwards."""
    engine = make_engine(pg_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        downgrade(engine, "base")
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def both_engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """Each test twice: on a migrated SQLite file, then on the scratch PostgreSQL database (pg_engine)."""
    if request.param == "postgresql":
        yield request.getfixturevalue("pg_engine")
        return
    engine = make_engine(f"sqlite:///{tmp_path / 'gozen.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def write_config(path: Path, data: dict[str, Any]) -> Config:
    """The config file of a test: sim:feeds and www:report stay off unless the test asks for them (they
    would add programs, four couriers and their messages, and matplotlib's CPU to every live test)."""
    couriers = data.setdefault("couriers", {})
    couriers.setdefault("simulator", {"enabled": False})
    data.setdefault("reports", {"enabled": False})  # www:report would draw last night's report at start
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


def web_section(port: int) -> dict[str, Any]:
    return {
        "bind": "127.0.0.1",
        "port": port,
        "refresh_s": 1,
        "users": [
            {"name": OPERATOR[0], "password_hash": hash_password(OPERATOR[1]), "role": "operator"},
            {"name": VIEWER[0], "password_hash": hash_password(VIEWER[1]), "role": "viewer"},
        ],
        "api_tokens": [{"name": "ci", "token_sha256": token_sha256(API_TOKEN), "role": "operator"}],
    }


def gozen_cmd(config_file: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gozen", "--config", str(config_file), *args]


def run_gozen(fleet: Fleet, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """A `gozen` command on the fleet's first host, wide enough that tables keep to one line a row."""
    env = {**os.environ, "COLUMNS": "200", "GOZEN_HOST": fleet.cfg.hosts[0].name}
    return subprocess.run(
        gozen_cmd(fleet.config_file, *args), capture_output=True, text=True, timeout=timeout_s, env=env
    )


@dataclass
class Fleet:
    """Real supervisord hosts on loopback, each started with `gozen up --host NAME`."""

    config_file: Path
    cfg: Config
    procs: dict[str, subprocess.Popen[bytes]]
    down: list[str]

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.web.port}"

    def client(self, host: str) -> SupervisorClient:
        return SupervisorClient(self.cfg.host(host), timeout_s=SUPERVISOR_RPC_S)

    def check_alive(self) -> None:
        """Fail at once, not at the deadline, if a host's `gozen up` has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                up_log = self.config_file.parent / f"up-{name}.log"
                raise AssertionError(f"`gozen up --host {name}` exited {proc.returncode}:\n{tail(up_log, 40)}")

    def state(self, host: str, program: str) -> str:
        self.check_alive()
        status = self.client(host).status()
        if not status.reachable:
            return f"UNREACHABLE ({status.error})"
        for p in status.processes:
            if p.full_name == program:
                return p.state
        raise AssertionError(f"{host} has no program {program}")

    def wait_state(self, host: str, program: str, state: str, timeout_s: float = WAIT_S) -> None:
        wait_until(
            lambda: self.state(host, program) == state, timeout_s, what=f"{host}:{program} {state}", dump=self.dump
        )

    def dump(self) -> str:
        """What went on: every host's programs, the tails of their logs, the latest events."""
        out = []
        for name in self.procs:
            status = self.client(name).status()
            out.append(f"--- {name}: supervisord {'answers' if status.reachable else status.error}")
            out += [
                f"  {p.full_name:28} {p.state:9} pid={p.pid} exit={p.exitstatus} {p.spawnerr or p.description}"
                for p in status.processes
            ]
            out.append(f"--- {name}: gozen up output (tail)\n{tail(self.config_file.parent / f'up-{name}.log')}")
        for log in sorted(self.cfg.log_dir.glob("*.log")):
            if log.stat().st_size:
                out.append(f"--- {log.name} (tail)\n{tail(log)}")
        try:
            events = recent_events(make_engine(self.cfg.database_url), 20)
            out.append("--- latest events\n" + "\n".join(f"  {e.time} {e.host} {e.kind} {e.message}" for e in events))
        except sqlalchemy.exc.SQLAlchemyError as err:
            out.append(f"--- events: {err}")
        return "\n".join(out)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=START_S)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # its own session: supervisord and what it runs
                p.wait(timeout=30)


def start_fleet(
    tmp: Path,
    hosts: list[dict[str, Any]],
    down: list[str],
    web_port: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Fleet:
    data = {"data_dir": str(tmp / "var"), "hosts": hosts, **(extra or {})}
    if web_port:
        data["web"] = web_section(web_port)
    config_file = tmp / "gozen.yaml"
    cfg = write_config(config_file, data)
    procs = {}
    for h in cfg.hosts:
        if h.name in down:
            continue
        log = open(tmp / f"up-{h.name}.log", "wb")  # noqa: SIM115 - kept open for the child
        procs[h.name] = subprocess.Popen(
            gozen_cmd(config_file, "up", "--host", h.name), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    fleet = Fleet(config_file, cfg, procs, down)
    try:
        for name in procs:
            wait_until(
                lambda n=name: fleet.check_alive() or fleet.client(n).status().reachable,
                START_S,
                what=f"supervisord on {name}",
                dump=fleet.dump,
            )
            for p in cfg.host(name).programs:
                if p.autostart:
                    fleet.wait_state(name, f"{p.group}:{p.name}", "RUNNING", START_S)
        if web_port:
            wait_until(
                lambda: fleet.check_alive() or _answers(f"{fleet.web_url}/api/health"),
                START_S,
                what="the dashboard",
                dump=fleet.dump,
            )
    except BaseException:
        fleet.stop()
        raise
    return fleet


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def host_entry(name: str, port: int, roles: list[str], programs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "address": "127.0.0.1",
        "roles": roles,
        "supervisor": {"port": port, "username": "gozen", "password": f"pw-{name}"},
        "programs": programs,
    }


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three live hosts and one that is down; daq-master also serves the web app."""
    tmp = tmp_path_factory.mktemp("fleet")
    workers = [
        {"group": "work", "name": "ticker", "command": ticker("ticker")},
        {"group": "work", "name": "other", "command": ticker("other")},
        {
            "group": "work",
            "name": "crasher",
            "command": ticker("crasher", 1.0, 3),
            "autostart": False,
            "autorestart": False,
            "startsecs": 0,
        },
    ]
    hosts = [
        host_entry("daq-master", free_port(), ["web"], workers),
        host_entry("buf-node0", free_port(), [], workers),
        host_entry("buf-node1", free_port(), [], workers),
        host_entry("buf-node2", free_port(), [], workers),
    ]
    f = start_fleet(tmp, hosts, down=["buf-node2"], web_port=free_port())
    yield f
    f.stop()
