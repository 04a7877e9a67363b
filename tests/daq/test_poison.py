"""Poison items in the DAQ: a value astropy refuses, a slot nobody can handle, a slot writers die on.

Readout and writer run in this process (real rings, camera simulator, files and SQLite), or as
the real `gozen run daq:*` programs where a process must die or stop. Every test ends by
auditing the files and rows: the poison item is accounted for and the next items flow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import xxhash
from astropy.io import fits
from sqlalchemy import Engine, func, select, update

from gozen.config import Config, parse_config
from gozen.daq import catalog
from gozen.daq.control import arm_next
from gozen.daq.layout import frame_bytes, ring_path, ring_slots
from gozen.daq.readout import Readout
from gozen.daq.ring import BEGIN, FRAME, Ring
from gozen.daq.writer import Writer
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.tables import daq_files, exposures
from gozen.fitstext import to_fits_text
from tests.conftest import gozen_cmd, wait_until, write_config

W, H, FRAMES = 200, 100, 10
CHIPS = [111, 112, 113, 114]
HOST = "daq1"
COMET = "彗星 ☄"


def config_data(tmp_path: Path) -> dict[str, Any]:
    return {
        "data_dir": str(tmp_path / "var"),
        "camera": {"width_px": W, "height_px": H, "fps": 20, "chips": CHIPS},
        "daq_volumes": [{"name": "vol1", "path": str(tmp_path / "vol1")}],
        "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 0.1, "frame_timeout_s": 1},
    }


def setup(tmp_path: Path) -> tuple[Config, Engine]:
    cfg = parse_config(config_data(tmp_path))
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    return cfg, engine


def queue_exposure(cfg: Config, engine: Engine, **row: Any) -> int:
    """An exposure queued and armed; `row` overrides its columns as another program might have written them."""
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("F1", FRAMES, 20.0), 1)
    if row:
        with engine.begin() as conn:
            conn.execute(update(exposures).where(exposures.c.exp_id == exp_id).values(**row))
    assert wait_until(lambda: arm_next(cfg, engine, HOST) == exp_id, 30, what=f"exposure {exp_id} armed")
    return exp_id


def read(readout: Readout, engine: Engine, exp_id: int) -> None:
    [exp] = [e for e in catalog.armed_after(engine, exp_id - 1) if e.exp_id == exp_id]
    readout.report(exp, readout.read_exposure(exp))


def drain(writer: Writer) -> None:
    while writer.poll():
        pass
    writer.flusher.wait()
    writer.poll()


def files(engine: Engine, exp_id: int) -> dict[int, Any]:
    with engine.connect() as conn:
        return {r.det_id: r for r in conn.execute(select(daq_files).where(daq_files.c.exp_id == exp_id))}


def audit_written(engine: Engine, exp_id: int, chips: list[int]) -> list[fits.Header]:
    """Each chip's file is whole: written, every frame, its checksum and size as recorded."""
    rows = files(engine, exp_id)
    headers = []
    for det in chips:
        r = rows[det]
        assert (r.state, r.frames_written, r.frames_missing) == ("written", FRAMES, 0), (exp_id, det)
        data = Path(r.path).read_bytes()
        assert len(data) == r.size_bytes and xxhash.xxh3_64(data).hexdigest() == r.checksum_xxh3
        with fits.open(r.path) as hdul:
            assert hdul[0].data.shape == (FRAMES, H, W)
            headers.append(hdul[0].header.copy())
    return headers


def test_writer_survives_a_non_ascii_object_and_the_next_exposure_flows(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path)
    readout, writer = Readout(cfg, engine, 0, HOST), Writer(cfg, engine, 0, HOST)
    writer.attach(timeout_s=5)
    poison = queue_exposure(cfg, engine, object=COMET, observer="Ōno")
    read(readout, engine, poison)
    drain(writer)
    good = queue_exposure(cfg, engine)
    read(readout, engine, good)
    drain(writer)

    for h in audit_written(engine, poison, CHIPS):
        assert (h["OBJECT"], h["OBSERVER"]) == (to_fits_text(COMET), "Ono")
    assert all(h["OBJECT"] == "F1" for h in audit_written(engine, good, CHIPS))
    [event] = recent_events(engine, 10, kind="header_values_replaced")
    assert f"exp {poison}" == event.subject and "object: must be printable ASCII" in event.message
    assert writer.quarantined == 0


def test_a_value_too_long_for_one_card_keeps_every_chip_card_in_place(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path)
    readout, writer = Readout(cfg, engine, 0, HOST), Writer(cfg, engine, 0, HOST)
    writer.attach(timeout_s=5)
    long_name = "Queue-Observer " + "LONG " * 20
    exp_id = queue_exposure(cfg, engine, recipe_name=long_name)
    read(readout, engine, exp_id)
    drain(writer)
    for det, h in zip(CHIPS, audit_written(engine, exp_id, CHIPS), strict=True):
        keys = list(h.keys())
        assert all(keys.count(k) == 1 for k in ("GPS-DOWN", "DET-ID", "DAQ-VOL", "FILENAME")), keys
        assert h["DET-ID"] == det and h["FILENAME"] == Path(files(engine, exp_id)[det].path).name
        assert h["RECIPE"] == long_name[:68] and "CONTINUE" not in h
    assert recent_events(engine, 10, kind="header_values_replaced")


def test_a_slot_of_an_unknown_exposure_is_quarantined_and_the_next_items_flow(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path)
    readout, writer = Readout(cfg, engine, 0, HOST), Writer(cfg, engine, 0, HOST)
    writer.attach(timeout_s=5)
    ring = readout.rings[0]
    for index in range(2):  # frames of an exposure the database has never heard of
        seq = ring.reserve()
        assert seq is not None
        ring.publish(seq, kind=FRAME, exp_id=999_999, det_id=111, index=index, n_frames=FRAMES)
    good = queue_exposure(cfg, engine)
    read(readout, engine, good)
    drain(writer)

    audit_written(engine, good, CHIPS)
    assert writer.quarantined == 1  # the second frame of the same file is skipped with it
    [event] = recent_events(engine, 10, kind="ring_slot_quarantined")
    assert event.subject == "exp 999999 det 111" and "NoResultFound" in event.message
    assert ring.peek() is None  # nothing left behind in the ring


WRITER_THAT_DIES = """
import json, os, signal, sys
from gozen.config import parse_config
from gozen.db.engine import make_engine
from gozen.daq.writer import Writer
cfg = parse_config(json.loads(sys.argv[1]))
writer = Writer(cfg, make_engine(cfg.database_url), 0, "daq1")
writer.attach(timeout_s=30)
handle = writer.handle
def die_on(meta, ring):  # dies on the first slot of this kind it takes
    if meta.kind == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    handle(meta, ring)
writer.handle = die_on
writer.poll()
"""


def two_writers_die_on(tmp_path: Path, kind: int) -> tuple[Engine, int, int]:
    """An exposure in the ring whose first slot of `kind` kills two writers in turn; a third drains the
    ring and writes the next exposure. Returns the two exposures' ids."""
    cfg, engine = setup(tmp_path)
    readout = Readout(cfg, engine, 0, HOST)
    poison = queue_exposure(cfg, engine)
    read(readout, engine, poison)
    for _ in range(2):  # what supervisord's restarts did 200 times in the issue
        script = [sys.executable, "-c", WRITER_THAT_DIES, json.dumps(config_data(tmp_path)), str(kind)]
        assert subprocess.run(script, timeout=120).returncode == -signal.SIGKILL
    writer = Writer(cfg, engine, 0, HOST)
    writer.attach(timeout_s=5)
    drain(writer)
    good = queue_exposure(cfg, engine)
    read(readout, engine, good)
    drain(writer)
    return engine, poison, good


def test_a_frame_that_two_writers_died_on_is_skipped_by_the_next_one(tmp_path: Path) -> None:
    engine, poison, good = two_writers_die_on(tmp_path, FRAME)
    [event] = recent_events(engine, 10, kind="ring_slot_quarantined")
    assert event.subject == f"exp {poison} det 111" and "2 writer processes stopped" in event.message
    lost = files(engine, poison)[111]
    assert (lost.state, lost.frames_missing, lost.path) == ("lost", FRAMES, None)
    audit_written(engine, poison, [112, 113, 114])
    audit_written(engine, good, CHIPS)


def test_an_announcement_that_two_writers_died_on_is_skipped_and_its_exposure_asked_of_the_database(
    tmp_path: Path,
) -> None:
    engine, poison, good = two_writers_die_on(tmp_path, BEGIN)
    [event] = recent_events(engine, 10, kind="ring_slot_quarantined")
    assert event.subject == f"exp {poison}" and "announcement" in event.message and event.severity == "warning"
    audit_written(engine, poison, CHIPS)  # nothing lost with it
    audit_written(engine, good, CHIPS)


def test_daq_expose_refuses_a_non_ascii_object_with_exit_2(tmp_path: Path) -> None:
    config_file = tmp_path / "gozen.yaml"
    cfg = write_config(config_file, config_data(tmp_path))
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    p = subprocess.run(
        gozen_cmd(config_file, "daq", "expose", "--object", COMET, "--no-wait"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stdout + p.stderr
    assert "object: must be printable ASCII for the FITS header; character 1 is U+5F57" in p.stderr
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(exposures)).scalar_one() == 0


def _holds(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_rings_are_removed_on_a_clean_stop_but_not_while_the_other_side_uses_them(tmp_path: Path) -> None:
    config_file = tmp_path / "gozen.yaml"
    cfg = write_config(config_file, config_data(tmp_path))
    upgrade(make_engine(cfg.database_url))
    env = {**os.environ, "GOZEN_HOST": HOST}
    path = ring_path(cfg, HOST, 0, 0)

    def start(program: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{program.replace(':', '-')}.log", "ab")  # noqa: SIM115 - kept open for the child
        return subprocess.Popen(gozen_cmd(config_file, "run", program), env=env, stdout=log, stderr=log)

    def stop(proc: subprocess.Popen[bytes], sig: int) -> int:
        proc.send_signal(sig)
        return proc.wait(timeout=60)

    readout = start("daq:readout-01")
    wait_until(lambda: _holds(readout.pid, path), 60, what="the readout's ring")
    writer = start("daq:writer-01")
    wait_until(lambda: _holds(writer.pid, path), 60, what="the writer attached")
    assert stop(writer, signal.SIGTERM) == 0
    assert path.exists()  # the readout still writes into it
    assert stop(readout, signal.SIGTERM) == 0
    assert not path.exists(), (tmp_path / "daq-readout-01.log").read_text()

    readout = start("daq:readout-01")  # a crash leaves the ring for the next start, which reuses it
    wait_until(lambda: _holds(readout.pid, path), 60, what="the readout's ring again")
    inode = path.stat().st_ino
    assert stop(readout, signal.SIGKILL) == -signal.SIGKILL and path.exists()
    readout = start("daq:readout-01")
    wait_until(lambda: _holds(readout.pid, path), 60, what="the ring reused")
    assert path.stat().st_ino == inode
    ring = Ring(path, ring_slots(cfg, HOST, 0, 0), frame_bytes(cfg))  # another user: the stopping readout leaves it
    assert stop(readout, signal.SIGTERM) == 0 and path.exists()
    assert ring.close(remove_if_unused=True) and not path.exists()
