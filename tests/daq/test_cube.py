"""One chip's cube on disk: valid FITS, bit-exact pixels, BLANK for lost frames, checksum of what landed."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xxhash
from astropy.io import fits

from gozen.config import Config
from gozen.daq.cube import CubeFile, part_name, to_fits_order
from gozen.daq.headers import ExposureInfo, primary_header, tomoe_filename
from gozen.daq.ring import FLAG_DAMAGED, FLAG_MISSING
from gozen.daq.snapshot import simulated_snapshot

W, H = 64, 40


def fitsverify(path: Path) -> str:
    out = subprocess.run(["fitsverify", str(path)], capture_output=True, text=True).stdout
    return out


def make_cube(tmp_path: Path, n_frames: int = 4) -> tuple[CubeFile, Path, Config]:
    cfg = Config.model_validate({"camera": {"width_px": W, "height_px": H}})
    start = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    exp = ExposureInfo(
        42,
        "M31",
        "OBJECT",
        "test",
        "none",
        "p",
        "o",
        n_frames,
        2.0,
        start,
        "u-1",
        "Sample",
        simulated_snapshot(cfg, start, 10.68, 41.27),
    )
    name = tomoe_filename(112, 42, start, cfg.site.lon_deg)
    header = primary_header(cfg, exp, 112, start, "daq1", "vol1", name).tostring().encode()
    final = tmp_path / name
    return CubeFile(final, header, W * H, n_frames, fsync=True), final, cfg


def test_tomoe_file_names() -> None:
    t = datetime(2022, 1, 4, 13, 0, tzinfo=UTC)  # 22:00 JST: the night of Jan 4
    assert tomoe_filename(212, 652282, t, 137.6) == "TMQ2202201040065228212.fits"
    late = datetime(2022, 1, 4, 19, 0, tzinfo=UTC)  # 04:00 JST Jan 5: still the night of Jan 4
    assert tomoe_filename(111, 1, late, 137.6) == "TMQ1202201040000000111.fits"


def test_cube_is_valid_fits_bit_exact_with_blank_and_flags(tmp_path: Path) -> None:
    cube, final, _ = make_cube(tmp_path)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 65536, W * H, dtype=np.uint16) for _ in range(4)]
    frames[0][:3] = [0, 32768, 65535]  # the edges of the uint16 range survive BZERO
    scratch = np.empty(W * H, np.uint16)
    cube.write_frame(0, frames[0], scratch, counter=10, gps_s=1.5, flags=0)
    cube.write_frame(2, frames[2], scratch, counter=12, gps_s=2.5, flags=FLAG_DAMAGED)  # frame 1 never came
    assert part_name(final).exists() and not final.exists()  # no final name before it is whole
    result = cube.close(scratch)  # frame 3 never came either
    assert final.exists() and not part_name(final).exists()
    report = fitsverify(final)
    assert "0 warning(s) and 0 error(s)" in report, report

    assert result.frames_missing == 2 and result.frames_damaged == 1 and result.frames_written == 2
    assert result.size_bytes == final.stat().st_size
    assert result.checksum_xxh3 == xxhash.xxh3_64(final.read_bytes()).hexdigest()
    with fits.open(final) as hdul:
        data = hdul[0].data
        assert data.shape == (4, H, W) and data.dtype == np.uint16
        assert np.array_equal(data[0].ravel(), frames[0]) and np.array_equal(data[2].ravel(), frames[2])
        table = hdul["FRAMES"].data
        assert list(table["FLAGS"]) == [0, FLAG_MISSING, FLAG_DAMAGED, FLAG_MISSING]
        assert list(table["COUNTER"]) == [10, -1, 12, -1]
        assert hdul["FRAMES"].header["NMISSING"] == 2
        h = hdul[0].header
        assert (h["EXP_ID"], h["DET-ID"], h["OBJECT"], h["RECIPEID"], h["DATA-TYP"]) == (
            42,
            112,
            "M31",
            "u-1",
            "OBJECT",
        )
        assert h["RA"] == "00:42:43.20" and h["DEC"] == "+41:16:12.0" and h["CTYPE1"] == "RA---TAN"
        assert "[degC]" in h.comments["OUT-TMP"]
    with fits.open(final, do_not_scale_image_data=True) as raw:
        assert (raw[0].data[1] == -32768).all() and (raw[0].data[3] == -32768).all()


def test_a_frame_in_fits_order_after_a_gap_is_written_from_where_it_is(tmp_path: Path) -> None:
    cube, final, _ = make_cube(tmp_path, 3)
    pixels = np.random.default_rng(2).integers(0, 65536, W * H, dtype=np.uint16)
    in_ring = to_fits_order(pixels.copy())  # as the readout leaves it in the ring
    scratch = np.empty(W * H, np.uint16)
    cube.write_converted(2, in_ring, scratch, counter=5, gps_s=3.0, flags=0, overscan=(1001.5, 3.25))
    cube.close(scratch)
    with fits.open(final) as hdul:
        assert np.array_equal(hdul[0].data[2].ravel(), pixels)  # the gap before it was made in scratch
        table = hdul["FRAMES"].data
        assert list(table["FLAGS"]) == [FLAG_MISSING, FLAG_MISSING, 0]
        assert table["OSMED"][2] == 1001.5 and np.isnan(table["OSMED"][0])


def test_headers_come_in_commented_sections(tmp_path: Path) -> None:
    cube, final, _ = make_cube(tmp_path, 1)
    cube.close(np.empty(W * H, np.uint16))
    header = fits.getheader(final)
    text = [str(c) for c in header.cards]
    sections = [i for i, c in enumerate(text) if "----" in c]
    assert len(sections) == 6
    order = [text[i] for i in sections]
    assert "observation" in order[0] and "WCS" in order[-1]
    assert text.index(next(c for c in text if c.startswith("OBJECT"))) > sections[0]
    assert text.index(next(c for c in text if c.startswith("OUT-TMP"))) > sections[3]


def test_header_template_renders_exactly_what_astropy_builds_for_each_chip(tmp_path: Path) -> None:
    from gozen.daq.headers import FRAME_DTYPE, FramesTableTemplate, HeaderTemplate, frames_table

    _, _, cfg = make_cube(tmp_path)
    start = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    exp = ExposureInfo(
        7, "F", "FLAT", "m", "none", "p", "o", 3, 2.0, start, None, None, simulated_snapshot(cfg, start, 200.0, -20.0)
    )
    template = HeaderTemplate(cfg, exp, "daq9")
    for det in (111, 144, 321, 412):
        name = tomoe_filename(det, 7, start, cfg.site.lon_deg)
        expected = primary_header(cfg, exp, det, start, "daq9", "vol-x", name).tostring().encode()
        assert template.render(det, "vol-x", name) == expected
    rows = np.zeros(3, FRAME_DTYPE)
    rows["FLAGS"] = [0, 1, 2]
    assert FramesTableTemplate(3).render(rows, 1, 1, None, None) == frames_table(rows, 1, 1)
    assert FramesTableTemplate(3).render(rows, 1, 1, 1003.25, 2.5) == frames_table(rows, 1, 1, 1003.25, 2.5)


def test_headers_take_monitor_values_from_the_board_and_say_when_they_are_stale(tmp_path: Path) -> None:
    from datetime import timedelta

    from gozen.daq.snapshot import take_snapshot
    from gozen.db.engine import make_engine
    from gozen.db.migrate import upgrade
    from gozen.monitors.board import Reading, publish

    _, _, cfg = make_cube(tmp_path)
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    upgrade(engine)
    now = datetime.now(UTC)
    publish(engine, "monitor:weather", [Reading("weather.humidity_pct", 91.5, "%", 60)], when=now - timedelta(hours=1))
    publish(engine, "monitor:weather", [Reading("weather.wind_ms", 7.25, "m/s", 60)], when=now)
    snap = take_snapshot(cfg, engine, now, 10.68, 41.27)
    exp = ExposureInfo(1, "F", "OBJECT", "m", "none", "p", "o", 2, 2.0, now, None, None, snap)
    h = fits.Header.fromstring(primary_header(cfg, exp, 111, now, "d", "v", "f").tostring())
    assert h["OUT-HUM"] == 91.5 and "STALE" in h.comments["OUT-HUM"]
    assert h["OUT-WND"] == 7.25 and "STALE" not in h.comments["OUT-WND"]
    assert h["OUT-TMP"] is not None  # still from the simulator where no monitor writes
