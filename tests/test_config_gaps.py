"""gozen.yaml settings that used to pass `gozen config check`: now an error naming the key, or a warning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gozen.cli import app
from gozen.config import load_config

runner = CliRunner()


def check(tmp_path: Path, text: str | bytes) -> tuple[int, str]:
    """`gozen config check FILE` in this process: (exit code, what it printed on stderr)."""
    f = tmp_path / "gozen.yaml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    r = runner.invoke(app, ["config", "check", str(f)])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.stderr


def check_in_a_process(tmp_path: Path, text: str | bytes) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "gozen.yaml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    return subprocess.run(
        [sys.executable, "-m", "gozen", "config", "check", str(f)], capture_output=True, text=True, timeout=120
    )


ERRORS = {
    "web_bind_not_an_address": ('web: {bind: "not an address"}', "web.bind: not an IP address or host name"),
    "alpaca_address_without_port": (
        'monitors: {telescope: {address: "127.0.0.1"}}',
        "monitors.telescope.address: expected host:port",
    ),
    "alpaca_address_port_out_of_range": (
        'monitors: {weather: {address: "127.0.0.1:70000"}}',
        "monitors.weather.address: the port must be a number from 1 to 65535",
    ),
    "negative_cpu": ("daq: {writer_cpus: [1, -1]}", "daq.writer_cpus: CPU numbers count from 0, got [-1]"),
    "database_url_not_a_url": ('database: {url: "not a url"}', "database.url: not a database URL"),
    "database_url_not_sqlite_or_postgresql": (
        'database: {url: "mysql://u@h/gozen"}',
        "database.url: gozen stores its data in SQLite or PostgreSQL, not 'mysql'",
    ),
    "disk_warning_above_alarm": (
        "monitors: {df_warn_pct: 95, df_alarm_pct: 90}",
        "monitors.df_warn_pct: must not be above df_alarm_pct (90), got 95",
    ),
    "low_water_above_high_water": (
        "transfer: {daq_low_water_pct: 90, daq_high_water_pct: 80}",
        "transfer.daq_low_water_pct: must not be above daq_high_water_pct (80), got 90",
    ),
    "unknown_timezone": ("couriers: {timezone: Mars/Olympus_Mons}", "couriers.timezone: not an IANA time zone name"),
    "timezone_path": ('couriers: {timezone: "../../etc/passwd"}', "couriers.timezone: not an IANA time zone name"),
    "replication_3_with_1_node": (
        "transfer: {replication: 3}\nstorage_nodes: [{name: n0, path: storage/n0}]",
        "transfer.replication: 3 verified copies of each file need as many storage_nodes, 1 configured",
    ),
    "replication_1_with_0_nodes": (
        "storage_nodes: []",
        "transfer.replication: 1 verified copies of each file need as many storage_nodes, 0 configured",
    ),
    "supervisor_password_with_newline": (
        'hosts: [{name: a, supervisor: {password: "secret1\\n[program:evil]\\ncommand=sh"}}]',
        "hosts[0].supervisor.password: only printable ASCII characters (no line breaks",
    ),
    "supervisor_password_with_comment": (
        'hosts: [{name: a, supervisor: {password: "secret1 ;rest"}}]',
        "hosts[0].supervisor.password: no space before ';' or '#'",
    ),
    "supervisor_password_sha_prefix": (
        'hosts: [{name: a, supervisor: {password: "{SHA}abc"}}]',
        "hosts[0].supervisor.password: must not start with {SHA}",
    ),
    "supervisor_username_with_colon": (
        'hosts: [{name: a, supervisor: {username: "a:b"}}]',
        "hosts[0].supervisor.username: string should match pattern",
    ),
    "supervisor_address_not_an_address": (
        'hosts: [{name: a, supervisor: {address: "0.0.0.0:9001"}}]',
        "hosts[0].supervisor.address: not an IP address or host name",
    ),
    "host_address_not_an_address": (
        'hosts: [{name: a, address: "10.0.0.10\\nport=1"}]',
        "hosts[0].address: not an IP address or host name",
    ),
    "extra_program_command_with_newline": (
        'hosts: [{name: a, programs: [{group: bi, name: mb, command: "java\\n[program:evil]"}]}]',
        "hosts[0].programs[0].command: one line without control characters",
    ),
    "daq_hosts_without_their_chips": (
        "hosts: [{name: a, roles: [daq]}, {name: b, address: 127.0.0.2, roles: [daq]}]",
        "hosts[].chips: several DAQ hosts share the camera; give each its chips: hosts[0] (a), hosts[1] (b)",
    ),
    "chip_read_on_two_hosts": (
        "camera: {chips: [111, 112]}\n"
        "hosts: [{name: a, roles: [daq], chips: [111]},\n"
        "        {name: b, address: 127.0.0.2, roles: [daq], chips: [111, 112]}]",
        "hosts[1].chips: chip 111 is read on a already",
    ),
    "chip_read_nowhere": (
        "camera: {chips: [111, 112, 113]}\n"
        "hosts: [{name: a, roles: [daq], chips: [111]}, {name: b, address: 127.0.0.2, roles: [daq], chips: [112]}]",
        "hosts[].chips: no DAQ host reads chips [113] of camera.chips",
    ),
    "chips_not_a_quadrant": (
        "hosts: [{name: a, chips: [Q5]}]",
        "hosts[0].chips: 'Q5': a detector id (e.g. 111) or a quadrant (Q1, Q2, Q3, Q4)",
    ),
    "two_daq_masters": (
        "hosts: [{name: a, roles: [daq-master]}, {name: b, address: 127.0.0.2, roles: [daq, daq-master]}]",
        "hosts[].roles: one host runs daq:control, daq-master is on a, b",
    ),
    "full_readout_of_another_size": (
        "camera: {readout: full, width_px: 1000}",
        "camera.readout: full is Tomo-e Gozen's 2160 x 1200 readout",
    ),
    "extra_program_command_unbalanced_quote": (
        'hosts: [{name: a, programs: [{group: bi, name: mb, command: "java -jar \'x"}]}]',
        "hosts[0].programs[0].command: not a command line: No closing quotation",
    ),
}


@pytest.mark.parametrize(("text", "expected"), list(ERRORS.values()), ids=list(ERRORS))
def test_config_gap_is_an_error_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    code, stderr = check(tmp_path, text)
    assert code == 2, stderr
    assert expected in stderr


def test_plaintext_password_hash_is_refused_without_echoing_it(tmp_path: Path) -> None:
    code, stderr = check(tmp_path, "web: {users: [{name: alice, password_hash: hunter2-secret}]}")
    assert code == 2
    assert "web.users[0].password_hash: not a scrypt hash" in stderr and "gozen web hash-password" in stderr
    assert "hunter2" not in stderr


OVERLAPS = {
    "node_path_equals_daq_volume": (
        "storage_nodes: [{name: n0, path: daq/vol1}]",
        "daq_volumes[0].path: {d}/daq/vol1 is the same directory as storage_nodes[0].path ({d}/daq/vol1)",
    ),
    "node_path_inside_daq_volume": (
        "storage_nodes: [{name: n0, path: daq/vol2/copies}]",
        "daq_volumes[1].path: {d}/daq/vol2 contains storage_nodes[0].path ({d}/daq/vol2/copies)",
    ),
    "node_path_contains_daq_volume": (
        "storage_nodes: [{name: n0, path: daq}]",
        "daq_volumes[0].path: {d}/daq/vol1 is inside storage_nodes[0].path ({d}/daq)",
    ),
    "node_absolute_path_equals_relative_daq_volume": (
        "storage_nodes: [{name: n0, path: '{d}/daq/vol1/'}]",
        "daq_volumes[0].path: {d}/daq/vol1 is the same directory as storage_nodes[0].path",
    ),
    "two_nodes_share_a_directory": (
        "storage_nodes: [{name: n0, path: s/n0}, {name: n1, path: s/n0}]",
        "storage_nodes[0].path: {d}/s/n0 is the same directory as storage_nodes[1].path",
    ),
    "archive_dest_equals_a_node": (
        "archive: {dest: storage/node1}",
        "storage_nodes[1].path: {d}/storage/node1 is the same directory as archive.dest",
    ),
    "archive_dest_inside_a_daq_volume": (
        "archive: {dest: daq/vol1/archive}",
        "daq_volumes[0].path: {d}/daq/vol1 contains archive.dest",
    ),
}


@pytest.mark.parametrize(("text", "expected"), list(OVERLAPS.values()), ids=list(OVERLAPS))
def test_overlapping_daq_node_and_archive_paths_are_an_error_naming_both_keys(
    tmp_path: Path, text: str, expected: str
) -> None:
    d = tmp_path / "var"
    code, stderr = check(tmp_path, f"data_dir: {d}\n" + text.replace("{d}", str(d)))
    assert code == 2, stderr
    assert expected.replace("{d}", str(d)) in " ".join(stderr.split())


def test_same_path_on_two_different_hosts_is_not_an_overlap(tmp_path: Path) -> None:
    text = (
        "hosts: [{name: daq1, roles: [daq]}, {name: buf0, roles: [storage], supervisor: {port: 9002}}]\n"
        "daq_volumes: [{name: v1, path: /data/vol1, host: daq1}]\n"
        "storage_nodes: [{name: n0, path: /data/vol1, host: buf0}]\n"
        "archive: null\n"
    )
    code, stderr = check(tmp_path, text)
    assert code == 0, stderr


def test_the_janitor_never_runs_on_a_config_whose_node_is_a_daq_volume(tmp_path: Path) -> None:
    """Every program loads its config through load_config: an overlapping one stops them all at start."""
    (tmp_path / "gozen.yaml").write_text(f"data_dir: {tmp_path}\nstorage_nodes: [{{name: n0, path: daq/vol1}}]\n")
    with pytest.raises(Exception, match=r"daq_volumes\[0\]\.path: .* is the same directory as storage_nodes\[0\]"):
        load_config(tmp_path / "gozen.yaml")


WARNINGS = {
    "no_daq_host": ("hosts: [{name: w, roles: [web]}]", "hosts: no host has the role daq"),
    "cpu_beyond_this_machine": ("daq: {readout_cpus: [0], writer_cpus: [99]}", "daq.writer_cpus: CPU 99 is beyond"),
    "supervisor_on_the_network_with_the_generated_password": (
        "hosts: [{name: a, address: 10.0.0.10, supervisor: {address: 10.0.0.10}}]",
        "hosts[0].supervisor: supervisord listens on 10.0.0.10:9001, which other machines can reach",
    ),
    "supervisor_on_the_network_with_a_short_password": (
        "hosts: [{name: a, supervisor: {address: 0.0.0.0, password: gozen}}]",
        "hosts[0].supervisor.password: shorter than 12 characters",
    ),
    "daq_host_without_chips_of_this_camera": (
        "hosts: [{name: a, roles: [daq], chips: [Q1]}, {name: b, address: 127.0.0.2, roles: [daq], chips: [Q3]}]",
        "hosts[1].chips: b has role daq but none of camera.chips is among ['Q3']: its readouts read nothing",
    ),
    "remote_host_supervisor_on_its_address_with_the_generated_password": (
        "hosts: [{name: a, address: 10.0.0.10}, {name: b, address: 10.0.0.20, rsync_port: 8730, roles: [storage]}]\n"
        "archive: {dest: archive, host: b}",
        "hosts[1].supervisor: supervisord listens on 10.0.0.20:9001, which other machines can reach",
    ),
}


@pytest.mark.parametrize(("text", "expected"), list(WARNINGS.values()), ids=list(WARNINGS))
def test_config_gap_is_a_warning_and_exit_0(tmp_path: Path, text: str, expected: str) -> None:
    code, stderr = check(tmp_path, text)
    assert code == 0, stderr
    assert "warning:" in stderr and expected in " ".join(stderr.split())


def test_a_password_file_others_can_read_is_a_warning(tmp_path: Path) -> None:
    pw_file = tmp_path / "var" / "run" / "supervisor-password"
    pw_file.parent.mkdir(parents=True)
    pw_file.write_text("copied-without-care-1234\n")
    pw_file.chmod(0o644)
    code, stderr = check(tmp_path, f"data_dir: {tmp_path / 'var'}\n")
    assert code == 0 and f"hosts[0].supervisor.password_file: {pw_file} can be read by other users" in stderr


def test_the_default_config_has_no_warning(tmp_path: Path) -> None:
    code, stderr = check(tmp_path, "site: {name: Kiso}\n")
    assert code == 0 and stderr == ""


def test_square_brackets_in_an_error_are_printed_not_taken_for_markup(tmp_path: Path) -> None:
    r = check_in_a_process(tmp_path, 'camera: {driver: "[/x] [bold]y"}\n')
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "camera.driver: input should be 'simulator' or 'alpaca', got '[/x] [bold]y'" in r.stderr


def test_unclosed_flow_list_error_keeps_its_brackets(tmp_path: Path) -> None:
    code, stderr = check(tmp_path, "camera: [fps\n")
    assert code == 2 and "expected ',' or ']'" in stderr


def test_a_non_utf8_file_is_a_clear_message_not_a_traceback(tmp_path: Path) -> None:
    r = check_in_a_process(tmp_path, b'site: {name: "Kiso \xff\xfe"}\n')
    assert r.returncode == 2 and "not UTF-8 text" in r.stderr and "Traceback" not in r.stderr


def test_a_yaml_alias_bomb_is_a_short_error(tmp_path: Path) -> None:
    lines, prev = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"], "a0"
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*{prev}'] * 9)}]")
        prev = f"a{i}"
    r = check_in_a_process(tmp_path, "\n".join(lines) + "\n")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "aliases repeat too much" in r.stderr and len(r.stderr) < 400
