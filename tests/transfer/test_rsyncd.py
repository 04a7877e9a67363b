"""storage:rsyncd: gozen's own rsync daemon, as supervisord runs it (`gozen run storage:rsyncd`).

Only user gozen with the install's password gets in; DAQ volumes are read-only; node and archive
modules take pushes; its files are 0600.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from gozen.config import Config
from gozen.supervise.up import prepare
from gozen.transfer.rsyncd import RsyncdConfigError, modules, render_rsyncd_conf, write_rsyncd_files
from tests.conftest import START_S, free_port, gozen_cmd, tail, wait_until, write_config


@dataclass
class Daemon:
    cfg: Config
    proc: subprocess.Popen[bytes]
    port: int

    def url(self, module: str, *parts: str) -> str:
        return "/".join([f"rsync://gozen@127.0.0.1:{self.port}/{module}", *parts])


def _config(tmp_path: Path, port: int, **extra: object) -> Config:
    return write_config(
        tmp_path / "gozen.yaml",
        {
            "data_dir": str(tmp_path / "var"),
            "hosts": [{"name": "solo", "roles": ["daq", "storage", "archive"], "rsync_port": port}],
            "daq_volumes": [{"name": "vol1", "path": "daq/vol1"}],
            "storage_nodes": [{"name": "node1", "path": "storage/node1", "transport": "rsync"}],
            "archive": {"dest": "archive"},
            **extra,
        },
    )


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    port = free_port()
    cfg = _config(tmp_path, port)
    prepare(cfg, cfg.hosts[0], tmp_path / "gozen.yaml")  # as `gozen up`: makes run/rsync-password
    log = tmp_path / "rsyncd.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            gozen_cmd(tmp_path / "gozen.yaml", "run", "storage:rsyncd"),
            env={**os.environ, "GOZEN_HOST": "solo"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: proc.poll() is None and _answers(port),
            START_S,
            what="the rsync daemon",
            dump=lambda: f"exit={proc.poll()}\n{tail(log)}",
        )
        yield Daemon(cfg, proc, port)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def rsync(*args: str, password: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RSYNC_PASSWORD"}
    if password is not None:
        env["RSYNC_PASSWORD"] = password
    # Its own session and no stdin: without a password rsync cannot ask a terminal for one.
    return subprocess.run(
        ["rsync", "--contimeout=20", "--timeout=60", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )


def _file(tmp_path: Path, text: str = "a FITS file") -> Path:
    src = tmp_path / "frame.fits"
    src.write_text(text)
    return src


def test_the_program_becomes_rsync_itself_so_supervisord_watches_the_daemon(daemon: Daemon) -> None:
    assert psutil.Process(daemon.proc.pid).name() == "rsync"


def test_a_push_with_the_install_password_lands_in_the_node_directory(daemon: Daemon, tmp_path: Path) -> None:
    password = daemon.cfg.rsync_password()
    assert password and len(password) >= 24
    r = rsync("-t", "--mkpath", str(_file(tmp_path)), daemon.url("node1", "20261125/"), password=password)
    assert r.returncode == 0, r.stderr
    assert (daemon.cfg.data_dir / "storage/node1/20261125/frame.fits").read_text() == "a FITS file"


def test_a_wrong_password_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    r = rsync("-t", str(_file(tmp_path)), daemon.url("node1", ""), password="not-the-password")
    assert r.returncode == 5 and "auth failed" in r.stderr, r.stderr
    assert not (daemon.cfg.data_dir / "storage/node1/frame.fits").exists()


def test_no_password_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    r = rsync("-t", str(_file(tmp_path)), daemon.url("node1", ""), password=None)
    assert r.returncode == 5 and "auth failed" in r.stderr, r.stderr
    assert not (daemon.cfg.data_dir / "storage/node1/frame.fits").exists()


def test_another_user_is_refused_with_the_right_password(daemon: Daemon, tmp_path: Path) -> None:
    url = daemon.url("node1", "").replace("gozen@", "root@")
    r = rsync("-t", str(_file(tmp_path)), url, password=daemon.cfg.rsync_password())
    assert r.returncode == 5 and "auth failed" in r.stderr, r.stderr


def test_a_daq_volume_can_be_read_but_not_written(daemon: Daemon, tmp_path: Path) -> None:
    password = daemon.cfg.rsync_password()
    vol = daemon.cfg.data_dir / "daq/vol1"
    (vol / "exposure.fits").write_text("raw frames")
    pushed = rsync("-t", str(_file(tmp_path, "overwrite")), daemon.url("daq-vol1", "exposure.fits"), password=password)
    assert pushed.returncode != 0 and "read only" in pushed.stderr, pushed.stderr
    assert (vol / "exposure.fits").read_text() == "raw frames"
    pulled = rsync("-t", daemon.url("daq-vol1", "exposure.fits"), str(tmp_path / "pulled.fits"), password=password)
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "pulled.fits").read_text() == "raw frames"


def test_the_archive_module_takes_packages(daemon: Daemon, tmp_path: Path) -> None:
    password = daemon.cfg.rsync_password()
    r = rsync("-t", "--mkpath", str(_file(tmp_path)), daemon.url("archive", "pkg/"), password=password)
    assert r.returncode == 0, r.stderr
    assert (daemon.cfg.data_dir / "archive/pkg/frame.fits").is_file()


def test_its_conf_and_secrets_file_are_0600(daemon: Daemon) -> None:
    run = daemon.cfg.run_dir
    for f in (run / "rsyncd-solo.conf", run / "rsyncd-solo.secrets", run / "rsync-password"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert (run / "rsyncd-solo.secrets").read_text() == f"gozen:{daemon.cfg.rsync_password()}\n"


def test_sigterm_stops_the_daemon(daemon: Daemon) -> None:
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=30) is not None
    assert not _answers(daemon.port)


def test_modules_serve_only_this_hosts_places_from_loopback_and_the_configured_hosts(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "gozen.yaml",
        {
            "data_dir": str(tmp_path / "var"),
            "hosts": [
                {"name": "daq1", "address": "127.0.0.11", "roles": ["daq"], "rsync_port": 8730},
                {"name": "store1", "address": "127.0.0.12", "roles": ["storage"], "rsync_port": 8730},
                {"name": "head", "address": "127.0.0.14", "roles": ["archive"], "rsync_port": 8730},
            ],
            "daq_volumes": [{"name": "v1", "path": "daq/v1", "host": "daq1"}],
            "storage_nodes": [{"name": "node1", "path": "storage/node1", "host": "store1", "transport": "rsync"}],
            "archive": {"dest": "archive"},
            "transfer": {"rsync_password": "a-long-shared-secret"},
        },
    )
    secrets = tmp_path / "s"
    texts = {h.name: render_rsyncd_conf(cfg, h, secrets) for h in cfg.hosts}
    assert "[daq-v1]" in texts["daq1"] and "[node1]" not in texts["daq1"] and "[archive]" not in texts["daq1"]
    assert "[node1]" in texts["store1"] and "[daq-v1]" not in texts["store1"]
    assert "[archive]" in texts["head"] and "[node1]" not in texts["head"]
    assert [modules(cfg, h) for h in cfg.hosts] == [[("daq-v1", True)], [("node1", False)], [("archive", False)]]
    assert "address = 127.0.0.12\nport = 8730" in texts["store1"]
    assert "hosts allow = 127.0.0.0/8 127.0.0.11 127.0.0.12 127.0.0.14\n" in texts["store1"]
    assert "auth users = gozen\n" in texts["store1"] and f"secrets file = {secrets}\n" in texts["store1"]
    assert cfg.node_rsync_url(cfg.storage_nodes[0]) == "rsync://gozen@127.0.0.12:8730/node1"
    assert cfg.daq_rsync_url(cfg.daq_volumes[0]) == "rsync://gozen@127.0.0.11:8730/daq-v1"


def test_without_a_password_the_daemon_does_not_start_and_says_what_to_do(tmp_path: Path) -> None:
    cfg = _config(tmp_path, free_port())
    with pytest.raises(RsyncdConfigError, match=r"transfer.rsync_password: not set, and there is no .*rsync-password"):
        write_rsyncd_files(cfg, cfg.hosts[0])


def test_a_node_path_rsyncd_conf_cannot_hold_is_refused_naming_the_key(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        free_port(),
        storage_nodes=[{"name": "node1", "path": "storage/100%", "transport": "rsync"}],
        transfer={"rsync_password": "a-long-shared-secret"},
    )
    with pytest.raises(RsyncdConfigError, match=r"storage_nodes\[0\]\.path: cannot go into rsyncd.conf"):
        write_rsyncd_files(cfg, cfg.hosts[0])
