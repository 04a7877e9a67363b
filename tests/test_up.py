"""`gozen up` as a person runs it: supervisord in the foreground, web answers, SIGTERM leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from gozen.config import Config
from gozen.db.engine import make_engine
from gozen.db.migrate import current_revision, head_revision
from gozen.supervise.client import SupervisorClient
from tests.conftest import START_S, SUPERVISOR_RPC_S, WAIT_S, free_port, gozen_cmd, wait_until, write_config

pytestmark = pytest.mark.live  # supervisord, started by `gozen up` itself


def _health(url: str) -> dict | None:  # type: ignore[type-arg]
    try:
        r = httpx.get(url, timeout=10)
        return r.json() if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def start_up(tmp_path: Path, roles: list[str], extra: dict[str, Any]) -> tuple[Config, subprocess.Popen[str]]:
    """`gozen up` for a one-host observatory, as a person starts it in a terminal."""
    cfg = write_config(
        tmp_path / "gozen.yaml",
        {
            "data_dir": str(tmp_path / "var"),
            "hosts": [{"name": "solo", "roles": roles, "supervisor": {"port": free_port()}}],
            **extra,
        },
    )
    proc = subprocess.Popen(
        gozen_cmd(tmp_path / "gozen.yaml", "up"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return cfg, proc


def still_up(proc: subprocess.Popen[str]) -> None:
    """Fail at once, not at the deadline, if `gozen up` has exited."""
    if proc.poll() is not None:
        raise AssertionError(f"gozen up exited {proc.returncode}:\n{proc.communicate()[0]}")


def every_program_running(cfg: Config, proc: subprocess.Popen[str]) -> list[psutil.Process]:
    """Wait until supervisord says every program of the host is RUNNING (past startsecs); their processes."""
    client = SupervisorClient(cfg.hosts[0], timeout_s=SUPERVISOR_RPC_S)

    def running() -> bool:
        still_up(proc)
        status = client.status()
        return status.reachable and bool(status.processes) and all(p.state == "RUNNING" for p in status.processes)

    wait_until(running, START_S, what="every program RUNNING", dump=lambda: repr(client.status()))
    return psutil.Process(proc.pid).children(recursive=True)


def test_up_serves_health_and_exits_cleanly_on_sigterm_leaving_no_child(tmp_path: Path) -> None:
    web_port = free_port()
    cfg, proc = start_up(tmp_path, ["web"], {"web": {"port": web_port}})
    try:
        url = f"http://127.0.0.1:{web_port}/api/health"
        health = wait_until(lambda: still_up(proc) or _health(url), START_S, what="/api/health")
        assert health["status"] == "ok" and health["database"] == "ok"
        # The database was migrated by `up`, and with no users configured an admin password file exists.
        assert current_revision(make_engine(cfg.database_url)) == head_revision()
        assert (cfg.run_dir / "web-admin-password").stat().st_mode & 0o077 == 0
        children = every_program_running(cfg, proc)  # the event listener and the dashboard
        assert len(children) >= 2
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=START_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    gone, alive = psutil.wait_procs(children, timeout=WAIT_S)
    assert alive == [], f"left behind: {alive}"
    assert "log in as admin" in output and "supervisord started" in output


def test_up_with_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "gozen.yaml").write_text("web: {port: 0}\n")
    r = subprocess.run(gozen_cmd(tmp_path / "gozen.yaml", "up"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "web.port: must be > 0, got 0" in r.stderr


def test_up_with_several_hosts_needs_to_know_which_one_it_is(tmp_path: Path) -> None:
    (tmp_path / "gozen.yaml").write_text(
        "hosts: [{name: a1, supervisor: {port: 9101}}, {name: a2, supervisor: {port: 9102}, roles: [web]}]\n"
    )
    r = subprocess.run(gozen_cmd(tmp_path / "gozen.yaml", "up"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "pass --host" in r.stderr and "a1, a2" in r.stderr


def test_ctrl_c_stops_every_program_cleanly(tmp_path: Path) -> None:
    cfg, proc = start_up(tmp_path, [], {})
    try:
        children = every_program_running(cfg, proc)  # as a person pressing Ctrl-C later would find them
        os.killpg(proc.pid, signal.SIGINT)  # the terminal signals the whole foreground group
        output, _ = proc.communicate(timeout=START_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert psutil.wait_procs(children, timeout=WAIT_S)[1] == []
    assert "Traceback" not in (tmp_path / "var" / "log" / "solo-supervise-events.err.log").read_text()
