"""`gozen fleet check` against a real supervisord, gozen's own rsync daemon and a host that is down;
the clock check against an XML-RPC server whose clock is set off."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import pytest
import yaml
from sqlalchemy import Engine

from gozen import __version__
from gozen.config import Config, load_config
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.monitors.board import Reading, heartbeat, publish
from gozen.supervise.check import check_database, check_fleet, check_host, version_of
from gozen.supervise.client import SupervisorClient
from gozen.transfer.rsyncd import write_rsyncd_files
from tests.conftest import START_S, WAIT_S, free_port, gozen_cmd, tail, wait_until
from tests.supervise.test_fleet import Rsyncd as _PlainRsyncd
from tests.supervise.test_fleet import Supervisord, host, running

PASSWORD = "rsync-pw-0123456789abcdef"


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Iterator[tuple[Path, Config, Engine]]:
    """store1 (supervisord + gozen's rsync daemon with node1, up) and store2 (down), one SQLite database."""
    p1, p2, r1 = free_port(), free_port(), free_port()
    data = {
        "data_dir": str(tmp_path / "var"),
        "hosts": [host("store1", p1, rsync_port=r1), host("store2", p2)],
        "storage_nodes": [
            {"name": "node1", "path": "storage/node1", "host": "store1"},
            {"name": "node2", "path": "storage/node2", "host": "store2"},
        ],
        "daq_volumes": [{"name": "vol1", "path": "daq/vol1", "host": "store1"}],
        "archive": None,
        "transfer": {"rsync_password": PASSWORD},
    }
    config_file = tmp_path / "gozen.yaml"
    config_file.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_config(config_file)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    sup = Supervisord(tmp_path, "store1", p1, "pw-store1")
    sup.start()
    conf = write_rsyncd_files(cfg, cfg.host("store1"))
    rsyncd = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}"])
    try:
        wait_until(lambda: running(cfg, "store1"), START_S, what="store1's supervisord")
        plain = _PlainRsyncd.__new__(_PlainRsyncd)
        plain.port = r1
        wait_until(plain.answers, WAIT_S, what="store1's rsync daemon", dump=lambda: tail(conf))
        heartbeat(engine, "store1", "work:ticker", 60)  # a program of store1 reaches the database
        publish(engine, "storage:dfmonitor", [Reading("df.node1.free_bytes", 40e9, "B", 60),
                                              Reading("df.node1.used_pct", 60.0, "%", 60),
                                              Reading("df.node1.online", True, "", 60)])  # fmt: skip
        yield config_file, cfg, engine
    finally:
        rsyncd.terminate()
        rsyncd.wait(timeout=WAIT_S)
        sup.stop()


def test_each_host_is_one_line_and_a_host_that_is_down_fails_the_check(
    fleet_dir: tuple[Path, Config, Engine],
) -> None:
    config_file, cfg, _ = fleet_dir
    env = {**os.environ, "COLUMNS": "400"}
    r = subprocess.run(gozen_cmd(config_file, "fleet", "check"), capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "answers, migrated" in lines[0]
    [store1] = [ln for ln in lines if ln.split()[:1] == ["store1"]]
    [store2] = [ln for ln in lines if ln.split()[:1] == ["store2"]]
    assert " ok " in store1 and __version__ in store1 and "node1 writable" in store1 and "daq-vol1 readable" in store1
    assert "reached (1 programs beat" in store1 and "node1 40.0 GB (40% free)" in store1
    assert "TROUBLE" in store2 and "unreachable: connection refused" in store2
    node1 = cfg.under_data_dir(cfg.storage_nodes[0].path)
    assert not list(node1.iterdir())  # the probe file was deleted


def test_a_wrong_rsync_password_is_a_module_that_cannot_be_written(fleet_dir: tuple[Path, Config, Engine]) -> None:
    _, cfg, engine = fleet_dir
    wrong = cfg.model_copy(update={"transfer": cfg.transfer.model_copy(update={"rsync_password": "nope-" + "x" * 20})})
    c = check_host(wrong, wrong.host("store1"), None, 5.0)
    assert not c.ok
    assert any(t.startswith("node1: ") and "auth" in t for t in c.troubles), c.troubles


def test_the_database_check_says_when_it_is_not_migrated(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    c = check_database(engine)
    assert not c.ok and "not migrated" in c.text and "gozen db upgrade" in c.text
    upgrade(engine)
    assert check_database(engine).ok


def test_version_is_read_from_supervisords_identifier() -> None:
    assert version_of(f"gozen-{__version__}-store-1", "store-1") == __version__
    assert version_of("gozen-store-1", "store-1") is None  # rendered by an older gozen
    assert version_of("supervisor", "store-1") is None


class _OffsetHandler(SimpleXMLRPCRequestHandler):
    offset_s = 0.0

    def date_time_string(self, timestamp: float | None = None) -> str:
        return formatdate(time.time() + self.offset_s, usegmt=True)


def _clock_server(offset_s: float) -> tuple[SimpleXMLRPCServer, int]:
    handler = type("Handler", (_OffsetHandler,), {"offset_s": offset_s})
    server = SimpleXMLRPCServer(("127.0.0.1", 0), requestHandler=handler, logRequests=False)
    server.register_function(lambda: "gozen-x-h", "supervisor.getIdentification")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.mark.parametrize("offset_s", [3.0, -2.2, 0.0, 0.6, -0.6])
def test_the_clock_offset_is_found_from_the_date_headers(tmp_path: Path, offset_s: float) -> None:
    server, port = _clock_server(offset_s)
    try:
        from gozen.config import parse_config

        cfg = parse_config({"data_dir": str(tmp_path), "hosts": [host("h", port)]})
        ident = SupervisorClient(cfg.host("h"), 5).identify(1.0)
    finally:
        server.shutdown()
        server.server_close()
    assert ident.identifier == "gozen-x-h" and ident.clock_offset_s is not None
    low, high = ident.clock_offset_s
    assert low - 0.05 <= offset_s <= high + 0.05, (low, high)
    far = abs(offset_s) > 1
    assert (high < -1 or low > 1) == far  # decided: clearly off, or clearly within
    if not far:
        assert -1 <= low and high <= 1


def test_check_fleet_names_each_host(fleet_dir: tuple[Path, Config, Engine]) -> None:
    _, cfg, engine = fleet_dir
    database, hosts = check_fleet(cfg, engine)
    by_name: dict[str, Any] = {h.host: h for h in hosts}
    assert database.ok and by_name["store1"].ok, by_name["store1"].troubles
    assert by_name["store1"].clock.endswith(")") and by_name["store2"].troubles
