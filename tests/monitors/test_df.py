"""storage:dfmonitor on a real (small tmpfs) volume: thresholds, fill rate, offline, and the board."""

from __future__ import annotations

import time
from pathlib import Path

from gozen.config import parse_config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.monitors.board import publish, snapshot
from gozen.monitors.df import DfMonitor
from gozen.service import Context


def test_thresholds_fill_rate_offline_and_back(tmp_path: Path, small_tmpfs: Path) -> None:
    cfg = parse_config(
        {
            "data_dir": str(tmp_path / "var"),
            "daq_volumes": [{"name": "v1", "path": str(small_tmpfs)}],
            "storage_nodes": [{"name": "n0", "path": str(tmp_path / "gone")}],
            "monitors": {"df_warn_pct": 50, "df_alarm_pct": 80},
        }
    )
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    mon = DfMonitor(Context(cfg, "h", engine, "storage:dfmonitor"))
    publish(engine, "storage:dfmonitor", mon.sample())
    (small_tmpfs / "a").write_bytes(b"x" * 600_000)
    time.sleep(0.2)
    publish(engine, "storage:dfmonitor", mon.sample())
    board = snapshot(engine, "df.")
    assert board.number("df.v1.used_pct") > 50 and board.number("df.v1.fill_rate_bps") > 0
    assert board.number("df.v1.time_to_full_s") is not None and board.get("df.n0.online").value is False
    (small_tmpfs / "b").write_bytes(b"x" * 300_000)
    publish(engine, "storage:dfmonitor", mon.sample())
    (small_tmpfs / "a").unlink()
    (small_tmpfs / "b").unlink()
    publish(engine, "storage:dfmonitor", mon.sample())
    kinds = [(e.subject, e.kind, e.severity) for e in reversed(recent_events(engine, 20))]
    assert kinds == [
        ("n0", "disk_offline", "error"),
        ("v1", "disk_warn", "warning"),
        ("v1", "disk_alarm", "error"),
        ("v1", "disk_ok", "info"),
    ]
    mon.sample()  # no change, no new event
    assert len(recent_events(engine, 20)) == 4


def test_old_values_are_marked_stale(tmp_path: Path) -> None:
    from datetime import timedelta

    from gozen.db.types import utcnow
    from gozen.monitors.board import Reading

    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    upgrade(engine)
    publish(engine, "test", [Reading("x.a", 1.5, "m", 10)], when=utcnow() - timedelta(seconds=60))
    publish(engine, "test", [Reading("x.b", 2.5, "m", 10)])
    board = snapshot(engine)
    assert board.get("x.a").stale and not board.get("x.b").stale
