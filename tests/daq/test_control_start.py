"""daq:control fixes an exposure's start after the status snapshot, so a slow snapshot never arms one in the past."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gozen.daq import catalog, control
from gozen.db.types import utcnow
from tests.daq.test_poison import HOST, setup


def test_a_slow_status_snapshot_does_not_arm_an_exposure_already_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, engine = setup(tmp_path)  # start_delay_s 0.1
    real_snapshot = control.take_snapshot

    def slow_snapshot(*args: Any, **kw: Any) -> Any:
        time.sleep(1.5)  # the first board read of a program's life on a loaded host took 1.4 s
        return real_snapshot(*args, **kw)

    monkeypatch.setattr(control, "take_snapshot", slow_snapshot)
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("F1", 10, 20.0), 1)
    assert control.arm_next(cfg, engine, HOST) == exp_id
    armed_at = utcnow()
    start = catalog.exposure_info(engine, exp_id).start_at
    assert start >= armed_at + timedelta(seconds=cfg.daq.start_delay_s) - timedelta(milliseconds=50), (
        f"armed to start {(armed_at - start).total_seconds():.2f} s before it was armed"
    )
