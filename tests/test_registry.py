"""The program registry: every entry point imports and is runnable; names and roles as supervisord shows them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gozen.config import ALL_ROLES, FEEDS, Config, Couriers, parse_config
from gozen.supervise.launch import is_entry
from gozen.supervise.programs import UnknownProgram, find_program, load_entry, programs_for, registry


def every_role(tmp_path: Path) -> Config:
    """One host with every role, every feed read, an archive here and storage quotas: every program runs."""
    return parse_config(
        {
            "data_dir": str(tmp_path),
            "hosts": [{"name": "all", "roles": list(ALL_ROLES), "rsync_port": 8730}],
            # GCN Kafka credentials: courier:gw runs only where GW alerts can come from.
            "couriers": {f: {"url": f"http://127.0.0.1:9/{f}"} for f in FEEDS}
            | {"gcn": {"client_id": "test", "client_secret": "test"}},
            "storage_nodes": [{"name": "n0", "path": "storage/n0", "max_bytes": 2**30}],
        }
    )


def test_every_entry_point_imports_and_is_a_service_or_a_main_taking_the_context(tmp_path: Path) -> None:
    cfg = every_role(tmp_path)
    programs = programs_for(cfg, cfg.hosts[0])
    assert {p.full_name for p in programs} == {p.full_name for p in registry(cfg)}  # nothing left out
    for p in programs:
        entry = load_entry(p)
        assert is_entry(entry), f"{p.full_name}: {p.entry} is neither a Service subclass nor main(ctx)"


def test_rendered_names_are_group_colon_name_as_before(tmp_path: Path) -> None:
    cfg = every_role(tmp_path)
    names = [p.full_name for p in programs_for(cfg, cfg.hosts[0])]
    for expected in (
        "supervise:events",
        "daq:control",
        "daq:readout-01",
        "daq:writer-02",
        "transfer:push",
        "transfer:janitor",
        "transfer:pop-01",
        "transfer:export",
        "transfer:retention",
        "storage:dfmonitor",
        "archive:simulator",
        "sim:alpaca",
        "monitor:weather",
        "queue:server",
        "courier:cneos",
        "courier:maxi",
        "courier:sender",
        "www:dashboard",
    ):
        assert expected in names
    assert len(names) == len(set(names))


def test_a_host_runs_only_the_programs_of_its_roles(tmp_path: Path) -> None:
    cfg = parse_config({"data_dir": str(tmp_path), "hosts": [{"name": "w", "roles": ["web"]}]})
    assert [p.full_name for p in programs_for(cfg, cfg.hosts[0])] == ["supervise:events", "www:dashboard", "www:report"]


def test_a_courier_runs_only_for_a_feed_that_is_read(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "data_dir": str(tmp_path),
            "hosts": [{"name": "c", "roles": ["couriers"]}],
            "couriers": {"gaia": {"url": "http://127.0.0.1:9/gaia"}, "simulator": {"enabled": False}},
        }
    )
    couriers = [p.full_name for p in programs_for(cfg, cfg.hosts[0]) if p.group == "courier"]
    assert couriers == ["courier:gaia", "courier:watch", "courier:sender"]


def test_the_simulated_feeds_are_read_where_no_url_is_given(tmp_path: Path) -> None:
    cfg = parse_config(
        {"data_dir": str(tmp_path), "hosts": [{"name": "c", "roles": ["couriers"], "address": "127.0.0.21"}]}
    )
    names = [p.full_name for p in programs_for(cfg, cfg.hosts[0])]
    assert "sim:feeds" in names and {"courier:cneos", "courier:gaia", "courier:maxi", "courier:mpec"} <= set(names)
    assert cfg.feed_in_use("maxi").url == "http://127.0.0.21:8472/feeds/maxi"
    assert [n.name for n in cfg.notifiers_in_use()] == ["sim-slack"]
    assert [(r.feed, r.priority) for r in cfg.followups_in_use()] == [("maxi", "interrupt")]


def test_numbered_programs_carry_their_index_and_run_as_gozen_run_group_name(tmp_path: Path) -> None:
    cfg = parse_config({"data_dir": str(tmp_path), "daq": {"readouts": 2, "readout_cpus": [0]}})
    readout = find_program(cfg, "daq:readout-02")
    assert readout.args == {"index": 1} and readout.cpus == (0,)
    assert readout.command_line == (sys.executable, "-m", "gozen", "run", "daq:readout-02")
    assert find_program(cfg, "daq-readout-02") is not None  # supervisord's section name is understood too
    with pytest.raises(UnknownProgram, match="no program 'daq:readout-03'"):
        find_program(cfg, "daq:readout-03")


def test_every_feed_has_its_settings_in_the_config() -> None:
    assert set(FEEDS) <= set(Couriers.model_fields)
    assert all(Couriers().feed(f).url is None for f in FEEDS)


def test_gozen_run_help_lists_every_program_with_its_roles(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gozen", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for p in registry(parse_config({})):
        assert any(p.full_name in line and p.summary in line for line in lines), p.full_name
    assert any("www:dashboard" in line and " web " in line for line in lines)


def test_gozen_run_of_an_unknown_program_exits_2_naming_it(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gozen", "run", "daq:nosuch"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert r.returncode == 2 and "no program 'daq:nosuch'" in r.stderr
