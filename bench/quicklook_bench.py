"""Benchmark: the quick look of one chip's file against what the writer spends writing that file.

One chip's exposure (12 frames of the simulated camera, stars included, full or light readout) is
written the writer's way (gozen's CubeFile: header, frames in FITS order, checksum, FRAMES table,
fsync, rename), then daq:quicklook's work is done on it (read the first frame's light area, bin,
zscale, PNG, sep background, sources and FWHM). Medians of N repeats, in the same process, and
the ratio. With --pipeline, the DAQ pipeline bench (bench/daq_bench.py) runs twice on the same
volume, without and with `gozen run daq:quicklook` beside it.

    .venv/bin/python bench/quicklook_bench.py                      # full readout on /dev/shm, 10 repeats
    .venv/bin/python bench/quicklook_bench.py --readout light --volume var
    .venv/bin/python bench/quicklook_bench.py --pipeline --chips 21 --seconds 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))

from gozen.config import Config
from gozen.daq.cube import CubeFile, to_fits_order
from gozen.daq.geometry import geometry
from gozen.daq.layout import SHM_DIR
from gozen.daq.quicklook import first_frame, look_at
from gozen.devices.camera import ExposureSpec
from gozen.devices.simulators.camera import SimulatedCamera

FRAMES, FPS = 12, 2.0
RA, DEC = 10.68, 41.27  # M31: a field with stars


def camera_frames(cfg: Config) -> list[np.ndarray]:
    """One chip's 12 frames from the simulated camera, in FITS order (as the readout leaves them in the ring)."""
    cam = SimulatedCamera(cfg.camera)
    cam.open([111])
    cam.start_exposure(ExposureSpec(0, FRAMES, FPS, 0, RA, DEC))
    frames = []
    for i in range(FRAMES):
        buf = np.empty(geometry(cfg.camera).pixels, np.uint16)
        cam.read_frame(111, i, buf)
        frames.append(to_fits_order(buf))
    return frames


def write_file(cfg: Config, path: Path, frames: list[np.ndarray]) -> float:
    """Seconds the writer spends on one chip's file: every frame, the table, fsync, the final name."""
    from cubes import CubeMaker

    g = geometry(cfg.camera)
    header = CubeMaker(cfg).template.render(111, "bench", path.name)
    scratch = np.empty(g.pixels, np.uint16)
    t0 = time.perf_counter()
    cube = CubeFile(path, header, g.pixels, FRAMES, fsync=True)
    for k, frame in enumerate(frames):
        cube.write_converted(k, frame, scratch, k, 0.0, 0)
    cube.close(scratch)
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def one_chip(cfg: Config, volume: Path, repeats: int) -> None:
    frames = camera_frames(cfg)
    binning = cfg.daq.quicklook.binning
    writes, reads, pictures, looks = [], [], [], []
    n_stars = fwhm = None
    for i in range(repeats):
        path = volume / f"ql-{i}.fits"
        writes.append(write_file(cfg, path, frames))
        t0 = time.perf_counter()
        light, bias = first_frame(path)
        t_read = time.perf_counter() - t0
        look = look_at(light, binning, True, bias)  # what daq:quicklook does per file
        looks.append(time.perf_counter() - t0)
        reads.append(t_read)
        pictures.append(timed(lambda lt=light, b=bias: look_at(lt, binning, False, b))[0])
        n_stars, fwhm = look.n_stars, look.fwhm_px
        path.unlink()
    w, q = statistics.median(writes), statistics.median(looks)
    size_mb = geometry(cfg.camera).frame_bytes * FRAMES / 1e6
    print(f"readout {cfg.camera.readout}, {FRAMES} frames ({size_mb:.0f} MB per file) on {volume}, {repeats} repeats")
    print(f"  writer, one chip's file:           {w * 1e3:7.1f} ms  (median)")
    print(f"  quick look, one chip's file:       {q * 1e3:7.1f} ms  (median; {n_stars} stars, FWHM {fwhm:.2f} px)")
    print(f"    of which reading the first frame {statistics.median(reads) * 1e3:7.1f} ms")
    print(f"    picture and sky, without stars   {statistics.median(pictures) * 1e3:7.1f} ms")
    print(f"  ratio quick look / writer:         {q / w:7.3f}x")
    exposure_s = FRAMES / FPS
    print(f"  one core's share per chip and {exposure_s:.0f}-s exposure: {100 * q / exposure_s:.1f} % "
          f"(writer: {100 * w / exposure_s:.1f} %)")  # fmt: skip


# --- the pipeline with and without quick look ------------------------------------------------------


def pipeline(volume: Path, chips: int, seconds: float, readout: str, rounds: int) -> None:
    """Off, then on, `rounds` times: on a shared machine the load moves between runs, so each pair is printed."""
    import daq_bench

    plain_drain = daq_bench.drain
    ratios = []
    for _ in range(rounds):
        runs = {}
        for quick in (False, True):
            with tempfile.TemporaryDirectory(prefix="gozen-qlbench-") as t:
                run_dir = Path(t)
                stop = threading.Event()
                helper = threading.Thread(target=run_quicklook, args=(run_dir, stop, quick), daemon=True)
                # with quick look, files stay until they have had it (or were skipped)
                daq_bench.drain = drain_after_look if quick else plain_drain
                helper.start()
                try:
                    runs[quick] = daq_bench.run_pipeline(run_dir, volume, chips, seconds, 2, 4.0, readout, 2)
                finally:
                    stop.set()
                    helper.join()
                for ring in SHM_DIR.glob("gozen-*-bench-*.ring"):
                    ring.unlink()
                r = runs[quick]
                print(f"quick look {'on ' if quick else 'off'}: {chips} chips, {r.mb_s:.0f} MB/s, "
                      f"{r.frames_missing} missing, {r.frames_dropped} dropped, writers' CPU "
                      f"{', '.join(f'{c:.0f}%' for c in r.writers)}, load {r.load[0]:.1f} -> {r.load[1]:.1f}"
                      + (f", quick looks made: {looked(run_dir)}" if quick else ""))  # fmt: skip
        ratios.append(runs[True].mb_s / runs[False].mb_s)
        print(f"ratio MB/s on / off: {ratios[-1]:.3f}x")
    daq_bench.drain = plain_drain


LOOKED: dict[str, tuple[int, int]] = {}  # run dir -> (quick looks, files), warm-up exposures included


def run_quicklook(run_dir: Path, stop: threading.Event, on: bool) -> None:
    """`gozen run daq:quicklook` on the bench's config once daq_bench has written it, until stopped."""
    config = run_dir / "gozen.yaml"
    while not config.exists() and not stop.wait(0.1):
        pass
    if not on or stop.is_set():
        return
    env = {**os.environ, "GOZEN_HOST": "bench"}
    log = (run_dir / "quicklook.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gozen", "-c", str(config), "run", "daq:quicklook"], env=env, stderr=log
    )
    stop.wait()
    LOOKED[str(run_dir)] = count_looks(config)
    proc.terminate()
    proc.wait(30)


def count_looks(config: Path) -> tuple[int, int]:
    from gozen.config import load_config
    from gozen.db.engine import make_engine
    from gozen.db.tables import daq_files, quicklook

    engine = make_engine(load_config(config).database_url)
    with engine.connect() as conn:
        looks = conn.execute(select(func.count()).select_from(quicklook)).scalar_one()
        files = conn.execute(select(func.count()).select_from(daq_files)).scalar_one()
    return int(looks), int(files)


def looked(run_dir: Path) -> str:
    looks, files = LOOKED.get(str(run_dir), (0, 0))
    return f"{looks} of {files} files (warm-up included)"


def drain_after_look(engine_url: str, stop: threading.Event) -> None:
    """daq_bench's drain, but a file goes once it has its quick look, or once it is 10 s old (skipped)."""
    from gozen.db.engine import make_engine
    from gozen.db.tables import daq_files, quicklook

    engine = make_engine(engine_url)
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])  # as daq_bench's drain: beside the readout
    seen, waiting = 0, {}  # daq_files id -> (exp_id, det_id, path, when seen)
    while not stop.is_set():
        with engine.connect() as conn:
            rows = conn.execute(
                select(daq_files.c.id, daq_files.c.exp_id, daq_files.c.det_id, daq_files.c.path).where(
                    daq_files.c.id > seen
                )
            ).all()
            oldest = min((e for e, _d, _p, _t in waiting.values()), default=None)
            done = set() if oldest is None else {
                (e, d) for e, d in conn.execute(
                    select(quicklook.c.exp_id, quicklook.c.det_id).where(quicklook.c.exp_id >= oldest)
                )
            }  # fmt: skip
        now = time.monotonic()
        for fid, exp_id, det_id, path in rows:
            seen = max(seen, fid)
            if path:
                waiting[fid] = (exp_id, det_id, path, now)
        for fid, (exp_id, det_id, path, at) in list(waiting.items()):
            if (exp_id, det_id) in done or now - at > 10:
                Path(path).unlink(missing_ok=True)
                del waiting[fid]
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readout", choices=["light", "full"], default="full")
    ap.add_argument("--volume", type=Path, default=SHM_DIR, help="where files go (default /dev/shm)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--pipeline", action="store_true", help="also the DAQ pipeline with quick look off and on")
    ap.add_argument("--chips", type=int, default=21, help="chips in the pipeline runs")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rounds", type=int, default=1, help="pipeline runs off and on, this many times each")
    ap.add_argument("--smoke", action="store_true", help="two repeats, no pipeline (tests/test_bench_smoke.py)")
    args = ap.parse_args()
    if args.smoke:
        args.repeats, args.pipeline = 2, False
    cfg = Config.model_validate({"camera": {"readout": args.readout}})
    args.volume.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.volume, prefix="gozen-ql-") as v:
        one_chip(cfg, Path(v), args.repeats)
        if args.pipeline:
            pipeline(Path(v), args.chips, args.seconds, args.readout, args.rounds)


if __name__ == "__main__":
    main()
