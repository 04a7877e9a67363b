"""supervisord.conf is not an open door: loopback unless asked, a generated password, 0600, no injection."""

from __future__ import annotations

import configparser
import os
import signal
import stat
import subprocess
import xmlrpc.client
from pathlib import Path
from typing import Any

import psutil
import pytest

from gozen.config import ConfigError, parse_config
from gozen.supervise.access import connect_address, rpc_url, supervisor_password
from gozen.supervise.client import SupervisorClient
from gozen.supervise.render import ProgramGroupClash, UnsafeConfValue, render_supervisord_conf
from gozen.supervise.up import prepare
from tests.conftest import free_port, gozen_cmd, wait_until, write_config


def conf_of(tmp_path: Path, host: dict[str, Any], **extra: Any) -> tuple[configparser.RawConfigParser, str]:
    cfg = parse_config({"data_dir": str(tmp_path / "var"), "hosts": [host], **extra})
    text = render_supervisord_conf(cfg, cfg.hosts[0], None, tmp_path)
    ini = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"))
    ini.read_string(text)
    return ini, text


def test_a_host_without_supervisor_block_binds_its_configured_address_not_every_address(tmp_path: Path) -> None:
    ini, _ = conf_of(tmp_path, {"name": "daq1", "address": "10.0.0.10", "roles": []})
    assert ini["inet_http_server"]["port"] == "10.0.0.10:9001"
    assert ini["supervisorctl"]["serverurl"] == "http://10.0.0.10:9001"


def test_an_explicit_supervisor_address_is_where_supervisord_listens(tmp_path: Path) -> None:
    host = {"name": "daq1", "address": "10.0.0.10", "roles": [], "supervisor": {"address": "10.0.0.10", "port": 9101}}
    ini, _ = conf_of(tmp_path, host)
    assert ini["inet_http_server"]["port"] == "10.0.0.10:9101"


def test_a_loopback_host_address_is_kept_so_several_hosts_can_share_one_machine(tmp_path: Path) -> None:
    ini, _ = conf_of(tmp_path, {"name": "buf0", "address": "127.0.0.2", "roles": []})
    assert ini["inet_http_server"]["port"] == "127.0.0.2:9001"


def test_the_password_is_generated_once_per_install_kept_0600_and_never_gozen(tmp_path: Path) -> None:
    ini, _ = conf_of(tmp_path, {"name": "solo", "roles": []})
    pw_file = tmp_path / "var" / "run" / "supervisor-password"
    password = pw_file.read_text().strip()
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    assert len(password) >= 24 and password != "gozen"
    assert ini["inet_http_server"]["password"] == password.replace("%", "%%")
    again, _ = conf_of(tmp_path, {"name": "solo", "roles": []})
    assert again["inet_http_server"]["password"] == ini["inet_http_server"]["password"]  # reused
    other, _ = conf_of(tmp_path / "other", {"name": "solo", "roles": []})
    assert other["inet_http_server"]["password"] != ini["inet_http_server"]["password"]  # per install


def test_the_rendered_conf_is_written_0600_even_over_an_old_0644_one(tmp_path: Path) -> None:
    cfg = parse_config({"data_dir": str(tmp_path / "var"), "hosts": [{"name": "solo", "roles": []}]})
    old = cfg.run_dir / "supervisord-solo.conf"
    old.parent.mkdir(parents=True)
    old.write_text("old")
    old.chmod(0o644)
    conf = prepare(cfg, cfg.hosts[0], None)
    assert conf == old and stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert "[inet_http_server]" in conf.read_text()
    assert [p.name for p in conf.parent.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_newline_in_the_password_file_cannot_inject_a_program(tmp_path: Path) -> None:
    pw_file = tmp_path / "var" / "run" / "supervisor-password"
    pw_file.parent.mkdir(parents=True)
    pw_file.write_text("secret123\n[program:evil]\ncommand=/bin/sh -c 'touch /tmp/pwned'\n")
    cfg = parse_config({"data_dir": str(tmp_path / "var"), "hosts": [{"name": "solo", "roles": []}]})
    with pytest.raises(ConfigError, match="not a usable supervisord password: only printable ASCII"):
        render_supervisord_conf(cfg, cfg.hosts[0], None, tmp_path)


def test_a_newline_in_data_dir_cannot_inject_a_program(tmp_path: Path) -> None:
    evil = tmp_path / "var\n[program:evil]\ncommand=/bin/sh -c 'touch pwned'\n"
    cfg = parse_config({"data_dir": str(evil), "hosts": [{"name": "solo", "roles": []}]})
    with pytest.raises(
        UnsafeConfValue, match="data_dir: cannot go into supervisord.conf: it holds a control character"
    ):
        render_supervisord_conf(cfg, cfg.hosts[0], None, tmp_path)


def test_a_comment_sign_after_a_space_in_a_path_is_refused_not_truncated(tmp_path: Path) -> None:
    cfg = parse_config({"data_dir": str(tmp_path / "var ;x"), "hosts": [{"name": "solo", "roles": []}]})
    with pytest.raises(UnsafeConfValue, match="data_dir: .* holds ';' after a space"):
        render_supervisord_conf(cfg, cfg.hosts[0], None, tmp_path)


def test_gozen_up_with_an_unsafe_data_dir_exits_2_naming_it(tmp_path: Path) -> None:
    cfg_file = tmp_path / "gozen.yaml"
    cfg_file.write_text(f'data_dir: "{tmp_path}/var\\n[program:evil]"\nhosts: [{{name: solo, roles: []}}]\n')
    r = subprocess.run(gozen_cmd(cfg_file, "up"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "data_dir: cannot go into supervisord.conf" in r.stderr and "Traceback" not in r.stderr


def test_user_is_rendered_only_when_configured(tmp_path: Path) -> None:
    ini, text = conf_of(tmp_path, {"name": "solo", "roles": []})
    assert "user" not in ini["supervisord"]  # not even when the tests run as root
    ini, _ = conf_of(tmp_path, {"name": "solo", "roles": [], "supervisor": {"user": "gozen"}})
    assert ini["supervisord"]["user"] == "gozen"


def test_credentials_with_at_slash_colon_are_quoted_in_the_client_url(tmp_path: Path) -> None:
    cfg = parse_config(
        {"data_dir": str(tmp_path), "hosts": [{"name": "a", "supervisor": {"port": 9101, "password": "p@ss/w:rd%1"}}]}
    )
    assert rpc_url(cfg.hosts[0]) == "http://gozen:p%40ss%2Fw%3Ard%251@127.0.0.1:9101/RPC2"


def test_a_remote_host_without_supervisor_address_is_not_looked_for_on_this_machine(tmp_path: Path) -> None:
    hosts = [
        {"name": "a", "address": "127.0.0.1"},
        {"name": "b", "address": "10.0.0.20", "supervisor": {"port": 9102}, "roles": ["storage"]},
    ]
    cfg = parse_config({"data_dir": str(tmp_path), "hosts": hosts})
    # 127.0.0.1:9102 on this machine is not b's supervisord: b is tried where it is (and refused there).
    assert connect_address(cfg.host("b")) == "10.0.0.20"


def _listening(pid: int) -> set[tuple[str, int]]:
    conns = psutil.Process(pid).net_connections(kind="inet")
    return {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}


def test_real_supervisord_listens_on_the_hosts_address_only_and_refuses_gozen_gozen(tmp_path: Path) -> None:
    port = free_port()
    address = "127.0.0.23"  # the host's own address, as on a fleet of machines (not 127.0.0.1, not 0.0.0.0)
    host = {"name": "solo", "address": address, "roles": [], "supervisor": {"port": port}}
    cfg = write_config(tmp_path / "gozen.yaml", {"data_dir": str(tmp_path / "var"), "hosts": [host]})
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - kept open for the child
    proc = subprocess.Popen(gozen_cmd(tmp_path / "gozen.yaml", "up"), stdout=log, stderr=log, start_new_session=True)
    try:
        status = wait_until(
            lambda: (s := SupervisorClient(cfg.hosts[0]).status()).reachable and s,
            what="supervisord answering with the generated password",
            dump=lambda: (tmp_path / "up.log").read_text(),
        )
        assert "supervise:events" in {p.full_name for p in status.processes}
        assert _listening(proc.pid) == {(address, port)}
        with pytest.raises(xmlrpc.client.ProtocolError) as refused:
            xmlrpc.client.ServerProxy(f"http://gozen:gozen@{address}:{port}/RPC2").supervisor.getState()
        assert refused.value.errcode == 401
        conf = cfg.run_dir / "supervisord-solo.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600 and "password=gozen\n" not in conf.read_text()
        assert stat.S_IMODE(cfg.hosts[0].supervisor.password_file.stat().st_mode) == 0o600  # type: ignore[union-attr]
        ps = subprocess.run(gozen_cmd(tmp_path / "gozen.yaml", "ps"), capture_output=True, text=True, timeout=120)
        assert ps.returncode == 0 and "supervise:events" in ps.stdout, ps.stdout + ps.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == 0


def test_real_supervisord_takes_a_password_with_at_slash_colon_percent(tmp_path: Path) -> None:
    port = free_port()
    password = "p@ss/w:rd%x;1#2"
    host = {"name": "solo", "roles": [], "supervisor": {"port": port, "password": password}}
    cfg = write_config(tmp_path / "gozen.yaml", {"data_dir": str(tmp_path / "var"), "hosts": [host]})
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - kept open for the child
    proc = subprocess.Popen(gozen_cmd(tmp_path / "gozen.yaml", "up"), stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(
            lambda: SupervisorClient(cfg.hosts[0]).status().reachable,
            what="supervisord answering with a password holding @/:%;#",
            dump=lambda: (tmp_path / "up.log").read_text(),
        )
        assert supervisor_password(cfg.hosts[0]) == password
        ps = subprocess.run(gozen_cmd(tmp_path / "gozen.yaml", "ps"), capture_output=True, text=True, timeout=120)
        assert ps.returncode == 0 and "supervise:events" in ps.stdout, ps.stdout + ps.stderr
        assert not (cfg.run_dir / "supervisor-password").exists()  # a configured password makes no file
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == 0


def test_up_makes_the_rsync_password_once_0600_when_a_host_runs_an_rsync_daemon(tmp_path: Path) -> None:
    plain = parse_config({"data_dir": str(tmp_path / "plain"), "hosts": [{"name": "solo", "roles": []}]})
    prepare(plain, plain.hosts[0], None)
    assert not plain.rsync_password_file.exists() and plain.rsync_password() is None  # no daemon: no password
    cfg = parse_config(
        {"data_dir": str(tmp_path / "var"), "hosts": [{"name": "solo", "roles": [], "rsync_port": 8730}]}
    )
    prepare(cfg, cfg.hosts[0], None)
    password = cfg.rsync_password()
    assert password and len(password) >= 24
    assert stat.S_IMODE(cfg.rsync_password_file.stat().st_mode) == 0o600
    prepare(cfg, cfg.hosts[0], None)
    assert cfg.rsync_password() == password  # kept: every host has a copy of it
    given = parse_config(
        {
            "data_dir": str(tmp_path / "given"),
            "hosts": [{"name": "solo", "roles": [], "rsync_port": 8730}],
            "transfer": {"rsync_password": "a-configured-one"},
        }
    )
    prepare(given, given.hosts[0], None)
    assert not given.rsync_password_file.exists() and given.rsync_password() == "a-configured-one"


def test_a_program_in_an_event_listeners_group_is_refused_naming_both(tmp_path: Path) -> None:
    clash = {"group": "supervise", "name": "extra", "command": "sleep 60"}  # supervise:events is a listener
    with pytest.raises(
        ProgramGroupClash, match=r"group 'supervise' holds the event listener supervise:events and also"
    ):
        conf_of(tmp_path, {"name": "solo", "roles": [], "programs": [clash]})
    cfg_file = tmp_path / "gozen.yaml"
    write_config(cfg_file, {"data_dir": str(tmp_path / "up"), "hosts": [{"name": "solo", "programs": [clash]}]})
    r = subprocess.run(gozen_cmd(cfg_file, "up"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "supervise:extra" in r.stderr, r.stderr
