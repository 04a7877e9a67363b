"""The shared-memory ring between a readout and a writer, and the exposures announced in it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from gozen.config import Config
from gozen.daq import announce
from gozen.daq.announce import Announcements
from gozen.daq.headers import ExposureInfo
from gozen.daq.ring import BEGIN, END, FRAME, Ring, RingMismatch
from gozen.daq.snapshot import StatusValue, simulated_snapshot


def test_frames_come_out_in_order_with_their_meta(tmp_path: Path) -> None:
    prod = Ring.create_or_open(tmp_path / "r", 4, 64)
    cons = Ring.wait_open(tmp_path / "r", 4, 64)
    for i in range(3):
        seq = prod.reserve()
        assert seq is not None
        prod.data(seq)[:] = i
        prod.publish(seq, kind=FRAME, exp_id=7, det_id=112, index=i, n_frames=3, counter=100 + i, gps_ns=10**18)
    got = []
    while (m := cons.peek()) is not None:
        got.append((m.index, m.counter, int(cons.data(m.seq)[0])))
        cons.release()
    assert got == [(0, 100, 0), (1, 101, 1), (2, 102, 2)]


def test_a_full_ring_refuses_instead_of_blocking_and_recovers(tmp_path: Path) -> None:
    ring = Ring.create_or_open(tmp_path / "r", 2, 64)
    for _ in range(2):
        seq = ring.reserve()
        assert seq is not None
        ring.publish(seq, kind=FRAME)
    assert ring.reserve() is None and ring.free_slots() == 0
    ring.peek()
    ring.release()
    seq = ring.reserve()
    assert seq == 2
    ring.publish(seq, kind=END)
    assert ring.peek().kind == FRAME  # type: ignore[union-attr]


def test_state_survives_reopening_and_geometry_mismatch_is_refused(tmp_path: Path) -> None:
    a = Ring.create_or_open(tmp_path / "r", 3, 64)
    seq = a.reserve()
    assert seq is not None
    a.data(seq)[:] = np.arange(32, dtype=np.uint16)
    a.publish(seq, kind=FRAME, index=5)
    b = Ring.create_or_open(tmp_path / "r", 3, 64)  # e.g. a restarted readout
    assert b.head == 1 and b.peek().index == 5  # type: ignore[union-attr]
    assert list(b.data(0)[:4]) == [0, 1, 2, 3]
    with pytest.raises(RingMismatch, match="holds 3 slots of 64 bytes"):
        Ring.create_or_open(tmp_path / "r", 4, 64)


def test_opening_a_ring_nobody_created_times_out(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Ring.wait_open(tmp_path / "nope", 2, 64, timeout_s=0.2)


def exposure(n_values: int = 0) -> ExposureInfo:
    start = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
    snap = simulated_snapshot(Config(), start, 10.68, 41.27)
    rng = np.random.default_rng(n_values)  # values that do not compress away
    extra = {
        f"test.value_{i}": StatusValue(float(rng.random()), "", "test", start.isoformat()) for i in range(n_values)
    }
    snap.values.update(extra | {"weather.odd": StatusValue(float("nan"), "", "test", start.isoformat())})
    return ExposureInfo(9, "彗星 ☄", "OBJECT", "m", "none", "p", "Ōno", 12, 2.0, start, None, "r", snap)


def test_an_exposure_announced_in_the_ring_comes_out_whole_before_its_frames(tmp_path: Path) -> None:
    prod = Ring.create_or_open(tmp_path / "r", 8, 1024)  # smaller than the announcement: it spans slots
    cons = Ring.wait_open(tmp_path / "r", 8, 1024)
    exp = exposure(n_values=200)
    assert announce.announce(prod, exp)
    seq = prod.reserve()
    assert seq is not None
    prod.publish(seq, kind=FRAME, exp_id=9, det_id=111, os_median=1000.5, fits_order=1)
    parts, late, got = Announcements(), Announcements(), None
    while (m := cons.peek()) is not None and m.kind == BEGIN:
        assert (m.exp_id, m.n_frames) == (9, 12) and m.parts > 1
        assert got is None
        got = parts.take(cons, m)
        assert m.index == 0 or late.take(cons, m) is None  # started after the first part: asks the database
        cons.release()
    assert got is not None
    nan = got.snapshot.values.pop("weather.odd")
    assert isinstance(nan.value, float) and np.isnan(nan.value)
    exp.snapshot.values.pop("weather.odd")
    assert got == exp
    frame = cons.peek()
    assert frame is not None and (frame.os_median, frame.fits_order) == (1000.5, 1) and np.isnan(frame.os_noise)


def test_an_announcement_goes_in_whole_or_not_at_all(tmp_path: Path) -> None:
    ring = Ring.create_or_open(tmp_path / "r", 3, 1024)
    seq = ring.reserve()
    assert seq is not None
    ring.publish(seq, kind=FRAME)
    assert not announce.announce(ring, exposure(n_values=200))  # more parts than free slots
    assert ring.head == 1  # its writer asks the database instead
