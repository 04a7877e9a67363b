"""Monitors at a start and at steady state: no false alarms, a simulator that never refuses, disks that do not flap."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from alpaca.safetymonitor import SafetyMonitor as AlpacaSafetyMonitor
from sqlalchemy import Engine

from gozen.config import AlpacaDevice, Config, parse_config
from gozen.db.events import recent_events
from gozen.devices.alpaca import ask
from gozen.devices.simulators.alpaca import server_config
from gozen.monitors.alpaca import WeatherMonitor
from gozen.monitors.board import Reading, publish, snapshot
from gozen.monitors.df import DfMonitor, next_level
from gozen.monitors.safety import SafetyMonitor
from gozen.service import Context
from tests.conftest import WAIT_S, free_port, wait_until, write_config
from tests.monitors.contexts import monitor_context

NIGHT = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
GOOD = {"weather.humidity_pct": 60.0, "weather.wind_ms": 3.0, "weather.rain_mmh": 0.0}
UVICORN_DEFAULT_KEEP_ALIVE_S = 5.0


def sim_config(tmp: Path) -> tuple[Path, Config]:
    address = f"127.0.0.1:{free_port()}"
    path = tmp / "gozen.yaml"
    cfg = write_config(path, {"data_dir": str(tmp / "var"), "monitors": {"telescope": {"address": address}}})
    return path, cfg


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def sim_alpaca(tmp_path: Path) -> Iterator[str]:
    """`sim:alpaca` as supervisord runs it (`python -m gozen run sim:alpaca`); yields its address."""
    config_file, cfg = sim_config(tmp_path)
    log = open(tmp_path / "sim-alpaca.log", "wb")  # noqa: SIM115 - kept open for the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "gozen", "--config", str(config_file), "run", "sim:alpaca"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    address = cfg.monitors.telescope.address
    try:
        wait_until(
            lambda: proc.poll() is None and answers(f"http://{address}/management/apiversions"),
            WAIT_S,
            0.2,
            f"sim:alpaca to answer (log: {tmp_path / 'sim-alpaca.log'})",
        )
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def http_get(sock: socket.socket, path: str) -> bytes:
    """One HTTP/1.1 request on a kept-alive connection; the raw answer (b"" when the server hung up)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: sim\r\nConnection: keep-alive\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def test_sim_alpaca_keeps_an_idle_connection_past_a_monitor_period(sim_alpaca: str) -> None:
    host, port = sim_alpaca.split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT_S) as sock:
        assert http_get(sock, "/api/v1/safetymonitor/0/issafe").startswith(b"HTTP/1.1 200")
        # A monitor polls every monitors.every_s (5 s) on one kept-alive connection: idle for as long as
        # that, the connection must still be there (uvicorn's own default closed it at 5 s, racing the poll).
        time.sleep(UVICORN_DEFAULT_KEEP_ALIVE_S + 1.5)
        again = http_get(sock, "/api/v1/safetymonitor/0/issafe")
    assert again.startswith(b"HTTP/1.1 200") and b'"ErrorNumber":0' in again


def test_sim_alpaca_answers_a_hammering_from_many_threads_without_a_refusal(sim_alpaca: str) -> None:
    members = ["telescope/0/altitude", "observingconditions/0/humidity", "safetymonitor/0/issafe"]

    def client(n: int) -> list[str]:
        problems = []
        # half the clients keep their connection, half open a new one per request (the accept path)
        with httpx.Client(timeout=WAIT_S, limits=httpx.Limits(max_keepalive_connections=n % 2)) as c:
            for i in range(60):
                url = f"http://{sim_alpaca}/api/v1/{members[i % 3]}?ClientTransactionID={i}"
                try:
                    r = c.get(url)
                    if r.status_code != 200 or r.json()["ErrorNumber"] != 0:
                        problems.append(f"{url}: HTTP {r.status_code} {r.text[:100]}")
                except httpx.HTTPError as err:
                    problems.append(f"{url}: {type(err).__name__}: {err}")
        return problems

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(client, range(12)))
    assert [p for r in results for p in r] == [] and len(results) == 12  # 720 requests, every one answered


class HangUpOnSecondRequest:
    """An Alpaca-like server that answers the first request of a connection and hangs up on the next,
    as a server closing an idle kept-alive connection does just as the client's next poll arrives."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.one_connection, args=(conn,), daemon=True).start()

    def one_connection(self, conn: socket.socket) -> None:
        body = (
            b'{"Value": true, "ClientTransactionID": 1, "ServerTransactionID": 1, "ErrorNumber": 0, "ErrorMessage": ""}'
        )
        with conn:
            for n in (1, 2):
                if not conn.recv(65536):
                    return
                if n == 2:
                    return  # closed without a word: the request is lost in the race
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                conn.sendall(head.encode() + body)

    def close(self) -> None:
        self.sock.close()


def test_a_monitor_asks_again_when_a_kept_alive_connection_is_dropped() -> None:
    server = HangUpOnSecondRequest()
    try:
        device = AlpacaSafetyMonitor(server.address, 0)
        assert ask(device, "IsSafe", "safety monitor") is True
        assert (
            ask(device, "IsSafe", "safety monitor") is True
        )  # the pooled connection was hung up on: asked again on a new one
        assert server.connections == 2
    finally:
        server.close()


class SimInThread:
    """The Alpaca simulator, configured as sim:alpaca is, served in a thread of the test."""

    def __init__(self, address: str) -> None:
        self.cfg = parse_config({"monitors": {"telescope": {"address": address}}})
        self.server = uvicorn.Server(server_config(self.cfg))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, WAIT_S, 0.05, "the Alpaca simulator to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT_S)


def test_a_monitor_waits_for_its_device_at_start_without_an_alarm(engine: Engine) -> None:
    where = AlpacaDevice(address=f"127.0.0.1:{free_port()}")  # sim:alpaca not listening yet
    mon = weather_monitor(engine, where, every_s=1.0, start_grace_s=WAIT_S)
    assert mon.step() == [] and mon.step() == []
    assert recent_events(engine, 10) == []  # no device_unreachable while it may still be starting
    sim = SimInThread(where.address)
    try:
        assert {r.key for r in mon.step()} >= {"weather.humidity_pct", "weather.safe"}
        assert recent_events(engine, 10) == []  # and no device_back for a device never lost
    finally:
        sim.stop()
    assert mon.step() == []  # it had answered: now its silence is news at once
    [down] = recent_events(engine, 10, kind="device_unreachable")
    assert down.subject == "weather station" and "Connection refused" in down.message


def test_a_device_silent_past_the_start_grace_is_unreachable_once(engine: Engine) -> None:
    where = AlpacaDevice(address=f"127.0.0.1:{free_port()}")
    mon = weather_monitor(engine, where, every_s=0.2, start_grace_s=0.5)
    mon.step()
    assert recent_events(engine, 10) == []
    wait_until(lambda: not mon.in_start_grace(), WAIT_S, 0.05, "the start grace to pass")
    mon.step()
    mon.step()
    assert [e.kind for e in recent_events(engine, 10)] == ["device_unreachable"]


def weather_monitor(engine: Engine, where: AlpacaDevice, **monitors: Any) -> WeatherMonitor:
    """monitor:weather reading the station and the safety monitor at `where`."""
    at = {"address": where.address}
    return WeatherMonitor(monitor_context(engine, "monitor:weather", weather=at, safety_monitor=at, **monitors))


def safety_monitor(engine: Engine, **monitors: Any) -> SafetyMonitor:
    """monitor:safety at NIGHT (the Sun well down)."""
    mon = SafetyMonitor(monitor_context(engine, "monitor:safety", **monitors))
    mon.clock = lambda: NIGHT
    return mon


def board(engine: Engine, values: dict[str, object], when: datetime | None = None) -> None:
    publish(engine, "test", [Reading(k, v, "", 60.0) for k, v in values.items()], when)  # type: ignore[arg-type]


def test_safety_waits_for_the_first_weather_reading_instead_of_an_unsafe_alarm(engine: Engine) -> None:
    board(engine, GOOD, when=datetime(2026, 11, 24, tzinfo=UTC))  # yesterday's weather, stale on the board
    mon = safety_monitor(engine, every_s=1.0, start_grace_s=WAIT_S)
    mon.step()
    snap = snapshot(engine, "safety.")
    assert snap.get("safety.safe").value is False  # nothing starts on no news
    assert snap.get("safety.reasons").value == "waiting for the first weather reading (humidity_pct, wind_ms, rain_mmh)"
    board(engine, GOOD)
    mon.step()
    events = [(e.severity, e.message) for e in reversed(recent_events(engine, 10, kind="safety_changed"))]
    assert events == [
        ("info", "not observing yet: waiting for the first weather reading (humidity_pct, wind_ms, rain_mmh)"),
        ("info", "safe to observe"),
    ]
    board(engine, GOOD, when=datetime(2026, 11, 24, tzinfo=UTC))  # read once, then lost: that is unsafe at once
    mon.step()
    [lost] = recent_events(engine, 1, kind="safety_changed")
    assert (lost.severity, lost.message) == (
        "warning",
        "unsafe: weather data missing or stale (humidity_pct, wind_ms, rain_mmh)",
    )


def test_safety_says_unsafe_when_weather_never_comes_within_the_grace(engine: Engine) -> None:
    mon = safety_monitor(engine, every_s=0.2, start_grace_s=0.3)
    mon.step()
    wait_until(lambda: mon.step() is not None and mon.last is not None and not mon.last.waiting, WAIT_S, 0.05)
    assert [(e.severity, e.message) for e in reversed(recent_events(engine, 10, kind="safety_changed"))] == [
        ("info", "not observing yet: waiting for the first weather reading (humidity_pct, wind_ms, rain_mmh)"),
        ("warning", "unsafe: weather data missing or stale (humidity_pct, wind_ms, rain_mmh)"),
    ]


def test_a_disk_level_is_left_only_below_its_line_by_the_hysteresis() -> None:
    level, seen = None, []
    for used in (79.0, 80.5, 79.5, 78.5, 80.4, 77.9, 91.0, 89.0, 88.1, 87.9, 85.0, 77.0):
        level = next_level(level, used, warn_pct=80.0, alarm_pct=90.0, hysteresis_pct=2.0)
        seen.append(level)
    assert seen == ["ok", "warn", "warn", "warn", "warn", "ok", "alarm", "alarm", "alarm", "warn", "warn", "ok"]


def test_directories_on_one_filesystem_make_one_event_and_do_not_flap(
    tmp_path: Path, small_tmpfs: Path, engine: Engine
) -> None:
    names = ["vol1", "vol2", "node0", "node1", "node2"]
    for n in names:
        (small_tmpfs / n).mkdir()
    cfg = parse_config(
        {
            "data_dir": str(tmp_path / "var"),
            "daq_volumes": [{"name": n, "path": str(small_tmpfs / n)} for n in names[:2]],
            "storage_nodes": [{"name": n, "path": str(small_tmpfs / n)} for n in names[2:]],
            "monitors": {"df_warn_pct": 50, "df_alarm_pct": 95, "df_hysteresis_pct": 5},
        }
    )
    mon = DfMonitor(Context(cfg, "daq1", engine, "storage:dfmonitor"))
    mon.sample()
    (small_tmpfs / "vol1" / "a").write_bytes(b"x" * 540_000)  # about 52 % of the 1 MiB filesystem
    publish(engine, "storage:dfmonitor", mon.sample())
    (small_tmpfs / "vol1" / "a").write_bytes(b"x" * 500_000)  # about 48 %: under the line, not under line - 5 %
    mon.sample()
    mon.sample()
    [warn] = recent_events(engine, 10)
    assert (warn.kind, warn.subject, warn.severity) == ("disk_warn", "vol1,vol2,node0,node1,node2", "warning")
    assert warn.message.startswith(f"filesystem {small_tmpfs} (vol1, vol2, node0, node1, node2) over the warning line")
    assert warn.data["paths"] == [str(small_tmpfs / n) for n in names]
    (small_tmpfs / "vol1" / "a").unlink()  # well under: back to normal, once
    mon.sample()
    mon.sample()
    assert [(e.kind, e.subject) for e in reversed(recent_events(engine, 10))] == [
        ("disk_warn", "vol1,vol2,node0,node1,node2"),
        ("disk_ok", "vol1,vol2,node0,node1,node2"),
    ]
    board = snapshot(engine, "df.")  # the board still has every directory's own readings
    assert all(board.number(f"df.{n}.used_pct") > 50 for n in names)


def test_safety_trims_the_status_history_from_its_first_reading(engine: Engine) -> None:
    from sqlalchemy import func, select

    from gozen.db.tables import status_history

    board(engine, GOOD, when=datetime.now(UTC) - timedelta(days=3))
    board(engine, GOOD)
    assert parse_config({}).monitors.history_days == 2.0  # the simulated observatory's default
    safety_monitor(engine, history_days=2.0).step()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(status_history)).scalar() == len(GOOD) + 3
