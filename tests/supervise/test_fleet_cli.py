"""`gozen ps` with a host that does not answer (one clean row, then its last known programs), and
`gozen transfer status` telling copies given up from copies waiting for their retry."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import yaml

from gozen.config import load_config
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.transfer import catalog
from tests.conftest import START_S, free_port, gozen_cmd, wait_until
from tests.supervise.test_fleet import Supervisord, events_of, host, passes_until, running, watcher
from tests.transfer.test_transfer import random_daq_files


def _run(config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(gozen_cmd(config_file, *args), capture_output=True, text=True, env=env, timeout=300)


def test_ps_shows_an_unreachable_host_as_one_row_then_its_last_known_programs(tmp_path: Path) -> None:
    p1, p2 = free_port(), free_port()
    config_file = tmp_path / "gozen.yaml"
    data = {"data_dir": str(tmp_path / "var"), "hosts": [host("store1", p1), host("store2", p2)]}
    config_file.write_text(yaml.safe_dump(data))
    cfg = load_config(config_file)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    store1, store2 = Supervisord(tmp_path, "store1", p1, "pw-store1"), Supervisord(tmp_path, "store2", p2, "pw-store2")
    store1.start()
    store2.start()
    try:
        wait_until(lambda: running(cfg, "store1") and running(cfg, "store2"), START_S, what="both supervisords")
        w = watcher(cfg, engine)
        w.run_once()  # store2's programs are on the board
        store2.stop()
        passes_until(w, lambda: events_of(engine, "host_unreachable", "store2"), "store2 told unreachable")
        r = _run(config_file, "ps")
        assert r.returncode == 1, r.stdout + r.stderr
        rows = [ln.split(None, 1) for ln in r.stdout.splitlines() if ln.strip()]
        store2_rows = [rest for name, rest in rows if name == "store2"]
        assert len(store2_rows) == 2, r.stdout  # one clean row, then its one last known program
        assert store2_rows[0].startswith("unreachable since ") and "connection refused" in store2_rows[0]
        assert store2_rows[0].rstrip().endswith("UNREACHABLE"), r.stdout  # nothing cut into uptime or pid
        assert store2_rows[1].startswith("work:ticker") and "RUNNING (last seen " in store2_rows[1]
        [store1_row] = [rest for name, rest in rows if name == "store1"]
        assert "RUNNING" in store1_row and "last seen" not in store1_row

        j = json.loads(_run(config_file, "ps", "--json").stdout)
        down = next(h for h in j if h["host"] == "store2")
        assert not down["reachable"] and down["last_seen"]["programs"][0]["name"] == "work:ticker"
        assert next(h for h in j if h["host"] == "store1")["last_seen"] is None
    finally:
        store1.stop()
        store2.stop()


def test_transfer_status_tells_copies_given_up_from_copies_waiting_for_a_retry(tmp_path: Path) -> None:
    config_file = tmp_path / "gozen.yaml"
    config_file.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "var"), "archive": None}))
    cfg = load_config(config_file)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    vol = tmp_path / "daq"
    vol.mkdir()
    rows = random_daq_files(vol, 2, seed=3, min_bytes=1000)
    assert catalog.register(engine, rows, 1) == 2
    first, second = (catalog.claim(engine, "t", timedelta(minutes=5)) for _ in range(2))
    assert first is not None and second is not None
    catalog.failed(engine, first, "the DAQ copy is gone and no replica is left", None)
    catalog.failed(engine, second, "node1: No space left on device", timedelta(seconds=300))
    r = _run(config_file, "transfer", "status")
    assert r.returncode == 0, r.stderr
    assert f"failed (gave up): {first.filename}: the DAQ copy is gone and no replica is left" in r.stdout
    [waiting] = [ln for ln in r.stdout.splitlines() if second.filename in ln]
    # 300 s from the claim, counted down a little by the time the command runs (rounded: 299 or 300)
    assert re.match(r"waiting for a node \(retry in (29\d|300) s\)", waiting.strip()), waiting
    assert "No space left on device" in waiting
    assert first.filename not in r.stdout.split("failed (gave up)")[0]  # not shown as waiting
