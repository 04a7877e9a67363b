"""A full readout (2160 x 1200 with optical black and overscan) through the real readout and writer:
valid FITS, IRAF sections that trim to the light area, the WCS on the full frame, overscan statistics."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from gozen.config import Config, parse_config
from gozen.daq import catalog
from gozen.daq.focalplane import sky_to_pixel
from gozen.daq.geometry import FULL_HEIGHT, FULL_WIDTH, geometry
from gozen.daq.headers import ExposureInfo, primary_header
from gozen.daq.readout import Readout
from gozen.daq.snapshot import simulated_snapshot
from gozen.daq.writer import Writer
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.devices.camera import ExposureSpec
from gozen.devices.simulators.camera import SimulatedCamera, stars_in_field
from tests.conftest import WAIT_S
from tests.daq.exposing import expose

CHIPS, FRAMES, FPS = [111, 112], 4, 10.0
RA, DEC = 10.68, 41.27


def full_config(tmp: Path, readout: str = "full") -> Config:
    return parse_config(
        {
            "data_dir": str(tmp / "var"),
            "camera": {"readout": readout, "fps": FPS, "chips": CHIPS},
            "daq_volumes": [{"name": "vol1", "path": str(tmp / "vol1")}],
            "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 0.3, "frame_timeout_s": 2, "fsync": "none"},
        }
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, list[dict[str, Any]]]:
    """One exposure of two chips read out in full, as `gozen up` runs it (readout and writer, real rings)."""
    cfg = full_config(tmp_path_factory.mktemp("full"))
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    readout, writer = Readout(cfg, engine, 0, "daq1"), Writer(cfg, engine, 0, "daq1")
    writer.attach(timeout_s=WAIT_S)
    _counts, files = expose(
        cfg, engine, readout, writer, catalog.ExposureRequest("M31", FRAMES, FPS, ra_deg=RA, dec_deg=DEC)
    )
    rows = [files[c] for c in sorted(files)]
    assert [r["det_id"] for r in rows] == CHIPS and all(r["state"] == "written" for r in rows), rows
    return cfg, rows


def iraf_slices(section: str) -> tuple[slice, slice]:
    """numpy (rows, columns) of an IRAF section '[x1:x2,y1:y2]' (1-based, inclusive), as ccdproc reads it."""
    x, y = section.strip("[]").split(",")
    (x1, x2), (y1, y2) = (map(int, x.split(":")), map(int, y.split(":")))
    return slice(y1 - 1, y2), slice(x1 - 1, x2)


def camera_frames(cfg: Config) -> dict[int, list[np.ndarray]]:
    """The frames the readout's camera made, made again (same seed, same order of reads)."""
    cam = SimulatedCamera(cfg.camera, seed=0, gps_jitter_s=cfg.daq.gps_jitter_s)
    cam.open(CHIPS)
    cam.start_exposure(ExposureSpec(0, FRAMES, FPS, 0, RA, DEC))
    frames: dict[int, list[np.ndarray]] = {c: [] for c in CHIPS}
    for i in range(FRAMES):
        for c in CHIPS:
            buf = np.empty(FULL_WIDTH * FULL_HEIGHT, np.uint16)
            cam.read_frame(c, i, buf)
            frames[c].append(buf.reshape(FULL_HEIGHT, FULL_WIDTH))
    return frames


def test_a_full_readout_file_passes_fitsverify_without_a_warning(written: tuple[Config, list[dict[str, Any]]]) -> None:
    _cfg, rows = written
    for r in rows:
        report = subprocess.run(["fitsverify", r["path"]], capture_output=True, text=True).stdout
        assert "0 warning(s) and 0 error(s)" in report, report
        assert (r["naxis1"], r["naxis2"], r["frames_written"]) == (FULL_WIDTH, FULL_HEIGHT, FRAMES)


def test_trimming_with_datasec_gives_the_light_area(written: tuple[Config, list[dict[str, Any]]]) -> None:
    cfg, rows = written
    made = camera_frames(cfg)
    for r in rows:
        with fits.open(r["path"]) as hdul:
            h, cube = hdul[0].header, hdul[0].data
            assert cube.shape == (FRAMES, FULL_HEIGHT, FULL_WIDTH)
            rows_, cols = iraf_slices(h["DATASEC"])
            light = cube[:, rows_, cols]
            assert light.shape == (FRAMES, 1128, 2000)
            assert h["TRIMSEC"] == h["DATASEC"] and h["CCDSEC"] == "[1:2000,1:1128]"
            bias_rows, bias_cols = iraf_slices(h["BIASSEC"])
            assert cube[:, bias_rows, bias_cols].shape == (FRAMES, 1128, 80)
            for i, frame in enumerate(made[r["det_id"]]):
                assert np.array_equal(cube[i], frame), f"det {r['det_id']} frame {i}"
            # The light area holds the sky; everything outside it is near the bias level.
            outside = cube[0].astype(float)
            outside[rows_, cols] = np.nan
            assert np.nanmedian(light[0]) - np.nanmedian(outside) > 250


def test_overscan_statistics_are_in_the_frames_table_its_header_and_the_file_row(
    written: tuple[Config, list[dict[str, Any]]],
) -> None:
    _cfg, rows = written
    medians = []
    for r in rows:
        with fits.open(r["path"]) as hdul:
            bias_rows, bias_cols = iraf_slices(hdul[0].header["BIASSEC"])
            strip = hdul[0].data[:, bias_rows, bias_cols].astype(float)
            table, th = hdul["FRAMES"].data, hdul["FRAMES"].header
            for i in range(FRAMES):
                assert abs(table["OSMED"][i] - np.median(strip[i])) <= 2, (r["det_id"], i)
                assert 0.7 < table["OSNOISE"][i] / np.std(strip[i]) < 1.3, (r["det_id"], i)
            assert th["OVSCMED"] == pytest.approx(np.median(table["OSMED"]), abs=0.01)
            assert th["OVSCNOIS"] == pytest.approx(np.median(table["OSNOISE"]), abs=0.01)
            assert r["overscan_median"] == pytest.approx(th["OVSCMED"], abs=0.01)
            assert r["overscan_noise"] == pytest.approx(th["OVSCNOIS"], abs=0.01)
            medians.append(th["OVSCMED"])
    assert medians[0] != medians[1]  # each chip has its own bias level


def test_the_wcs_of_the_full_frame_puts_the_brightest_star_where_it_is(
    written: tuple[Config, list[dict[str, Any]]],
) -> None:
    cfg, rows = written
    r = rows[0]
    ra, dec, mag = stars_in_field(RA, DEC, 3.0)
    px, py = sky_to_pixel(ra, dec, r["det_id"], RA, DEC, 2000, 1128)  # on the light area
    on_chip = (px > 10) & (px < 1990) & (py > 10) & (py < 1118)
    brightest = np.flatnonzero(on_chip)[np.argmin(mag[on_chip])]
    with fits.open(r["path"]) as hdul:
        wcs = WCS(hdul[0].header, naxis=2)
        x, y = wcs.world_to_pixel_values(ra[brightest], dec[brightest])
        frame = hdul[0].data[0].astype(float)
    assert (round(float(x)), round(float(y))) == (round(px[brightest]) + 80, round(py[brightest]) + 36)
    assert frame[round(float(y)), round(float(x))] > np.median(frame) + 100  # the star is there


def test_a_light_readout_header_has_the_whole_frame_as_datasec_and_no_biassec(tmp_path: Path) -> None:
    light, full = full_config(tmp_path, "light"), full_config(tmp_path)
    start = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    snap = simulated_snapshot(light, start, RA, DEC)
    exp = ExposureInfo(1, "M31", "OBJECT", "m", "none", "p", "o", FRAMES, FPS, start, None, None, snap)
    h = primary_header(light, exp, 111, start, "daq1", "vol1", "f")
    assert (h["NAXIS1"], h["NAXIS2"], h["DATASEC"], h["CCDSEC"]) == (2000, 1128, "[1:2000,1:1128]", "[1:2000,1:1128]")
    assert "BIASSEC" not in h and "TRIMSEC" not in h
    hf = primary_header(full, exp, 111, start, "daq1", "vol1", "f")
    assert (hf["CRPIX1"], hf["CRPIX2"]) == pytest.approx((h["CRPIX1"] + 80, h["CRPIX2"] + 36))
    assert geometry(full.camera).data.fits == hf["DATASEC"] == "[81:2080,37:1164]"
