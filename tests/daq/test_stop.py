"""An exposure asked to stop (catalog.stop_exposure) ends at the next frame boundary: every chip's cube
holds the frames begun before the stop, none counted missing; one not begun yet ends with no file."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash
from astropy.io import fits
from sqlalchemy import Engine, select

from gozen.config import Config
from gozen.daq import catalog
from gozen.daq.control import arm_next
from gozen.daq.cube import CubeFile
from gozen.daq.headers import ExposureInfo, HeaderTemplate, tomoe_filename
from gozen.daq.layout import frame_bytes, ring_path, ring_slots, rings_of_writer
from gozen.daq.readout import Readout
from gozen.daq.ring import Ring
from gozen.daq.snapshot import simulated_snapshot
from gozen.daq.stats import daq_stats
from gozen.daq.writer import Writer
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.states import ExposureState
from gozen.db.tables import daq_files, exposures, readout_reports
from gozen.db.types import utcnow
from tests.conftest import WAIT_S, Fleet, free_port, start_fleet, wait_until
from tests.daq.test_poison import HOST, setup

CHIPS = [111, 112, 113, 114]
W, H = 400, 300
WHY = "weather unsafe (rain) - by queue:server"


@pytest.fixture(scope="module")
def daq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("stop")
    host = {"name": "daq1", "address": "127.0.0.1", "roles": ["daq"], "supervisor": {"port": free_port()}}
    # Two readouts (each watching for the stop on its own, as on two DAQ hosts) and two writers; the lead
    # time and frame timeout as test_pipeline's, which hold with both cores busy.
    daq = {"readouts": 2, "writers": 2, "frame_timeout_s": 20, "start_delay_s": 5.0}
    extra = {"camera": {"chips": CHIPS, "width_px": W, "height_px": H}, "daq": daq}
    fleet = start_fleet(tmp, [host], down=[], extra=extra)
    for p in ("daq:control", "daq:readout-01", "daq:readout-02", "daq:writer-01", "daq:writer-02"):
        fleet.wait_state("daq1", p, "RUNNING")
    yield fleet
    fleet.stop()


def fitsverify(path: str) -> str:
    return subprocess.run(["fitsverify", path], capture_output=True, text=True).stdout


def files_of(engine: Engine, exp_id: int) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(daq_files).where(daq_files.c.exp_id == exp_id)).all()
    return {r.det_id: dict(r._mapping) for r in rows}


def exposure(engine: Engine, exp_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(exposures).where(exposures.c.exp_id == exp_id)).one()


def reports_of(engine: Engine, exp_id: int) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(readout_reports).where(readout_reports.c.exp_id == exp_id)).all())


def events_of(engine: Engine, kind: str, exp_id: int) -> list[Any]:
    return [e for e in recent_events(engine, 500, kind=kind) if e.subject.startswith(f"exp {exp_id}")]


def request(engine: Engine, name: str, frames: int) -> int:
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest(name, frames, 2.0), 1)
    return exp_id


def started(fleet: Fleet, engine: Engine, exp_id: int) -> datetime:
    """Its start, once daq:control armed it."""
    start: datetime = wait_until(
        lambda: catalog.exposure_outcome(engine, exp_id).start_at, WAIT_S, 0.05, f"exposure {exp_id} armed", fleet.dump
    )
    return start


def stop_mid_exposure(fleet: Fleet, engine: Engine, exp_id: int, after_s: float) -> datetime:
    """Stop it once `after_s` of it went by and its files are begun; the stop time recorded."""
    start = started(fleet, engine, exp_id)
    wait_until(
        lambda: utcnow() >= start + timedelta(seconds=after_s) and len(partial_files(fleet, exp_id)) == len(CHIPS),
        WAIT_S,
        0.05,
        f"{after_s} s of exposure {exp_id} with its files begun",
        fleet.dump,
    )
    assert catalog.stop_exposure(engine, exp_id, WHY)
    assert not catalog.stop_exposure(engine, exp_id, "a second stop"), "a stop is recorded once"
    stop_at: datetime = exposure(engine, exp_id).stop_at
    return stop_at


def partial_files(fleet: Fleet, exp_id: int) -> list[Path]:
    return [p for p in Path(fleet.cfg.data_dir).rglob(".TMQ*.fits.part") if p.name[-20:-12] == f"{exp_id:08d}"]


def closed(fleet: Fleet, engine: Engine, exp_id: int) -> Any:
    row = wait_until(
        lambda: (r := exposure(engine, exp_id)).state not in ("queued", "armed") and r,
        2 * WAIT_S,
        0.1,
        f"exposure {exp_id} closed",
        fleet.dump,
    )
    return row


def audit_cube(f: dict[str, Any], exp_id: int, start: datetime, frames: int, stopped: bool) -> None:
    """The file is valid, its row right, and it holds `frames` frames stamped from `start`, none flagged."""
    report = fitsverify(f["path"])
    assert "0 warning(s) and 0 error(s)" in report, report
    data = Path(f["path"]).read_bytes()
    assert len(data) == f["size_bytes"] and xxhash.xxh3_64(data).hexdigest() == f["checksum_xxh3"]
    assert (f["state"], f["naxis3"], f["frames_expected"], f["frames_written"]) == ("written", frames, frames, frames)
    assert (f["frames_missing"], f["frames_damaged"]) == (0, 0)
    with fits.open(f["path"]) as hdul:
        h, table = hdul[0].header, hdul["FRAMES"].data
        assert (h["EXP_ID"], h["NAXIS3"], hdul[0].data.shape) == (exp_id, frames, (frames, H, W))
        assert h["STOPPED"] is stopped and h["STOPWHY"] == (WHY if stopped else "")
        assert h["EXPTIME"] == h["TELAPSE"] == pytest.approx(frames / 2.0)
        assert datetime.fromisoformat(h["GPS-DOWN"]).replace(tzinfo=UTC) == start + timedelta(seconds=frames / 2.0)
        assert list(table["FRAME"]) == list(range(frames)) and not table["FLAGS"].any()
        stamps = table["GPSTIME"] - start.timestamp()
        assert np.allclose(stamps, np.arange(frames) / 2.0, atol=0.01), stamps  # frames of this exposure only


@pytest.mark.live
def test_a_stopped_exposure_ends_at_the_next_frame_boundary_on_every_chip(daq: Fleet) -> None:
    engine = make_engine(daq.cfg.database_url)
    exp_id = request(engine, "STOP", 40)
    stop_at = stop_mid_exposure(daq, engine, exp_id, 3.0)
    exp = closed(daq, engine, exp_id)
    kept = catalog.frames_kept(40, 2.0, exp.start_at, stop_at)
    assert 6 <= kept < 40  # frames begun before the stop: 3 s of them at least
    assert exp.state == ExposureState.DONE
    assert exp.finished_at < exp.start_at + timedelta(seconds=20), "it ended early, not at its planned end"
    files = files_of(engine, exp_id)
    assert sorted(files) == CHIPS
    for f in files.values():
        audit_cube(f, exp_id, exp.start_at, kept, stopped=True)
    # Both readouts read exactly the frames kept; the frames never read are not missed, dropped or lost.
    reports = reports_of(engine, exp_id)
    assert sorted((r.det_id, r.frames_read, r.frames_missed, r.frames_dropped) for r in reports) == [
        (c, kept, 0, 0) for c in CHIPS
    ]
    assert {r.readout for r in reports} == {"daq:readout-01", "daq:readout-02"}
    for kind in ("frames_lost", "exposure_incomplete", "file_lost", "exposure_timeout"):
        assert events_of(engine, kind, exp_id) == [], kind
    [told] = events_of(engine, "exposure_stopped", exp_id)
    assert (told.data["frames_kept"], told.data["n_frames"], told.data["reason"]) == (kept, 40, WHY)
    stats = daq_stats(engine, exp_ids=[exp_id])
    assert (stats.files, stats.frames_expected, stats.frames_written) == (4, 4 * kept, 4 * kept)
    assert (stats.frames_missing, stats.frames_damaged, stats.frames_dropped) == (0, 0, 0)
    out = catalog.exposure_outcome(engine, exp_id)
    assert (out.state, out.files_written, out.files_lost) == (ExposureState.DONE, 4, 0)
    assert (out.stopped, out.stop_reason, out.frames_kept) == (True, WHY, kept)


@pytest.mark.live
def test_a_queued_exposure_stopped_before_it_is_armed_never_arms_and_leaves_no_file(daq: Fleet) -> None:
    engine = make_engine(daq.cfg.database_url)
    running = request(engine, "LONG", 40)
    waiting = request(engine, "NEXT", 6)
    started(daq, engine, running)
    assert exposure(engine, waiting).state == ExposureState.QUEUED  # one exposure is armed ahead at most
    assert catalog.stop_exposure(engine, waiting, WHY)
    exp = closed(daq, engine, waiting)
    assert (exp.state, exp.start_at, exp.chips) == (ExposureState.FAILED, None, None)  # never armed
    out = catalog.exposure_outcome(engine, waiting)
    assert (out.state, out.files_written, out.files_lost) == (ExposureState.FAILED, 0, 0)
    assert (out.stopped, out.stop_reason, out.frames_kept) == (True, WHY, 0)
    assert out.why_no_file() == f"no file written: stopped before it started ({WHY})"
    [told] = events_of(engine, "exposure_stopped", waiting)
    assert told.message == f"exposure {waiting} stopped before it started: {WHY}; no file is written"
    assert catalog.stop_exposure(engine, running, WHY)  # the next tests do not wait 20 s for it
    closed(daq, engine, running)  # failed or done, as the stop came before its first frame or after
    assert files_of(engine, waiting) == {} and reports_of(engine, waiting) == []


@pytest.mark.live
def test_an_armed_exposure_stopped_before_its_first_frame_fails_with_no_file(daq: Fleet) -> None:
    engine = make_engine(daq.cfg.database_url)
    exp_id = request(engine, "EARLY", 6)
    start = started(daq, engine, exp_id)
    assert catalog.stop_exposure(engine, exp_id, WHY)
    stop_at = exposure(engine, exp_id).stop_at
    assert stop_at < start, f"the test stopped it {(stop_at - start).total_seconds():.1f} s after its start"
    exp = closed(daq, engine, exp_id)
    assert exp.state == ExposureState.FAILED
    out = catalog.exposure_outcome(engine, exp_id)
    assert (out.stopped, out.frames_kept, out.files_written, out.files_lost) == (True, 0, 0, 0)
    # A readout that took it in hand saw the stop before the first frame: nothing read, nothing missed
    # (a readout reports an exposure before it reads the next: the next one closed, its reports are in).
    after = request(engine, "AFTER", 2)
    assert closed(daq, engine, after).state == ExposureState.DONE
    assert all((r.frames_read, r.frames_missed, r.frames_dropped) == (0, 0, 0) for r in reports_of(engine, exp_id))
    assert files_of(engine, exp_id) == {} and partial_files(daq, exp_id) == []
    for kind in ("frames_lost", "file_lost", "exposure_timeout", "ring_slot_quarantined"):
        assert events_of(engine, kind, exp_id) == [], kind


@pytest.mark.live
def test_the_exposure_after_a_stopped_one_runs_in_full_with_nothing_left_in_the_rings(daq: Fleet) -> None:
    engine = make_engine(daq.cfg.database_url)
    first = request(engine, "CUT", 40)
    stop_mid_exposure(daq, engine, first, 2.0)
    after = request(engine, "FULL", 6)
    cut, full = closed(daq, engine, first), closed(daq, engine, after)
    assert (cut.state, full.state) == (ExposureState.DONE, ExposureState.DONE)
    assert full.start_at < cut.start_at + timedelta(seconds=20), "armed after the stop, not after the planned end"
    kept = catalog.frames_kept(40, 2.0, cut.start_at, cut.stop_at)
    files = files_of(engine, after)
    assert sorted(files) == CHIPS
    for f in files.values():
        audit_cube(f, after, full.start_at, 6, stopped=False)
    assert all(f["naxis3"] == kept for f in files_of(engine, first).values())
    assert catalog.exposure_outcome(engine, after).stopped is False
    assert sorted((r.det_id, r.frames_read, r.frames_missed) for r in reports_of(engine, after)) == [
        (c, 6, 0) for c in CHIPS
    ]
    cfg = daq.cfg
    for w in range(cfg.daq.writers):
        for r in rings_of_writer(cfg, "daq1", w):
            ring = Ring(ring_path(cfg, "daq1", r, w), ring_slots(cfg, "daq1", r, w), frame_bytes(cfg))
            try:
                assert ring.fill() == 0, f"ring r{r}w{w} holds {ring.fill()} slots"
            finally:
                ring.close()
    assert daq_stats(engine, exp_ids=[first, after]).frames_missing == 0


# -- in this process ------------------------------------------------------------------------------
def test_frames_kept_are_the_frames_begun_before_the_stop() -> None:
    start = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    at = lambda s: start + timedelta(seconds=s)  # noqa: E731
    assert catalog.frames_kept(40, 2.0, start, None) == 40
    assert catalog.frames_kept(40, 2.0, None, at(0)) == 0  # still queued
    assert catalog.frames_kept(40, 2.0, start, at(-1)) == 0
    assert catalog.frames_kept(40, 2.0, start, at(0)) == 0  # frame 0 starts at the stop: not read
    assert catalog.frames_kept(40, 2.0, start, at(0.000001)) == 1
    assert catalog.frames_kept(40, 2.0, start, at(3.0)) == 6
    assert catalog.frames_kept(40, 2.0, start, at(3.2)) == 7  # frame 6 began at 3.0 s: kept
    assert catalog.frames_kept(40, 2.0, start, at(19.9)) == 40  # the last frame had begun
    assert catalog.frames_kept(40, 2.0, start, at(25)) == 40


def test_a_stop_after_the_last_frame_began_changes_nothing(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path)
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("LATE", 10, 2.0), 1)
    start = utcnow() - timedelta(seconds=4.9)  # its last frame began 0.4 s ago
    end = start + timedelta(seconds=5)
    assert catalog.arm(engine, exp_id, start, end, CHIPS, simulated_snapshot(cfg, start, 10.0, 20.0))
    assert catalog.stop_exposure(engine, exp_id, WHY)
    assert catalog.end_stopped(engine) == []
    row = exposure(engine, exp_id)
    assert (row.state, row.end_at) == (ExposureState.ARMED, end)
    out = catalog.exposure_outcome(engine, exp_id)
    assert (out.stopped, out.stop_reason, out.frames_kept) == (False, WHY, 10)


def test_a_cube_cut_after_frames_past_the_stop_keeps_the_frames_before_it(tmp_path: Path) -> None:
    """A readout that learnt of the stop late sent frames past it: the cube drops them, its header and
    FRAMES table say the frames kept, fitsverify passes and the checksum is the file's."""
    cfg = Config.model_validate({"camera": {"width_px": 64, "height_px": 40}})
    start = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    snap = simulated_snapshot(cfg, start, 10.68, 41.27)
    exp = ExposureInfo(7, "M31", "OBJECT", "test", "none", "p", "o", 8, 2.0, start, None, None, snap)
    template = HeaderTemplate(cfg, exp, "daq1")
    name = tomoe_filename(112, 7, start, cfg.site.lon_deg)
    cube = CubeFile(tmp_path / name, template.render(112, "vol1", name), 64 * 40, 8, fsync=False)
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 65536, 64 * 40, dtype=np.uint16) for _ in range(5)]
    scratch = np.empty(64 * 40, np.uint16)
    for i, frame in enumerate(frames):
        cube.write_frame(i, frame.copy(), scratch, counter=100 + i, gps_s=start.timestamp() + i / 2, flags=0)
    cube.cut(3, template.cut_short(cube.header, 3, "x" * 200))  # a reason longer than a card
    res = cube.close(scratch)
    report = fitsverify(str(res.path))
    assert "0 warning(s) and 0 error(s)" in report, report
    data = res.path.read_bytes()
    assert (len(data), xxhash.xxh3_64(data).hexdigest()) == (res.size_bytes, res.checksum_xxh3)
    assert (res.frames_written, res.frames_missing, res.stopped) == (3, 0, True)
    with fits.open(res.path) as hdul:
        h = hdul[0].header
        assert (h["NAXIS3"], h["STOPPED"], h["EXPTIME"], h["TELAPSE"]) == (3, True, 1.5, 1.5)
        assert h["STOPWHY"] == "x" * len(h["STOPWHY"]) and 40 < len(h["STOPWHY"]) <= 68
        assert h["GPS-DOWN"] == "2026-11-26T12:00:01.500000" and h["UTC-EXP"] == "12:00:00.750"
        for i in range(3):
            assert np.array_equal(hdul[0].data[i].ravel(), frames[i])
        assert list(hdul["FRAMES"].data["COUNTER"]) == [100, 101, 102]


def test_a_stop_seen_late_drops_the_frames_read_past_it(tmp_path: Path) -> None:
    """The look-out saw the stop only after frames past it were read and written (the database was
    slow): the readout's END cuts each cube back to the frames begun before the stop, on every chip."""
    cfg, engine = setup(tmp_path)  # 4 chips of 200 x 100 at 20 fps, one writer
    readout, writer = Readout(cfg, engine, 0, HOST), Writer(cfg, engine, 0, HOST)
    writer.attach(timeout_s=5)
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("LATE", 60, 20.0), 1)
    assert arm_next(cfg, engine, HOST) == exp_id
    [exp] = catalog.armed_after(engine, exp_id - 1)
    reading = threading.Thread(target=lambda: readout.report(exp, readout.read_exposure(exp)))
    reading.start()
    try:
        # The writer drains meanwhile, so the frames past the stop are in the files when it comes.
        def past_the_stop() -> bool:
            writer.poll()
            return len(writer.open) == len(CHIPS) and min(oc.cube.next_index for oc in writer.open.values()) >= 5

        wait_until(past_the_stop, 30, 0.005, "5 frames of every chip in its file")
        readout.stop_reading(exp_id, exp.start_at + timedelta(seconds=0.12), WHY)  # frames 0..2 began before it
    finally:
        reading.join(30)
    assert readout.kept[exp_id] == 3, "the stop came after the readout had read the whole exposure"
    while writer.poll():
        pass
    writer.flusher.wait()
    writer.poll()
    rows = files_of(engine, exp_id)
    assert sorted(rows) == CHIPS
    for f in rows.values():
        assert (f["naxis3"], f["frames_expected"], f["frames_written"], f["frames_missing"]) == (3, 3, 3, 0)
        assert "0 warning(s) and 0 error(s)" in fitsverify(f["path"])
        data = Path(f["path"]).read_bytes()
        assert len(data) == f["size_bytes"] and xxhash.xxh3_64(data).hexdigest() == f["checksum_xxh3"]
        with fits.open(f["path"]) as hdul:
            assert hdul[0].data.shape == (3, 100, 200) and hdul[0].header["STOPWHY"] == WHY
            assert list(hdul["FRAMES"].data["FRAME"]) == [0, 1, 2]
    assert [(r.frames_read, r.frames_missed) for r in reports_of(engine, exp_id)] == [(3, 0)] * len(CHIPS)
    assert writer.quarantined == 0 and recent_events(engine, 10, kind="file_lost") == []
