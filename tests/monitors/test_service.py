"""A monitor as `gozen run` runs it (run_service): a device that goes away and comes back is one event each way."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gozen.db.events import recent_events
from gozen.monitors.board import snapshot
from gozen.monitors.power import PowerMonitor
from gozen.service import run_service
from tests.conftest import WAIT_S, fake_command, wait_until
from tests.monitors.contexts import monitor_context

DATA = Path(__file__).parents[1] / "data"


def test_a_monitor_outlives_its_device_going_away_and_coming_back(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unplugged = tmp_path / "unplugged"
    fake_command(
        tmp_path,
        monkeypatch,
        "upsc",
        f'[ -e "{unplugged}" ] && {{ echo "Error: Driver not connected" >&2; exit 1; }}\n'
        f'cat "{DATA}/upsc/online.txt"\n',
    )
    mon = PowerMonitor(monitor_context(engine, "monitor:power", every_s=0.1, ups_command=["upsc", "ups@localhost"]))
    exit_code: list[int] = []
    runner = threading.Thread(target=lambda: exit_code.append(run_service(mon)), daemon=True)
    runner.start()
    try:
        wait_until(lambda: snapshot(engine, "power.").get("power.ups_state") is not None, WAIT_S, 0.05, "a reading")
        unplugged.touch()  # the UPS's driver goes away for several periods
        wait_until(lambda: recent_events(engine, 10, kind="device_unreachable"), WAIT_S, 0.05, "device_unreachable")
        threading.Event().wait(5 * mon.period_s)  # more failed passes: still one event
        unplugged.unlink()
        wait_until(lambda: recent_events(engine, 10, kind="device_back"), WAIT_S, 0.05, "device_back")
        assert runner.is_alive()  # the program never died of it
    finally:
        mon.ctx.stop.set()
        runner.join(WAIT_S)
    assert exit_code == [0]
    kinds = [(e.kind, e.subject, e.source) for e in reversed(recent_events(engine, 20))]
    assert kinds == [
        ("device_unreachable", "UPS", "monitor:power"),
        ("device_back", "UPS", "monitor:power"),
    ]
    [down] = recent_events(engine, 1, kind="device_unreachable")
    assert down.message == (
        "UPS does not answer: upsc ups@localhost exit 1: Error: Driver not connected; its values will go stale"
    )
    assert not snapshot(engine, "power.").get("power.ups_state").stale  # read again since it came back
