"""The multi-host XML-RPC client against real supervisord hosts (one of them down)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gozen.config import ConfigError
from gozen.supervise.client import ProcessActionError, fetch_all, parse_target
from tests.conftest import START_S, SUPERVISOR_RPC_S, Fleet, gozen_cmd


def test_every_host_is_listed_and_the_dead_one_is_unreachable(fleet: Fleet) -> None:
    hosts = {h.host: h for h in fetch_all(fleet.cfg.hosts, timeout_s=SUPERVISOR_RPC_S)}  # buf-node2 refuses at once
    assert set(hosts) == {"daq-master", "buf-node0", "buf-node1", "buf-node2"}
    assert not hosts["buf-node2"].reachable and "refused" in (hosts["buf-node2"].error or "")
    node0 = {p.full_name: p for p in hosts["buf-node0"].processes}
    assert set(node0) == {"supervise:events", "work:ticker", "work:other", "work:crasher"}
    assert node0["work:other"].state == "RUNNING" and node0["work:other"].pid
    assert node0["work:other"].uptime_s is not None and node0["work:other"].uptime_s >= 0
    assert node0["work:crasher"].state == "STOPPED"
    assert "www:dashboard" in {p.full_name for p in hosts["daq-master"].processes}


def test_log_tails_come_with_the_status(fleet: Fleet) -> None:
    status = fleet.client("buf-node1").status(tail_bytes=500)
    other = next(p for p in status.processes if p.full_name == "work:other")
    assert "other tick" in other.stdout_tail and "other stderr line" in other.stderr_tail


def test_wrong_supervisor_password_is_reported_not_raised(fleet: Fleet) -> None:
    h = fleet.cfg.host("buf-node0")
    wrong = h.model_copy(update={"supervisor": h.supervisor.model_copy(update={"password": "nope"})})
    [status] = fetch_all([wrong])
    assert not status.reachable and "credentials" in (status.error or "")


def test_stop_and_start_change_the_real_process(fleet: Fleet) -> None:
    c = fleet.client("buf-node0")
    pid_before = next(p.pid for p in c.status().processes if p.full_name == "work:other")
    c.act("stop", "work:other")
    assert fleet.state("buf-node0", "work:other") == "STOPPED"
    c.act("start", "work:other")
    after = next(p for p in c.status().processes if p.full_name == "work:other")
    assert after.state == "RUNNING" and after.pid != pid_before


def test_restart_gives_a_new_pid_and_group_star_acts_on_the_group(fleet: Fleet) -> None:
    c = fleet.client("buf-node1")
    pid_before = next(p.pid for p in c.status().processes if p.full_name == "work:ticker")
    c.act("restart", "work:ticker")
    after = next(p for p in c.status().processes if p.full_name == "work:ticker")
    assert after.state == "RUNNING" and after.pid != pid_before
    c.act("stop", "work:*")
    assert {p.state for p in c.status().processes if p.group == "work"} == {"STOPPED"}
    c.act("start", "work:ticker")
    c.act("start", "work:other")
    assert fleet.state("buf-node1", "work:other") == "RUNNING"


@pytest.mark.parametrize(
    ("action", "target", "why"),
    [
        ("start", "work:nosuch", "no such program"),
        ("stop", "work:crasher", "is not running"),
        ("start", "justaname", "expected GROUP:NAME"),
    ],
)
def test_refused_actions_name_host_program_and_reason(fleet: Fleet, action: str, target: str, why: str) -> None:
    with pytest.raises(ProcessActionError, match=why):
        fleet.client("buf-node0").act(action, target)  # type: ignore[arg-type]


def test_targets_need_a_host_when_there_are_several(fleet: Fleet) -> None:
    assert parse_target(fleet.cfg, "buf-node0:work:*").program == "work:*"
    with pytest.raises(ConfigError, match="HOST:GROUP:NAME"):
        parse_target(fleet.cfg, "work:ticker")
    with pytest.raises(ConfigError, match="no host named 'mars'"):
        parse_target(fleet.cfg, "mars:work:ticker")


def test_cli_ps_lists_hosts_and_exits_1_when_one_is_unreachable(fleet: Fleet) -> None:
    r = subprocess.run(
        gozen_cmd(fleet.config_file, "ps"),
        capture_output=True,
        text=True,
        timeout=START_S,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert any("buf-node2" in line and "UNREACHABLE" in line for line in lines)
    assert any("buf-node1" in line and "work:other" in line and "RUNNING" in line for line in lines)


def test_cli_stop_and_start_a_program_on_a_host(fleet: Fleet) -> None:
    stop = subprocess.run(
        gozen_cmd(fleet.config_file, "stop", "daq-master:work:other"), capture_output=True, text=True, timeout=START_S
    )
    assert stop.returncode == 0, stop.stderr
    assert fleet.state("daq-master", "work:other") == "STOPPED"
    start = subprocess.run(
        gozen_cmd(fleet.config_file, "start", "daq-master:work:other"), capture_output=True, text=True, timeout=START_S
    )
    assert start.returncode == 0 and fleet.state("daq-master", "work:other") == "RUNNING"
    bad = subprocess.run(
        gozen_cmd(fleet.config_file, "start", "buf-node2:work:other"), capture_output=True, text=True, timeout=START_S
    )
    assert bad.returncode == 1 and "buf-node2" in bad.stderr and "refused" in bad.stderr
    assert sys.executable
