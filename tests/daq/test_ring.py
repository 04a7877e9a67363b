"""The shared-memory ring between a readout and a writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gozen.daq.ring import END, FRAME, Ring, RingMismatch


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
