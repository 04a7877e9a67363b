"""daq:quicklook: each written chip's first frame as a binned zscale PNG with its sky, noise, stars and FWHM,
from files the real readout and writer made; newest exposure first, older ones skipped when too far behind;
a damaged file told once and left; the focal-plane mosaic with every chip's place."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine, select, update

from gozen.config import Config, parse_config
from gozen.daq import catalog, quicklook
from gozen.daq.cpus import cpu_sets
from gozen.daq.focalplane import FOCAL_PLANE
from gozen.daq.quicklook import (
    MOSAIC_SCALE,
    QuickLook,
    chip_looks,
    draw_mosaic,
    first_frame,
    grey_png,
    latest_chip_looks,
    latest_look,
    look_at,
    mosaic_png,
    record_look,
)
from gozen.daq.readout import Readout
from gozen.daq.writer import Writer
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.tables import daq_files
from gozen.db.tables import quicklook as quicklook_table
from gozen.db.types import utcnow
from gozen.devices.simulators.camera import BIAS_ADU, CHIP_BIAS_SPREAD_ADU, PSF_SIGMA_PX, READ_NOISE_ADU, SKY_ADU
from gozen.monitors.board import snapshot
from gozen.service import Context
from tests.conftest import WAIT_S
from tests.daq.exposing import expose

CHIPS, FRAMES, FPS = [111, 112, 121], 2, 10.0
RA, DEC = 10.68, 41.27
GAUSS_FWHM_PER_SIGMA = 2.3548


def star_field(n: int, fwhm_px: float, seed: int = 1, shape: tuple[int, int] = (1128, 2000)) -> np.ndarray:
    """A sky of 1000 ADU with noise 15 and n well-separated Gaussian stars of the given FWHM (a grid)."""
    rng = np.random.default_rng(seed)
    frame = rng.normal(1000.0, 15.0, shape).astype(np.float32)
    sigma = fwhm_px / GAUSS_FWHM_PER_SIGMA
    cols = int(np.ceil(np.sqrt(n * shape[1] / shape[0])))
    ys, xs = np.mgrid[-12:13, -12:13]
    for i in range(n):
        cy = (i // cols + 0.5) * shape[0] / int(np.ceil(n / cols)) + rng.uniform(-3, 3)
        cx = (i % cols + 0.5) * shape[1] / cols + rng.uniform(-3, 3)
        iy, ix = int(cy), int(cx)
        psf = np.exp(-0.5 * (((xs + ix - cx) / sigma) ** 2 + ((ys + iy - cy) / sigma) ** 2))
        frame[iy - 12 : iy + 13, ix - 12 : ix + 13] += psf * (30000 / psf.sum())
    return frame


@pytest.mark.parametrize("fwhm_px", [2.5, 4.0, 6.0])
def test_quick_look_counts_known_stars_and_measures_their_fwhm(fwhm_px: float) -> None:
    look = look_at(star_field(80, fwhm_px), binning=8)
    assert look.n_stars == 80
    assert look.fwhm_px == pytest.approx(fwhm_px, rel=0.08)
    assert look.sky_adu == pytest.approx(1000.0, abs=1.0) and look.noise_adu == pytest.approx(15.0, rel=0.05)
    assert (look.width, look.height, look.binning) == (250, 141, 8)


def test_without_stars_the_look_leaves_them_unknown() -> None:
    look = look_at(star_field(10, 3.0), binning=4, stars=False)
    assert (look.n_stars, look.fwhm_px, look.width, look.height) == (None, None, 500, 282)


def test_png_is_the_binned_frame_in_8_bit_grey_north_up() -> None:
    frame = np.zeros((1128, 2000), np.float32)
    frame[-100:, :] = 1000.0  # the top rows of the sky: the last rows of a FITS image
    look = look_at(frame + np.random.default_rng(0).normal(0, 1, frame.shape).astype(np.float32), 8, stars=False)
    picture = Image.open(io.BytesIO(look.png))
    assert (picture.format, picture.mode, picture.size) == ("PNG", "L", (250, 141))
    pixels = np.asarray(picture)
    assert pixels[:10].mean() == 255 and pixels[-10:].mean() < 255  # bright rows on top
    assert np.asarray(Image.open(io.BytesIO(grey_png(np.full((3, 5), 7.0), 7.0, 7.0)))).shape == (3, 5)


# --- the program, on files the real readout and writer made ---------------------------------------


@dataclass
class Camera:
    cfg: Config
    engine: Engine
    readout: Readout
    writer: Writer

    def expose(self, n: int = 1) -> list[dict[int, dict[str, Any]]]:
        made = []
        for _ in range(n):
            request = catalog.ExposureRequest("M31", FRAMES, FPS, ra_deg=RA, dec_deg=DEC)
            _counts, files = expose(self.cfg, self.engine, self.readout, self.writer, request)
            assert sorted(files) == CHIPS and all(f["state"] == "written" for f in files.values()), files
            made.append(files)
        return made

    def service(self, monkeypatch: pytest.MonkeyPatch) -> QuickLook:
        niced: list[int] = []
        pinned: list[set[int]] = []
        monkeypatch.setattr(os, "nice", niced.append)  # the test process keeps its priority and CPUs
        monkeypatch.setattr(os, "sched_setaffinity", lambda _pid, cpus: pinned.append(set(cpus)))
        svc = QuickLook(Context(self.cfg, "daq1", self.engine, "daq:quicklook"))
        svc.setup()
        assert niced == [quicklook.NICENESS]
        readout = set(cpu_sets(self.cfg)[0])
        assert all(not (cpus & readout) for cpus in pinned)  # never on the readout's CPUs
        return svc


def camera_config(tmp: Path, readout: str = "full", missed: list[int] | None = None, **quick: Any) -> Config:
    """`missed`: frame indices chip 111 never delivers."""
    quick.setdefault("every_s", 0)  # every exposure looked at, unless the test paces them
    faults = {"missed": [{"det_id": 111, "frame": i} for i in missed or []]}
    return parse_config(
        {
            "data_dir": str(tmp / "var"),
            "camera": {"readout": readout, "fps": FPS, "chips": CHIPS, "faults": faults},
            "daq_volumes": [{"name": "vol1", "path": str(tmp / "vol1")}],
            "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 0.2, "frame_timeout_s": 2, "fsync": "none"}
            | {"quicklook": quick},
        }
    )


@pytest.fixture
def camera(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Camera]:
    """The readout and the writer of DAQ host daq1, as `gozen up` runs them (real rings and files); the
    test's param: daq.quicklook settings, and "db": "postgresql" for the local PostgreSQL (else SQLite)."""
    settings = dict(getattr(request, "param", {}))
    on_pg = settings.pop("db", "sqlite") == "postgresql"
    cfg = camera_config(tmp_path, **settings)
    engine = request.getfixturevalue("pg_engine") if on_pg else make_engine(cfg.database_url)
    upgrade(engine)
    readout, writer = Readout(cfg, engine, 0, "daq1"), Writer(cfg, engine, 0, "daq1")
    writer.attach(timeout_s=WAIT_S)
    yield Camera(cfg, engine, readout, writer)
    engine.dispose()


def run_until_idle(svc: QuickLook) -> int:
    passes = 1
    while svc.run_once():
        passes += 1
        assert passes < 100, "the quick look never ran out of work"
    return passes


BOTH_DATABASES = pytest.mark.parametrize("camera", [{}, {"db": "postgresql"}], indirect=True, ids=["sqlite", "pg"])


@BOTH_DATABASES
def test_each_written_chip_gets_a_look_with_the_simulated_skys_numbers(
    camera: Camera, monkeypatch: pytest.MonkeyPatch
) -> None:
    [files] = camera.expose()
    svc = camera.service(monkeypatch)
    assert run_until_idle(svc) == len(CHIPS) and svc.made == len(CHIPS)
    exp_id = files[111]["exp_id"]
    looks = chip_looks(camera.engine, exp_id)
    assert sorted(looks) == CHIPS and latest_look(camera.engine) == exp_id
    for det, look in looks.items():
        assert look.exp_id == exp_id and look.det_id == det
        assert look.sky_adu == pytest.approx(SKY_ADU, abs=6)  # the light area less the overscan's bias
        assert look.noise_adu == pytest.approx(np.sqrt(SKY_ADU + READ_NOISE_ADU**2), rel=0.1)
        assert look.n_stars is not None and look.n_stars > 0
        assert look.fwhm_px == pytest.approx(GAUSS_FWHM_PER_SIGMA * PSF_SIGMA_PX, rel=0.2)
    with camera.engine.connect() as conn:
        row = conn.execute(select(quicklook_table).where(quicklook_table.c.det_id == 111)).one()
    assert (row.daq_host, row.binning, row.width, row.height) == ("daq1", 8, 250, 141) and row.z1 < row.z2
    assert Image.open(io.BytesIO(row.png)).size == (250, 141)
    assert svc.run_once() is False and svc.made == len(CHIPS)  # nothing looked at twice
    assert {d: lk.exp_id for d, lk in latest_chip_looks(camera.engine).items()} == dict.fromkeys(CHIPS, exp_id)
    mosaic = mosaic_png(camera.cfg, camera.engine, exp_id)
    assert mosaic is not None and Image.open(io.BytesIO(mosaic)).format == "PNG"


def test_first_frame_is_the_light_area_and_the_overscan_bias(camera: Camera) -> None:
    [files] = camera.expose()
    light, bias = first_frame(Path(files[112]["path"]))
    assert light.shape == (1128, 2000) and light.dtype == np.float32
    assert bias == pytest.approx(files[112]["overscan_median"], abs=4)


@pytest.mark.parametrize("camera", [{"readout": "light"}], indirect=True)
def test_a_light_readout_has_no_bias_to_take_from_the_sky(camera: Camera) -> None:
    [files] = camera.expose()
    light, bias = first_frame(Path(files[121]["path"]))
    assert light.shape == (1128, 2000) and bias is None
    look = look_at(light, 8, bias_adu=bias)
    assert look.sky_adu == pytest.approx(BIAS_ADU + SKY_ADU, abs=CHIP_BIAS_SPREAD_ADU + 10)


@pytest.mark.parametrize(
    "camera", [{"max_behind": 1}, {"max_behind": 1, "db": "postgresql"}], indirect=True, ids=["sqlite", "pg"]
)
def test_older_exposures_are_skipped_when_too_far_behind(camera: Camera, monkeypatch: pytest.MonkeyPatch) -> None:
    made = camera.expose(3)
    svc = camera.service(monkeypatch)
    run_until_idle(svc)
    newest = made[-1][111]["exp_id"]
    with camera.engine.connect() as conn:
        looked = set(conn.execute(select(quicklook_table.c.exp_id)).scalars())
    assert looked == {newest} and svc.skipped == 2 and svc.made == len(CHIPS)
    board = snapshot(camera.engine, "quicklook.daq1.")
    assert board.values["quicklook.daq1.skipped_exposures"].value == 2
    [later] = camera.expose()
    run_until_idle(svc)
    assert set(chip_looks(camera.engine, later[111]["exp_id"])) == set(CHIPS)
    assert chip_looks(camera.engine, made[0][111]["exp_id"]) == {} and svc.skipped == 2  # never taken up again


@pytest.mark.parametrize("camera", [{"every_s": 3600}], indirect=True)
def test_paced_one_exposure_is_looked_at_per_every_s_the_newest(
    camera: Camera, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = camera.expose(2)
    svc = camera.service(monkeypatch)
    run_until_idle(svc)
    newest = made[-1][111]["exp_id"]
    assert set(chip_looks(camera.engine, newest)) == set(CHIPS)  # every chip of the one picked
    assert chip_looks(camera.engine, made[0][111]["exp_id"]) == {} and svc.skipped == 1
    [later] = camera.expose()
    run_until_idle(svc)
    assert chip_looks(camera.engine, later[111]["exp_id"]) == {}  # within the hour: passed over for now
    svc.picked_at -= 3600  # the hour has gone by
    run_until_idle(svc)
    assert set(chip_looks(camera.engine, later[111]["exp_id"])) == set(CHIPS)


@pytest.mark.parametrize("camera", [{"missed": [0]}], indirect=True)
def test_a_chip_whose_first_frame_never_came_is_looked_at_on_the_first_that_did(
    camera: Camera, monkeypatch: pytest.MonkeyPatch
) -> None:
    [files] = camera.expose()
    assert files[111]["frames_missing"] == 1
    run_until_idle(camera.service(monkeypatch))
    looks = chip_looks(camera.engine, files[111]["exp_id"])
    for det in CHIPS:  # not the blank frame the writer filled in: the sky the camera saw
        assert looks[det].sky_adu == pytest.approx(SKY_ADU, abs=6), det
    assert looks[111].n_stars and looks[111].n_stars > 5


@pytest.mark.parametrize("camera", [{"missed": list(range(FRAMES))}], indirect=True)
def test_a_chip_with_no_frame_from_the_camera_gets_no_look_and_is_told(
    camera: Camera, monkeypatch: pytest.MonkeyPatch
) -> None:
    [files] = camera.expose()
    run_until_idle(camera.service(monkeypatch))
    assert sorted(chip_looks(camera.engine, files[111]["exp_id"])) == [c for c in CHIPS if c != 111]
    [told] = recent_events(camera.engine, kind=quicklook.UNREADABLE)
    assert "no frame of it came from the camera" in told.message and "111" in told.message


def test_a_damaged_file_is_told_once_and_the_other_chips_are_looked_at(
    camera: Camera, monkeypatch: pytest.MonkeyPatch
) -> None:
    [files] = camera.expose()
    damaged = Path(files[112]["path"])
    with damaged.open("r+b") as f:
        f.truncate(damaged.stat().st_size // 3)  # the header survives, the pixels do not
    svc = camera.service(monkeypatch)
    run_until_idle(svc)
    assert sorted(chip_looks(camera.engine, files[111]["exp_id"])) == [111, 121]
    [told] = recent_events(camera.engine, kind=quicklook.UNREADABLE)
    assert told.subject == damaged.name and told.severity == "warning" and told.host == "daq1"
    assert "exp" in told.message and "112" in told.message and "truncated" in told.message, told.message
    assert "\n" not in told.message
    assert svc.run_once() is False
    again = camera.service(monkeypatch)  # restarted: remembers it from the event
    assert again.run_once() is False
    assert len(recent_events(camera.engine, kind=quicklook.UNREADABLE)) == 1


def test_looks_older_than_keep_days_are_dropped(camera: Camera, monkeypatch: pytest.MonkeyPatch) -> None:
    [old, new] = camera.expose(2)
    svc = camera.service(monkeypatch)
    run_until_idle(svc)
    long_ago = utcnow() - timedelta(days=15)
    with camera.engine.begin() as conn:  # as if the first exposure had been two weeks ago
        old_exp = old[111]["exp_id"]
        conn.execute(update(quicklook_table).where(quicklook_table.c.exp_id == old_exp).values(made_at=long_ago))
        conn.execute(update(daq_files).where(daq_files.c.exp_id == old_exp).values(created_at=long_ago))
    svc._dropped_at = float("-inf")  # the next hourly pass is due
    svc.run_once()
    assert chip_looks(camera.engine, old[111]["exp_id"]) == {}
    assert sorted(chip_looks(camera.engine, new[111]["exp_id"])) == CHIPS


# --- the mosaic -----------------------------------------------------------------------------------


def white_chip() -> bytes:
    return grey_png(np.ones((141, 250)), 0.0, 1.0)


def test_mosaic_has_every_chips_place_filled_or_empty() -> None:
    pictures = {111: white_chip(), 244: white_chip(), 321: white_chip(), 411: white_chip()}
    mosaic = Image.open(io.BytesIO(draw_mosaic(pictures, "exposure 1"))).convert("L")
    k = MOSAIC_SCALE
    assert mosaic.size == (round(FOCAL_PLANE.width * k), round(FOCAL_PLANE.height * k))
    pixels = np.asarray(mosaic)
    assert len(FOCAL_PLANE.boxes) == 84
    for b in FOCAL_PLANE.boxes:
        # the lower right of the box: clear of the chip id's label
        rows = slice(round((b.y + b.h * 0.6) * k), round((b.y + b.h * 0.9) * k))
        patch = pixels[rows, round((b.x + b.w * 0.5) * k) : round((b.x + b.w * 0.9) * k)]
        assert (patch.min() > 240) if b.det_id in pictures else (patch.max() < 60), b.det_id
        edge = pixels[round(b.y * k), round((b.x + b.w / 2) * k)]
        assert edge > 60 or b.det_id in pictures, (b.det_id, edge)  # an empty chip's outline is drawn


def test_mosaic_is_cached_and_made_again_when_more_chips_arrive(tmp_path: Path) -> None:
    cfg = camera_config(tmp_path)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("M31", FRAMES, FPS), 1)
    assert mosaic_png(cfg, engine, exp_id) is None
    look = look_at(star_field(20, 3.0), 8)
    record_look(engine, exp_id, 111, "daq1", look)
    first = mosaic_png(cfg, engine, exp_id)
    assert first is not None and Image.open(io.BytesIO(first)).format == "PNG"
    cached = list((cfg.data_dir / quicklook.CACHE_DIR).glob("mosaic-*.png"))
    assert len(cached) == 1 and cached[0].read_bytes() == first
    assert mosaic_png(cfg, engine, exp_id) == first
    record_look(engine, exp_id, 112, "daq1", look)
    second = mosaic_png(cfg, engine, exp_id)
    assert second != first
    cached = list((cfg.data_dir / quicklook.CACHE_DIR).glob("mosaic-*.png"))
    assert len(cached) == 1 and "-002-" in cached[0].name  # the older mosaic dropped
    assert sorted(latest_chip_looks(engine)) == [111, 112]
    assert latest_chip_looks(engine, since=utcnow() + timedelta(seconds=1)) == {}  # none made since
