"""fleet:watch against real supervisord and rsync daemons: one event when a host, daemon or the
database stops answering for longer than the grace, one when it is back; the board keeps each host's
last known programs."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from gozen import __version__
from gozen.config import Config, parse_config
from gozen.db.engine import make_engine
from gozen.db.events import Event, recent_events
from gozen.db.migrate import upgrade
from gozen.service import Context
from gozen.supervise.fleet import FleetWatch, RsyncdUnreachable, last_seen, rsyncd_greeting
from tests.conftest import START_S, WAIT_S, free_port, tail, ticker, wait_until


class Supervisord:
    """A real supervisord on 127.0.0.1:port with one program, work:ticker (as `gozen up` would run it)."""

    def __init__(self, tmp: Path, host: str, port: int, password: str) -> None:
        self.dir = tmp / f"sup-{host}"
        self.dir.mkdir(exist_ok=True)
        self.conf = self.dir / "supervisord.conf"
        self.conf.write_text(
            f"""[supervisord]
nodaemon=true
identifier=gozen-{__version__}-{host}
logfile={self.dir}/supervisord.log
pidfile={self.dir}/supervisord.pid
childlogdir={self.dir}

[inet_http_server]
port=127.0.0.1:{port}
username=gozen
password={password}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[group:work]
programs=ticker

[program:ticker]
command={ticker("ticker")}
startsecs=0
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=START_S)
        self.proc = None


class Rsyncd:
    """A real rsync daemon on 127.0.0.1:port serving one read-only module."""

    def __init__(self, tmp: Path, port: int) -> None:
        self.port = port
        (tmp / "module").mkdir(exist_ok=True)
        self.conf = tmp / "rsyncd.conf"
        self.conf.write_text(f"use chroot = no\n[node1]\npath = {tmp / 'module'}\nread only = yes\n")
        self.log = tmp / "rsyncd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = ["rsync", "--daemon", "--no-detach", "--address=127.0.0.1", f"--port={self.port}"]
        cmd += [f"--config={self.conf}", f"--log-file={self.log}"]
        self.proc = subprocess.Popen(cmd)
        wait_until(self.answers, WAIT_S, what=f"rsync daemon on {self.port}", dump=lambda: tail(self.log))

    def answers(self) -> bool:
        try:
            return rsyncd_greeting("127.0.0.1", self.port, 5).startswith("@RSYNCD:")
        except RsyncdUnreachable:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=WAIT_S)
        self.proc = None


def host(name: str, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "address": "127.0.0.1",
        "roles": [],
        "supervisor": {"port": port, "username": "gozen", "password": f"pw-{name}"},
        **extra,
    }


def fleet_config(tmp: Path, hosts: list[dict[str, Any]], **extra: Any) -> Config:
    return parse_config({"data_dir": str(tmp / "var"), "hosts": hosts, **extra})


def watcher(cfg: Config, engine: Engine, down_after_s: float = 1.0) -> FleetWatch:
    w = FleetWatch(Context(cfg, "head", engine, "fleet:watch"))
    w.down_after_s = down_after_s
    return w


def events_of(engine: Engine, kind: str, subject: str | None = None) -> list[Event]:
    return [e for e in recent_events(engine, 1000, kind=kind) if subject is None or e.subject == subject]


def passes_until(w: FleetWatch, predicate: Callable[[], Any], what: str) -> Any:
    """Run the watcher's passes until `predicate` holds (a pass takes at most one call timeout)."""

    def one_pass() -> Any:
        w.run_once()
        return predicate()

    return wait_until(one_pass, WAIT_S, interval_s=0.3, what=what)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = make_engine(f"sqlite:///{tmp_path / 'gozen.db'}")
    upgrade(e)
    return e


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[tuple[Config, Supervisord, Supervisord]]:
    """store1 runs its supervisord; store2's is made but not started."""
    p1, p2 = free_port(), free_port()
    cfg = fleet_config(tmp_path, [host("store1", p1), host("store2", p2)])
    a, b = Supervisord(tmp_path, "store1", p1, "pw-store1"), Supervisord(tmp_path, "store2", p2, "pw-store2")
    a.start()
    try:
        wait_until(lambda: running(cfg, "store1"), START_S, what="supervisord of store1")
        yield cfg, a, b
    finally:
        a.stop()
        b.stop()


def running(cfg: Config, name: str) -> bool:
    from gozen.supervise.client import SupervisorClient

    status = SupervisorClient(cfg.host(name), 10).status()
    return status.reachable and any(p.state == "RUNNING" for p in status.processes)


def test_a_host_that_stops_answering_is_one_error_event_and_its_return_one_info_event(
    two_hosts: tuple[Config, Supervisord, Supervisord], engine: Engine
) -> None:
    cfg, _, store2 = two_hosts
    port2 = cfg.host("store2").supervisor.port
    w = watcher(cfg, engine)
    [down] = passes_until(w, lambda: events_of(engine, "host_unreachable"), "store2 told unreachable")
    for _ in range(3):
        w.run_once()
    assert [e.id for e in events_of(engine, "host_unreachable")] == [down.id]  # once, however long
    assert (down.subject, down.severity, down.source, down.host) == ("store2", "error", "fleet:watch", "head")
    assert f"store2's supervisord at 127.0.0.1:{port2} has not answered for" in down.message
    assert "connection refused" in down.message
    assert down.data and down.data["port"] == port2

    seen = last_seen(engine)
    assert seen["store1"].reachable and not seen["store2"].reachable
    assert [(p.name, p.state) for p in seen["store1"].programs] == [("work:ticker", "RUNNING")]
    assert seen["store1"].programs[0].pid
    assert seen["store2"].unreachable_since is not None and seen["store2"].programs == []
    assert "connection refused" in (seen["store2"].error or "")

    store2.start()
    [back] = passes_until(w, lambda: events_of(engine, "host_back"), "store2 told back")
    for _ in range(2):
        w.run_once()
    assert [e.id for e in events_of(engine, "host_back")] == [back.id] and back.id > down.id
    assert (back.subject, back.severity) == ("store2", "info")
    assert back.message.startswith(f"store2's supervisord at 127.0.0.1:{port2} answers again after")
    assert "unreachable since" in back.message
    assert last_seen(engine)["store2"].reachable
    assert not events_of(engine, "host_unreachable", "store1")


def test_an_unreachable_host_keeps_its_last_known_programs_on_the_board(
    two_hosts: tuple[Config, Supervisord, Supervisord], engine: Engine
) -> None:
    cfg, store1, _ = two_hosts
    w = watcher(cfg, engine)
    w.run_once()
    before = last_seen(engine)["store1"]
    assert before.reachable and before.programs and before.unreachable_since is None
    store1.stop()
    passes_until(w, lambda: events_of(engine, "host_unreachable", "store1"), "store1 told unreachable")
    after = last_seen(engine)["store1"]
    assert not after.reachable and after.unreachable_since is not None
    assert [p.name for p in after.programs] == ["work:ticker"]  # its last known programs
    assert after.programs[0].pid == before.programs[0].pid
    assert after.programs_at is not None and after.programs_at < after.checked_at


def test_a_failure_shorter_than_the_grace_is_not_told(
    two_hosts: tuple[Config, Supervisord, Supervisord], engine: Engine
) -> None:
    cfg, _, _ = two_hosts
    w = watcher(cfg, engine, down_after_s=3600)
    for _ in range(3):
        w.run_once()
    assert not events_of(engine, "host_unreachable")
    assert not last_seen(engine)["store2"].reachable  # the board says so at once


def test_an_rsync_daemon_that_stops_is_one_error_event_and_its_return_one_info_event(
    tmp_path: Path, engine: Engine
) -> None:
    rsyncd = Rsyncd(tmp_path, free_port())
    cfg = fleet_config(tmp_path, [host("store1", free_port(), rsync_port=rsyncd.port)])
    rsyncd.start()
    try:
        assert rsyncd_greeting("127.0.0.1", rsyncd.port).startswith("@RSYNCD: ")
        w = watcher(cfg, engine)
        w.run_once()
        assert not events_of(engine, "rsyncd_unreachable")
        rsyncd.stop()
        [down] = passes_until(w, lambda: events_of(engine, "rsyncd_unreachable"), "the rsync daemon told down")
        assert (down.subject, down.severity) == ("store1", "error")
        assert f"store1's rsync daemon at 127.0.0.1:{rsyncd.port} has not answered" in down.message
        assert "connection refused" in down.message
        rsyncd.start()
        [back] = passes_until(w, lambda: events_of(engine, "rsyncd_back"), "the rsync daemon told back")
        w.run_once()
        assert len(events_of(engine, "rsyncd_unreachable")) == 1 and len(events_of(engine, "rsyncd_back")) == 1
        assert back.subject == "store1" and back.id > down.id
    finally:
        rsyncd.stop()


def test_a_port_that_is_no_rsync_daemon_is_not_taken_for_one(tmp_path: Path) -> None:
    sup = Supervisord(tmp_path, "x", free_port(), "pw")  # an HTTP server: it does not greet first
    port = int(sup.conf.read_text().split("port=127.0.0.1:")[1].split()[0])
    sup.start()
    try:
        wait_until(lambda: _connects(port), START_S, what="supervisord's port")
        with pytest.raises(RsyncdUnreachable, match="timed out|not an rsync daemon"):
            rsyncd_greeting("127.0.0.1", port, 1.0)
    finally:
        sup.stop()


def _connects(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), 2).close()
        return True
    except OSError:
        return False
