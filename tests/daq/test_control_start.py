"""daq:control: it fixes an exposure's start after the status snapshot (a slow snapshot never arms one
in the past), and it closes its books with the camera split over two DAQ hosts: a host that recorded
no file of its chips by the deadline is told, its chips recorded lost, once."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from gozen.config import Config, parse_config
from gozen.daq import catalog, control
from gozen.daq.stats import daq_stats
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.states import ExposureState
from gozen.db.tables import daq_files, exposures
from gozen.db.types import utcnow
from gozen.service import make_context
from tests.daq.test_poison import HOST, setup

SPLIT = {"daq1": [111, 112], "daq2": [311, 312]}
FRAMES = 6


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


# -- the books, with two DAQ hosts ---------------------------------------------------------------
def split_config(tmp_path: Path) -> Config:
    """Chips 111, 112 read on daq1 (Q1, daq:control's host), 311, 312 on daq2."""
    cfg = parse_config(
        {
            "data_dir": str(tmp_path / "var"),
            "hosts": [
                {"name": "daq1", "address": "127.0.0.21", "roles": ["daq", "daq-master"], "chips": ["Q1"]},
                {"name": "daq2", "address": "127.0.0.22", "roles": ["daq"], "chips": [311, 312]},
            ],
            "camera": {"width_px": 200, "height_px": 100, "chips": [c for cs in SPLIT.values() for c in cs]},
            "daq": {"start_delay_s": 0.1, "frame_timeout_s": 1},
        }
    )
    assert {h: cfg.chips_of(h) for h in SPLIT} == SPLIT and cfg.daq_control_host() == "daq1"
    return cfg


@pytest.fixture(params=["sqlite", "postgresql"])
def split_camera(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Config, Engine]:
    cfg = split_config(tmp_path)
    if request.param == "postgresql":
        return cfg, request.getfixturevalue("pg_engine")
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    return cfg, engine


def armed_long_ago(cfg: Config, engine: Engine) -> int:
    """An exposure armed for every chip, whose deadline (end + grace) has passed."""
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("SPLIT", FRAMES, 2.0), 1)
    assert control.arm_next(cfg, engine, "daq1") == exp_id
    with engine.begin() as conn:
        conn.execute(update(exposures).where(exposures.c.exp_id == exp_id).values(end_at=utcnow() - timedelta(hours=1)))
    return exp_id


def written_row(cfg: Config, exp_id: int, det_id: int) -> dict[str, Any]:
    """A DAQ host's own row for a file it wrote (as its writer records it)."""
    overdue = catalog.OverdueExposure(exp_id, utcnow(), FRAMES)
    host = cfg.daq_host_of_chip(det_id)
    return control.lost_file_row(cfg, overdue, det_id) | {
        "state": "written",
        "path": f"/data/daq/vol1/file-{det_id}.fits",
        "size_bytes": 123_456,
        "checksum_xxh3": "0123456789abcdef",
        "frames_written": FRAMES,
        "frames_missing": 0,
        "writer": f"daq:writer-01 on {host}",
    }


def rows_of(engine: Engine, exp_id: int) -> dict[int, Any]:
    with engine.connect() as conn:
        return {r.det_id: r for r in conn.execute(select(daq_files).where(daq_files.c.exp_id == exp_id))}


def close_books(cfg: Config, engine: Engine) -> None:
    books = control.Control(make_context(cfg, "daq:control", host="daq1", engine=engine))
    books.close_books(give_up=True)


def test_a_silent_daq_host_is_told_once_and_its_chips_recorded_lost(split_camera: tuple[Config, Engine]) -> None:
    cfg, engine = split_camera
    exp_id = armed_long_ago(cfg, engine)
    assert catalog.record_files(engine, [written_row(cfg, exp_id, d) for d in SPLIT["daq1"]]) == []
    close_books(cfg, engine)
    close_books(cfg, engine)  # a second pass finds the exposure closed: nothing told twice
    assert catalog.exposure_outcome(engine, exp_id).state == ExposureState.INCOMPLETE
    rows = rows_of(engine, exp_id)
    assert sorted(rows) == [111, 112, 311, 312]
    for det in SPLIT["daq2"]:
        r = rows[det]
        assert (r.state, r.daq_host, r.writer, r.path, r.frames_expected, r.frames_missing) == (
            "lost",
            "daq2",
            "daq:control",
            None,
            FRAMES,
            FRAMES,
        ), det
    [silent] = recent_events(engine, kind="daq_host_silent")
    assert (silent.severity, silent.subject, silent.host, silent.source) == (
        "error",
        "daq2",
        "daq1",
        "daq:control",
    )
    assert f"chips [311, 312] of exposure {exp_id}" in silent.message and "12 frames counted missing" in silent.message
    assert "nothing came from it" in silent.message and silent.data == {
        "daq_host": "daq2",
        "exp_id": exp_id,
        "chips": [311, 312],
        "frames_missing": 12,
    }
    assert daq_stats(engine, exp_ids=[exp_id]).frames_missing == 2 * FRAMES
    assert len(recent_events(engine, kind="exposure_incomplete")) == 1


def test_a_host_whose_readouts_reported_but_no_file_came_is_told_so(split_camera: tuple[Config, Engine]) -> None:
    cfg, engine = split_camera
    exp_id = armed_long_ago(cfg, engine)
    catalog.record_files(engine, [written_row(cfg, exp_id, d) for d in (111, 112, 311)])
    report = {"readout": "daq:readout-01", "daq_host": "daq2", "recognised": True, "frames_damaged": 0}
    catalog.record_readout_reports(
        engine,
        [{"exp_id": exp_id, "det_id": 312, "frames_read": 2, "frames_missed": 4, "frames_dropped": 0, **report}],
    )
    close_books(cfg, engine)
    [silent] = recent_events(engine, kind="daq_host_silent")
    assert "chips [312]" in silent.message and "its readouts reported chips [312]" in silent.message, silent.message
    assert rows_of(engine, exp_id)[312].state == "lost"


def test_a_hosts_own_row_coming_later_replaces_the_lost_row_counting_nothing_twice(
    split_camera: tuple[Config, Engine],
) -> None:
    cfg, engine = split_camera
    exp_id = armed_long_ago(cfg, engine)
    catalog.record_files(engine, [written_row(cfg, exp_id, d) for d in SPLIT["daq1"]])
    close_books(cfg, engine)
    late = written_row(cfg, exp_id, 311)  # daq2's writer spool, replayed once the host is back
    assert catalog.record_files(engine, [late]) == []
    assert catalog.record_files(engine, [late]) == []  # replayed again: ignored
    rows = rows_of(engine, exp_id)
    assert (rows[311].state, rows[311].writer, rows[311].frames_missing) == ("written", late["writer"], 0)
    assert (rows[312].state, rows[312].writer) == ("lost", "daq:control")
    with engine.connect() as conn:
        assert len(conn.execute(select(daq_files.c.id).where(daq_files.c.det_id == 311)).all()) == 1
    assert daq_stats(engine, exp_ids=[exp_id]).frames_missing == FRAMES  # chip 312 only


def test_an_exposure_whose_every_chip_came_from_both_hosts_is_done(split_camera: tuple[Config, Engine]) -> None:
    cfg, engine = split_camera
    exp_id = armed_long_ago(cfg, engine)
    catalog.record_files(engine, [written_row(cfg, exp_id, d) for ds in SPLIT.values() for d in ds])
    close_books(cfg, engine)
    assert catalog.exposure_outcome(engine, exp_id).state == ExposureState.DONE
    assert recent_events(engine, kind="daq_host_silent") == []
    assert {r.state for r in rows_of(engine, exp_id).values()} == {"written"}


def test_a_row_recorded_while_control_closes_the_books_is_left_alone(tmp_path: Path, pg_engine: Engine) -> None:
    """On PostgreSQL (SQLite has one writer: no row can come between control's look and its insert)."""
    cfg, engine = split_config(tmp_path), pg_engine
    exp_id = armed_long_ago(cfg, engine)
    catalog.record_files(engine, [written_row(cfg, exp_id, d) for d in SPLIT["daq1"]])

    def lost_row_as_311_comes(exp: catalog.OverdueExposure, det: int) -> dict[str, Any]:
        if det == 311:  # daq2's writer commits its row between control's look and its insert
            assert catalog.record_files(engine, [written_row(cfg, exp_id, 311)]) == []
        return control.lost_file_row(cfg, exp, det)

    [closed] = catalog.finish_exposures(engine, timedelta(seconds=1), True, lost_row_as_311_comes)
    assert [r["det_id"] for r in closed.lost] == [312]
    rows = rows_of(engine, exp_id)
    assert (rows[311].state, rows[312].state, rows[312].writer) == ("written", "lost", "daq:control")
