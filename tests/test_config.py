"""gozen.yaml: the built-in default, and clear messages for bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from gozen.config import Config, ConfigError, load_config, tomoe_chip_ids


def run_gozen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gozen", *args], capture_output=True, text=True, env=env, timeout=60)


def test_default_is_a_small_simulated_observatory_on_one_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOZEN_CONFIG", raising=False)
    monkeypatch.delenv("GOZEN_DATA_DIR", raising=False)
    cfg = load_config()
    assert [h.name for h in cfg.hosts] == ["localhost"]
    assert len(cfg.camera.chips) == 4 and cfg.camera.driver == "simulator"
    assert len(cfg.daq_volumes) == 2 and len(cfg.storage_nodes) == 3
    assert cfg.data_dir == tmp_path / "var"
    assert cfg.database_url == f"sqlite:///{tmp_path / 'var' / 'gozen.db'}"
    assert cfg.under_data_dir(cfg.storage_nodes[2].path) == tmp_path / "var" / "storage" / "node2"


def test_tomoe_chip_ids_follow_the_quadrant_column_row_scheme() -> None:
    ids = tomoe_chip_ids()
    assert len(ids) == 84
    assert ids[:6] == [111, 112, 113, 114, 115, 116]
    assert 135 in ids and 136 not in ids and 144 in ids and 145 not in ids and 444 in ids


def test_config_check_names_key_path_and_why(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("camera:\n  fps: -1\nhosts:\n  - name: a\n    supervisor: {port: 70000}\n    colour: red\n")
    r = run_gozen("config", "check", str(bad))
    assert r.returncode == 2
    assert "camera.fps: must be > 0, got -1" in r.stderr
    assert "hosts[0].supervisor.port: must be < 65536, got 70000" in r.stderr
    assert "hosts[0].colour: unknown key" in r.stderr


def test_config_check_accepts_a_good_file_and_show_prints_it(tmp_path: Path) -> None:
    good = tmp_path / "gozen.yaml"
    good.write_text("site: {name: Kiso}\ncamera: {chips: [111, 121, 131, 141], fps: 1}\n")
    assert run_gozen("config", "check", str(good)).returncode == 0
    shown = run_gozen("--config", str(good), "config", "show")
    assert shown.returncode == 0
    assert "name: Kiso" in shown.stdout and "fps: 1.0" in shown.stdout and "- 141" in shown.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("camera: [1, 2", "not valid YAML"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("camera: {chips: [111, 111]}", "camera.chips: chip ids repeat"),
        ("hosts: [{name: a}, {name: a, supervisor: {port: 9002}}]", "hosts: names repeat: a"),
        ("daq_volumes: [{name: v, path: x, host: nowhere}]", "daq_volumes[0].host: unknown host 'nowhere'"),
        ("hosts: []", "hosts: list should have at least 1 item"),
        ("storage_nodes: [{name: n, path: x, transport: rsync}]", "storage_nodes[0].rsync_url: needed with transport"),
        ("storage_nodes: [{name: n, path: x, max_bytes: 0}]", "storage_nodes[0].max_bytes: must be > 0, got 0"),
        ("archive: {min_age_s: 5}", "archive.dest: required key is missing"),
    ],
)
def test_bad_configs_are_refused_with_the_reason(tmp_path: Path, text: str, expected: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert expected in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    r = run_gozen("config", "check", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "nope.yaml: cannot read" in r.stderr


def test_relative_data_dir_is_under_the_config_files_folder(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    f = tmp_path / "etc" / "gozen.yaml"
    f.write_text("data_dir: ../state\n")
    assert load_config(f).data_dir == tmp_path / "state"


def test_every_field_is_documented() -> None:
    undocumented: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            if not field.description:
                undocumented.append(prefix + name)
            for arg in (field.annotation, *get_args(field.annotation)):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    walk(arg, f"{prefix}{name}.")

    walk(Config, "")
    assert undocumented == []
