"""Readout and writer in one process (real rings, files and database): volumes that fill or fail, a
readout restarted mid-exposure."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash
from astropy.io import fits
from sqlalchemy import select

from gozen.config import Config, parse_config
from gozen.daq import catalog
from gozen.daq.control import arm_next
from gozen.daq.readout import Readout
from gozen.daq.writer import Writer
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.tables import daq_files, readout_reports
from gozen.devices.camera import ExposureSpec
from tests.conftest import WAIT_S
from tests.daq.exposing import expose
from tests.daq.test_poison import drain

W, H, FRAMES = 200, 100, 10  # 40 kB frames: 400 kB files


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[list[Path]]:
    """Two small real filesystems (tmpfs), so a volume really fills up mid-file."""
    paths = []
    for name, size in (("small1", "600k"), ("small2", "2000k")):
        p = tmp_path / name
        p.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(p)], check=True)
        paths.append(p)
    yield paths
    for p in paths:
        subprocess.run(["umount", str(p)], check=False)


def daq_config(tmp_path: Path, volumes: list[Path], **daq: Any) -> Config:
    return parse_config(
        {
            "data_dir": str(tmp_path / "var"),
            "camera": {"width_px": W, "height_px": H, "fps": 20, "chips": [111, 112, 113, 114]},
            "daq_volumes": [{"name": f"vol{i}", "path": str(p)} for i, p in enumerate(volumes, 1)],
            "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 0.1, "frame_timeout_s": 1, **daq},
        }
    )


def run_exposure(cfg: Config) -> tuple[Writer, list[dict[str, Any]]]:
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    readout, writer = Readout(cfg, engine, 0, "daq1"), Writer(cfg, engine, 0, "daq1")
    writer.attach(timeout_s=WAIT_S)
    _, rows = expose(cfg, engine, readout, writer, catalog.ExposureRequest("F1", FRAMES, 20.0))
    return writer, [rows[det] for det in sorted(rows)]


def test_a_volume_that_fills_mid_file_is_skipped_and_nothing_is_lost(tmp_path: Path, mounts: list[Path]) -> None:
    cfg = daq_config(tmp_path, mounts)
    writer, rows = run_exposure(cfg)
    assert [r["state"] for r in rows] == ["written"] * 4
    assert {r["daq_volume"] for r in rows} == {"vol1", "vol2"}  # vol1 filled; the rest moved on
    for r in rows:
        assert (r["frames_written"], r["frames_missing"]) == (FRAMES, 0)
        data = Path(r["path"]).read_bytes()
        assert xxhash.xxh3_64(data).hexdigest() == r["checksum_xxh3"] and len(data) == r["size_bytes"]
        with fits.open(r["path"]) as hdul:
            assert hdul[0].data.shape == (FRAMES, H, W) and hdul[0].header["DAQ-VOL"] == r["daq_volume"]
            assert list(hdul["FRAMES"].data["FLAGS"]) == [0] * FRAMES
    assert not list(mounts[0].rglob("*.part")) and not list(mounts[1].rglob("*.part"))
    failed = recent_events(writer.engine, 50, kind="volume_failed")
    assert failed and all(e.subject == "vol1" and "No space left" in e.message for e in failed)


def test_a_failed_volume_is_skipped_with_an_event(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("not a directory: the disk behind it is gone")
    good = tmp_path / "good"
    cfg = daq_config(tmp_path, [broken, good])
    writer, rows = run_exposure(cfg)
    assert [(r["state"], r["daq_volume"], r["frames_missing"]) for r in rows] == [("written", "vol2", 0)] * 4
    skipped = recent_events(writer.engine, 50, kind="volume_skipped")
    assert skipped and "vol1" in skipped[-1].message


def test_with_no_volume_left_files_are_recorded_lost_not_crashed(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("x")
    cfg = daq_config(tmp_path, [broken])
    writer, rows = run_exposure(cfg)
    assert [(r["state"], r["frames_missing"], r["path"]) for r in rows] == [("lost", FRAMES, None)] * 4
    assert recent_events(writer.engine, 50, kind="file_lost")


def test_a_whole_file_left_unnamed_by_a_dead_writer_is_salvaged_and_a_broken_one_removed(tmp_path: Path) -> None:
    from gozen.daq.cube import part_name

    cfg = daq_config(tmp_path, [tmp_path / "vol"])
    writer, rows = run_exposure(cfg)
    whole, cut = Path(rows[0]["path"]), Path(rows[2]["path"])  # both chips of writer 0 in a 1-writer setup
    whole.rename(part_name(whole))  # as if the writer died after finishing, before the rename
    cut_bytes = cut.read_bytes()
    part_name(cut).write_bytes(cut_bytes[: len(cut_bytes) // 2])  # as if it died mid-file
    cut.unlink()
    with writer.engine.begin() as conn:
        conn.execute(daq_files.delete().where(daq_files.c.det_id.in_((rows[0]["det_id"], rows[2]["det_id"]))))

    restarted = Writer(cfg, writer.engine, 0, "daq1")
    restarted.flush_records()
    assert whole.exists() and not part_name(whole).exists() and not part_name(cut).exists()
    with writer.engine.connect() as conn:
        [row] = conn.execute(select(daq_files).where(daq_files.c.det_id == rows[0]["det_id"])).all()
    assert row.checksum_xxh3 == rows[0]["checksum_xxh3"] and row.frames_written == FRAMES
    assert recent_events(writer.engine, 10, kind="partial_file_salvaged")
    assert recent_events(writer.engine, 10, kind="partial_file_removed")


def test_a_full_ring_drops_frames_counted_per_chip_and_flagged_in_the_files(tmp_path: Path) -> None:
    # 5 slots, the exposure's announcement and 4 frames: the writer falls behind
    cfg = daq_config(tmp_path, [tmp_path / "vol"], ring_seconds=0.0625)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    catalog.request_exposures(engine, catalog.ExposureRequest("F1", FRAMES, 20.0), 1)
    arm_next(cfg, engine, "daq1")
    readout = Readout(cfg, engine, 0, "daq1")
    writer = Writer(cfg, engine, 0, "daq1")
    writer.attach(timeout_s=WAIT_S)
    [exp] = catalog.armed_after(engine, 0)
    counts = readout.read_exposure(exp)  # nobody drains the ring meanwhile
    readout.report(exp, counts)
    while writer.poll():
        pass
    writer.flusher.wait()
    time.sleep(cfg.daq.frame_timeout_s)
    writer.poll()
    writer.flusher.wait()
    writer.poll()
    dropped = {c: k["dropped"] for c, k in counts.items()}
    assert sum(dropped.values()) == 4 * FRAMES - 4  # only the first four frames fitted, after the announcement
    with engine.connect() as conn:
        reports = {r.det_id: r.frames_dropped for r in conn.execute(select(readout_reports))}
        files = {r.det_id: r for r in conn.execute(select(daq_files))}
    assert reports == dropped
    for det, n in dropped.items():
        f = files[det]
        assert f.frames_missing == n, (det, f.state)
    assert recent_events(engine, 10, kind="frames_lost")


def test_files_are_striped_over_volumes_with_equal_room(tmp_path: Path) -> None:
    cfg = daq_config(tmp_path, [tmp_path / "a", tmp_path / "b"])  # one filesystem: equal free space
    _, rows = run_exposure(cfg)
    assert sorted(r["daq_volume"] for r in rows) == ["vol1", "vol1", "vol2", "vol2"]


def read_frames(readout: Readout, exp: catalog.ArmedExposure, frames: range) -> None:
    """Part of an exposure, as a readout that dies after them (kill -9) leaves it: no end-of-exposure mark."""
    readout.camera.start_exposure(ExposureSpec(exp.exp_id, exp.n_frames, exp.fps, 0, exp.ra_deg, exp.dec_deg))
    for i in frames:
        for det in readout.recognised:
            readout.read_one(exp, det, i, Counter())


def test_frames_a_restarted_readout_sends_again_are_skipped_quietly(tmp_path: Path) -> None:
    cfg = daq_config(tmp_path, [tmp_path / "vol"])
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("F1", FRAMES, 20.0), 1)
    assert arm_next(cfg, engine, "daq1") == exp_id
    [exp] = catalog.armed_after(engine, exp_id - 1)
    first = Readout(cfg, engine, 0, "daq1")
    writer = Writer(cfg, engine, 0, "daq1")
    writer.attach(timeout_s=WAIT_S)
    first.announce_in_rings(exp, first.recognised, catalog.exposure_info(engine, exp_id))
    read_frames(first, exp, range(4))
    drain(writer)
    again = Readout(cfg, engine, 0, "daq1")  # restarted at once: it reads the exposure from its start
    again.report(exp, again.read_exposure(exp))
    drain(writer)
    assert writer.repeated == 4 * 4 and writer.quarantined == 0
    assert not recent_events(engine, 10, kind="ring_slot_quarantined")
    with engine.connect() as conn:
        rows = conn.execute(select(daq_files)).all()
    assert [(r.state, r.frames_written, r.frames_missing) for r in rows] == [("written", FRAMES, 0)] * 4


def test_a_full_readout_file_moved_to_another_volume_keeps_its_overscan_statistics(tmp_path: Path) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    for p in (small, big):
        p.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(p)], check=True)
    try:
        cfg = parse_config(
            {
                "data_dir": str(tmp_path / "var"),
                "camera": {"fps": 20, "chips": [111], "readout": "full"},
                "daq_volumes": [{"name": "vol1", "path": str(small)}, {"name": "vol2", "path": str(big)}],
                "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 0.1, "frame_timeout_s": 1},
            }
        )
        engine = make_engine(cfg.database_url)
        upgrade(engine)
        [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("F1", 3, 20.0), 1)
        assert arm_next(cfg, engine, "daq1") == exp_id
        readout, writer = Readout(cfg, engine, 0, "daq1"), Writer(cfg, engine, 0, "daq1")
        writer.attach(timeout_s=WAIT_S)
        [exp] = catalog.armed_after(engine, exp_id - 1)
        readout.announce_in_rings(exp, [111], catalog.exposure_info(engine, exp_id))
        read_frames(readout, exp, range(1))
        drain(writer)  # the file is begun on vol1, with its first frame
        (small / "ballast").write_bytes(b"x" * 12 * 2**20)  # then vol1 fills
        read_frames(readout, exp, range(1, 3))
        drain(writer)
        with engine.connect() as conn:
            [row] = conn.execute(select(daq_files)).all()
        assert (row.state, row.daq_volume, row.frames_missing) == ("written", "vol2", 0)
        assert (row.naxis1, row.naxis2) == (2160, 1200)
        with fits.open(row.path, memmap=False) as hdul:  # a mapping left open would keep the mount busy
            table = hdul["FRAMES"].data
            assert np.isfinite(table["OSMED"]).all() and np.isfinite(table["OSNOISE"]).all()  # frame 0's came along
            assert row.overscan_median == pytest.approx(float(np.median(table["OSMED"])))
            assert row.overscan_noise == pytest.approx(float(np.median(table["OSNOISE"])))
        assert [e.subject for e in recent_events(engine, 10, kind="volume_failed")] == ["vol1"]
    finally:
        for p in (small, big):
            subprocess.run(["umount", str(p)], check=False)
