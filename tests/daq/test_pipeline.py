"""The DAQ as `gozen up` runs it: supervisord programs, rings, FITS files, database, injected faults."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash
from astropy.io import fits
from sqlalchemy import Engine, select

from gozen.daq import catalog
from gozen.daq.ring import FLAG_DAMAGED, FLAG_MISSING
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.tables import daq_files, exposures, readout_reports
from gozen.devices.camera import ExposureSpec
from gozen.devices.simulators.camera import SimulatedCamera
from gozen.monitors import board
from tests.conftest import START_S, WAIT_S, Fleet, free_port, gozen_cmd, start_fleet, wait_until

CHIPS = [111, 112, 113, 114]
FAULTS = {"missed": [{"det_id": 112, "frame": 3}], "corrupted": [{"det_id": 113, "frame": 4}], "unrecognised": [114]}


@pytest.fixture(scope="module")
def daq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("daq")
    host = {"name": "daq1", "address": "127.0.0.1", "roles": ["daq"], "supervisor": {"port": free_port()}}
    # The frame timeout is how long a writer waits past an exposure's end for its frames, and the lead
    # time how soon the readout must see an exposure: 3 s and 0.5 s failed with both cores busy.
    daq = {"writers": 2, "frame_timeout_s": 20, "start_delay_s": 5.0}
    extra = {"camera": {"chips": CHIPS, "faults": FAULTS}, "daq": daq}
    fleet = start_fleet(tmp, [host], down=[], extra=extra)
    for p in ("daq:control", "daq:readout-01", "daq:writer-01", "daq:writer-02"):
        fleet.wait_state("daq1", p, "RUNNING")
    yield fleet
    fleet.stop()


def files_of(engine: Engine, exp_id: int) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(daq_files).where(daq_files.c.exp_id == exp_id)).all()
    return {r.det_id: dict(r._mapping) for r in rows}


def fitsverify(path: str) -> str:
    return subprocess.run(["fitsverify", path], capture_output=True, text=True).stdout


def test_exposures_become_verified_fits_files_with_every_fault_counted(daq: Fleet) -> None:
    r = subprocess.run(
        gozen_cmd(
            daq.config_file,
            "daq",
            "expose",
            "--object",
            "M31",
            "--frames",
            "6",
            "--count",
            "2",
            "--ra",
            "10.68",
            "--dec",
            "41.27",
        ),
        capture_output=True,
        text=True,
        timeout=2 * START_S,  # each exposure waits frame_timeout_s * 2 + 5 for chip 114, which never answers
        env={**os.environ, "COLUMNS": "200"},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    engine = make_engine(daq.cfg.database_url)
    with engine.connect() as conn:
        exps = conn.execute(select(exposures).order_by(exposures.c.exp_id)).all()
    assert [e.state for e in exps] == ["incomplete", "incomplete"]  # chip 114 never answered
    for exp in exps:
        files = files_of(engine, exp.exp_id)
        assert sorted(files) == [111, 112, 113]
        assert (files[112]["frames_missing"], files[113]["frames_damaged"]) == (1, 1)
        assert files[111]["frames_written"] == 6 and files[111]["frames_missing"] == 0
        for det, f in files.items():
            report = fitsverify(f["path"])
            assert "0 warning(s) and 0 error(s)" in report, report
            data = Path(f["path"]).read_bytes()
            assert len(data) == f["size_bytes"] and xxhash.xxh3_64(data).hexdigest() == f["checksum_xxh3"]
            with fits.open(f["path"]) as hdul:
                h = hdul[0].header
                assert (h["EXP_ID"], h["DET-ID"], h["NAXIS3"], h["OBJECT"]) == (exp.exp_id, det, 6, "M31")
                assert f["filename"] == f"TMQ1{f['filename'][4:12]}{exp.exp_id:08d}{det % 100:02d}.fits"
                flags = list(hdul["FRAMES"].data["FLAGS"])
                assert flags[3] == (FLAG_MISSING if det == 112 else 0)
                assert flags[4] == (FLAG_DAMAGED if det == 113 else 0)
    with engine.connect() as conn:
        lost_chip = conn.execute(select(readout_reports).where(readout_reports.c.det_id == 114)).all()
    assert [(x.recognised, x.frames_missed) for x in lost_chip] == [(False, 6), (False, 6)]
    assert any(e.subject == "det 114" for e in recent_events(engine, 100, kind="chip_unrecognised"))
    assert "frames missing" in r.stdout and "frames damaged" in r.stdout


def test_pixels_read_back_bit_exact_as_the_camera_made_them(daq: Fleet) -> None:
    """Replay the simulated camera exactly as the readout ran it, and compare every pixel of exposure 1."""
    engine = make_engine(daq.cfg.database_url)
    armed = catalog.armed_after(engine, 0)[:2]
    cam = SimulatedCamera(daq.cfg.camera, seed=0, gps_jitter_s=daq.cfg.daq.gps_jitter_s)
    chips = cam.open(CHIPS)
    frames: dict[int, list[np.ndarray]] = {c: [] for c in chips}
    for exp in armed:
        cam.start_exposure(ExposureSpec(exp.exp_id, exp.n_frames, exp.fps, 0, exp.ra_deg, exp.dec_deg))
        for i in range(exp.n_frames):
            for c in chips:
                buf = np.zeros(daq.cfg.camera.width_px * daq.cfg.camera.height_px, np.uint16)
                cam.read_frame(c, i, buf)
                if exp is armed[0]:
                    frames[c].append(buf)
    for det, f in files_of(engine, armed[0].exp_id).items():
        with fits.open(f["path"]) as hdul:
            cube = hdul[0].data
            for i, expected in enumerate(frames[det]):
                if det == 112 and i == 3:
                    continue  # never delivered
                assert np.array_equal(cube[i].ravel(), expected), f"det {det} frame {i}"


def test_the_readout_puts_its_frame_rate_and_ring_fill_on_the_board(daq: Fleet) -> None:
    engine = make_engine(daq.cfg.database_url)
    keys = {"daq.daq1.readout-01.frames_per_s", "daq.daq1.ring.r01w01.fill_pct", "daq.daq1.ring.r01w02.fill_pct"}
    wait_until(lambda: keys <= set(board.snapshot(engine, "daq.daq1.").values), WAIT_S, what="the DAQ's board keys")
    values = board.snapshot(engine, "daq.daq1.").values
    rings = [values[k] for k in keys if k.endswith(".fill_pct")]
    assert all(r.unit == "%" and 0 <= float(r.value) <= 100 and not r.stale for r in rings), rings  # type: ignore[arg-type]
    rate = values["daq.daq1.readout-01.frames_per_s"]
    assert rate.unit == "1/s" and float(rate.value) >= 0  # type: ignore[arg-type]


def test_stats_command_reports_rates_and_errors(daq: Fleet) -> None:
    r = subprocess.run(
        gozen_cmd(daq.config_file, "daq", "stats"),
        capture_output=True,
        text=True,
        timeout=START_S,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert r.returncode == 0, r.stderr
    lines = {
        line.rsplit(None, 1)[0].strip(): line.rsplit(None, 1)[1] for line in r.stdout.splitlines()[1:] if line.strip()
    }
    assert lines.get("exposures") == "2" and lines.get("files") == "6", r.stdout
    assert lines["frames missing"] == "2" and lines["frames damaged"] == "2" and lines["chips not recognised"] == "2"


def test_kill_9_of_a_writer_leaves_no_half_file_and_says_which_frames_were_lost(daq: Fleet) -> None:
    engine = make_engine(daq.cfg.database_url)
    # 20 s of frames: time for the writer to be seen mid-file, and killed there, on a busy machine.
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("KILL", 40, 2.0), 1)
    wait_until(lambda: _partial_files(daq, exp_id) >= {111, 113}, WAIT_S, 0.05, "writer-01's files begun", daq.dump)
    victim = next(p for p in daq.client("daq1").status().processes if p.full_name == "daq:writer-01")
    os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
    wait_until(
        lambda: {e.exp_id: e for e in _exposures(engine)}[exp_id].state != "armed",
        2 * WAIT_S,
        what="the exposure to finish",
        dump=daq.dump,
    )
    files = files_of(engine, exp_id)
    # writer-01 writes chips 111 and 113 (every other chip); it died holding their partial files.
    for det in (111, 113):
        f = files[det]
        assert f["frames_missing"] >= 1, f
        if f["state"] == "written":
            with fits.open(f["path"]) as hdul:
                flags = hdul["FRAMES"].data["FLAGS"]
                assert flags[0] & FLAG_MISSING and int((flags & FLAG_MISSING).astype(bool).sum()) == f["frames_missing"]
    assert files[112]["frames_missing"] == 1  # writer-02 carried on untouched (its injected miss only)
    for f in files.values():
        if f["path"]:
            assert Path(f["path"]).stat().st_size == f["size_bytes"]  # a final name is always a whole file
    # On the DAQ volumes (a copy agent's own .part on a storage node is a copy under way, not the writer's).
    parts = [p for _v, root in daq.cfg.daq_volume_dirs("daq1") for p in root.rglob("*.part")]
    assert parts == []
    removed = [e for e in recent_events(engine, 100, kind="partial_file_removed") if e.data["exp_id"] == exp_id]
    assert {e.data["det_id"] for e in removed} == {111, 113}
    daq.wait_state("daq1", "daq:writer-01", "RUNNING")


def _partial_files(fleet: Fleet, exp_id: int) -> set[int]:
    """Chips whose file of this exposure a writer has open: `.TMQ1<night><exp_id:08d><det % 100:02d>.fits.part`."""
    names = [p.name.removesuffix(".fits.part") for p in Path(fleet.cfg.data_dir).rglob(".TMQ*.fits.part")]
    return {100 + int(n[-2:]) for n in names if n[-10:-2] == f"{exp_id:08d}"}


def _exposures(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(exposures)).all())


def test_readout_and_writers_run_on_disjoint_cpus(daq: Fleet) -> None:
    import psutil

    procs = {p.full_name: p.pid for p in daq.client("daq1").status().processes}
    readout = set(psutil.Process(procs["daq:readout-01"]).cpu_affinity())
    writers = set(psutil.Process(procs["daq:writer-01"]).cpu_affinity()) | set(
        psutil.Process(procs["daq:writer-02"]).cpu_affinity()
    )
    if len(os.sched_getaffinity(0)) > 1:
        assert readout and writers and not readout & writers
    else:  # one CPU: nothing to separate, both share it
        assert readout == writers == set(os.sched_getaffinity(0))
