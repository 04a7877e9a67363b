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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from gozen.config import Config, load_config
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

OPERATOR = ("ops", "correct horse battery")
VIEWER = ("guest", "just looking")
API_TOKEN = "test-token-9f8e7d6c5b4a"


@pytest.fixture(autouse=True, scope="session")
def remove_rings() -> Iterator[None]:
    yield
    shutil.rmtree(_SHM, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout_s: float = 20.0, interval_s: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


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


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A scratch PostgreSQL database on the local server, dropped afterwards."""
    name = f"gozen_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_config(path: Path, data: dict[str, Any]) -> Config:
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
        return SupervisorClient(self.cfg.host(host))

    def state(self, host: str, program: str) -> str:
        for p in self.client(host).status().processes:
            if p.full_name == program:
                return p.state
        raise AssertionError(f"{host} has no program {program}")

    def wait_state(self, host: str, program: str, state: str, timeout_s: float = 20) -> None:
        wait_until(lambda: self.state(host, program) == state, timeout_s, what=f"{host}:{program} {state}")

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
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
            wait_until(lambda n=name: fleet.client(n).status().reachable, 30, what=f"supervisord on {name}")
            for p in cfg.host(name).programs:
                if p.autostart:
                    fleet.wait_state(name, f"{p.group}:{p.name}", "RUNNING")
        if web_port:
            wait_until(lambda: _answers(f"{fleet.web_url}/api/health"), 30, what="the dashboard")
    except BaseException:
        fleet.stop()
        raise
    return fleet


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
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
