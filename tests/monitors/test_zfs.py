"""storage:zfsmonitor with saved `zpool` outputs and a fake `zpool` on PATH."""

from __future__ import annotations

from pathlib import Path

import pytest

from gozen.config import parse_config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.monitors.board import publish, snapshot
from gozen.monitors.zfs import ZfsMonitor, parse_list, parse_status
from gozen.service import Context
from tests.conftest import fake_command

DATA = Path(__file__).parents[1] / "data" / "zpool"


def test_parse_a_healthy_and_a_degraded_pool() -> None:
    ok = parse_status((DATA / "status-online.txt").read_text())["data"]
    assert (ok.state, ok.read_errors, ok.cksum_errors, ok.bad_devices) == ("ONLINE", 0, 0, [])
    assert ok.scan.startswith("scrub repaired 0B") and ok.errors == "No known data errors"
    bad = parse_status((DATA / "status-degraded.txt").read_text())
    parse_list((DATA / "list-degraded.txt").read_text(), bad)
    p = bad["data"]
    assert (p.state, p.read_errors, p.write_errors, p.cksum_errors) == ("DEGRADED", 3, 112, 2)
    assert p.bad_devices == ["sdb FAULTED"] and "11.22% done" in p.scan and p.capacity_pct == 75.0


@pytest.fixture
def fake_zpool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `zpool` that answers from the saved outputs named in $FAKE_ZPOOL_STATE."""
    return fake_command(
        tmp_path,
        monkeypatch,
        "zpool",
        f"""case "$1" in
  status) cat "{DATA}/status-$FAKE_ZPOOL_STATE.txt" ;;
  list) cat "{DATA}/list-$FAKE_ZPOOL_STATE.txt" ;;
esac
""",
    )


def test_a_pool_going_degraded_and_back_is_two_events_and_on_the_board(
    tmp_path: Path, fake_zpool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    upgrade(engine)
    mon = ZfsMonitor(Context(parse_config({}), "buf-node0", engine, "storage:zfsmonitor"))
    for state in ("online", "online", "degraded", "degraded", "online"):
        monkeypatch.setenv("FAKE_ZPOOL_STATE", state)
        publish(engine, "storage:zfsmonitor", mon.sample())
        if state == "degraded":
            board = snapshot(engine, "zfs.")
            assert board.get("zfs.buf-node0.data.state").value == "DEGRADED"
            assert board.number("zfs.buf-node0.data.write_errors") == 112
            assert "sdb     FAULTED" in board.get("zfs.buf-node0.data.status_text").value
    kinds = [(e.kind, e.severity) for e in reversed(recent_events(engine, 20))]
    assert kinds == [("pool_degraded", "error"), ("pool_errors", "error"), ("pool_healthy", "info")]


def test_no_zfs_is_said_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no zpool anywhere
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    upgrade(engine)
    mon = ZfsMonitor(Context(parse_config({}), "laptop", engine, "storage:zfsmonitor"))
    for _ in range(3):
        readings = mon.sample()
    assert [(r.key, r.value) for r in readings] == [("zfs.laptop.available", False)]
    assert len(recent_events(engine, 10, kind="zfs_absent")) == 1
