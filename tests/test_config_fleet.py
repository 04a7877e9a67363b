"""The config of a fleet: where each host reaches the storage nodes, the DAQ volumes and the archive."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gozen.config import ConfigError, load_config, parse_config

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_fleet_example() -> dict[str, Any]:
    """The 4-host example of README "Several hosts", as the fleet test runs it."""
    text = README.read_text()
    block = re.search(r"<!-- fleet-example -->\n```yaml\n(.*?)```", text, re.S)
    assert block, "README has no fleet example"
    data: dict[str, Any] = yaml.safe_load(block.group(1))
    return data


def fleet(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    data = readme_fleet_example()
    data.pop("database")  # ${GOZEN_DATABASE_URL}
    data.pop("notifiers")  # ${GOZEN_SLACK_WEBHOOK}
    return {**data, "data_dir": str(tmp_path / "var"), **changes}


def check(tmp_path: Path, data: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "gozen.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return subprocess.run(
        [sys.executable, "-m", "gozen", "config", "check", str(f)], capture_output=True, text=True, timeout=60
    )


def test_the_readme_example_loads_with_its_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOZEN_DATABASE_URL", "postgresql://gozen:pw@127.0.0.14/gozen")
    monkeypatch.setenv("GOZEN_SLACK_WEBHOOK", "https://hooks.slack.com/services/T/B/x")
    cfg = parse_config(readme_fleet_example())
    assert cfg.database_url == "postgresql://gozen:pw@127.0.0.14/gozen"
    assert cfg.notifiers[0].url == "https://hooks.slack.com/services/T/B/x"


def test_nodes_on_a_host_with_rsync_port_are_reached_through_its_daemon(tmp_path: Path) -> None:
    cfg = parse_config(fleet(tmp_path))
    assert [cfg.node_rsync_url(n) for n in cfg.storage_nodes] == [
        "rsync://gozen@127.0.0.12:8730/node1",
        "rsync://gozen@127.0.0.13:8730/node2",
    ]
    assert cfg.daq_rsync_url(cfg.daq_volumes[0]) is None  # daq1 runs no rsync daemon


def test_an_explicit_rsync_url_wins(tmp_path: Path) -> None:
    nodes = fleet(tmp_path)["storage_nodes"]
    nodes[0]["rsync_url"] = "rsync://other@127.0.0.99:873/n1"
    cfg = parse_config(fleet(tmp_path, storage_nodes=nodes))
    assert cfg.node_rsync_url(cfg.storage_nodes[0]) == "rsync://other@127.0.0.99:873/n1"


def test_a_relative_archive_dir_is_under_the_archive_hosts_data_dir_and_reached_by_rsync_elsewhere(
    tmp_path: Path,
) -> None:
    cfg = parse_config(fleet(tmp_path))
    assert cfg.archive_dest_for("head") == str(tmp_path / "var" / "archive")
    for other in ("daq1", "store1", "store2"):
        assert cfg.archive_dest_for(other) == "rsync://gozen@127.0.0.14:8730/archive"
    assert cfg.holds_archive("head") and not cfg.holds_archive("store1")


def test_the_archive_host_defaults_to_the_host_with_role_archive(tmp_path: Path) -> None:
    cfg = parse_config(fleet(tmp_path, archive={"dest": "archive"}))
    assert cfg.archive_host() is not None and cfg.archive_host().name == "head"  # type: ignore[union-attr]


def test_a_remote_archive_is_the_same_for_every_host(tmp_path: Path) -> None:
    cfg = parse_config(fleet(tmp_path, archive={"dest": "rsync://archive.example.org/tomoe"}))
    assert {cfg.archive_dest_for(h.name) for h in cfg.hosts} == {"rsync://archive.example.org/tomoe"}


def test_an_unknown_archive_host_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"archive\.host: unknown host 'mars'"):
        parse_config(fleet(tmp_path, archive={"dest": "archive", "host": "mars"}))


def test_an_rsync_node_needs_a_url_or_a_host_with_rsync_port(tmp_path: Path) -> None:
    hosts = fleet(tmp_path)["hosts"]
    del next(h for h in hosts if h["name"] == "store1")["rsync_port"]
    r = check(tmp_path, fleet(tmp_path, hosts=hosts))
    assert r.returncode == 2
    said = " ".join(r.stderr.split())
    assert "storage_nodes[0].rsync_url: needed with transport rsync, unless its host (store1) has rsync_port" in said


def test_config_check_refuses_a_directory_archive_other_hosts_cannot_reach(tmp_path: Path) -> None:
    hosts = fleet(tmp_path)["hosts"]
    head = next(i for i, h in enumerate(hosts) if h["name"] == "head")
    del hosts[head]["rsync_port"]
    r = check(tmp_path, fleet(tmp_path, hosts=hosts))
    assert r.returncode == 2, r.stderr
    said = " ".join(r.stderr.split())
    assert "archive.dest: 'archive' is a directory on head, but store1, store2 export to it" in said
    assert f"set hosts[{head}].rsync_port" in said


def test_config_check_accepts_the_readme_example(tmp_path: Path) -> None:
    r = check(tmp_path, fleet(tmp_path))
    assert r.returncode == 0, r.stderr


def test_the_cli_takes_its_host_from_gozen_host_and_config_after_the_subcommand(tmp_path: Path) -> None:
    f = tmp_path / "gozen.yaml"
    f.write_text(yaml.safe_dump(fleet(tmp_path)))
    env = {k: v for k, v in os.environ.items() if k not in ("GOZEN_CONFIG", "GOZEN_HOST")}
    assert load_config(f).database_url.startswith("sqlite:")
    run = [sys.executable, "-m", "gozen"]
    assert subprocess.run([*run, "db", "upgrade", "--config", str(f)], env=env, timeout=120).returncode == 0
    janitor = [*run, "transfer", "janitor", "--dry-run", "--config", str(f)]
    r = subprocess.run(janitor, env={**env, "GOZEN_HOST": "daq1"}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "would delete 0 files" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(janitor, env={**env, "GOZEN_HOST": "mars"}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no host named 'mars'" in r.stderr
