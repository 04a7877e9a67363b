"""Benchmark: the real DAQ pipeline at Tomo-e Gozen rate, against `dd` and a plain astropy writer.

Runs the same programs supervisord runs (`gozen run daq:control`, `daq:readout-NN`,
`daq:writer-NN`: simulated camera, shared-memory rings, FITS cubes with headers and
checksums, rows in the database) with C chips at 2 fps for T seconds, then measures on the
same volume, in the same run: `dd` sequential writes with fdatasync (the volume's limit)
and astropy writing the same cubes the plain way (`PrimaryHDU(data).writeto`).

    .venv/bin/python bench/daq_bench.py --mode cpu    # volumes on tmpfs, files drained at once: 84 chips
    .venv/bin/python bench/daq_bench.py --mode cpu --readout full   # 2160 x 1200 frames: 871 MB/s
    .venv/bin/python bench/daq_bench.py --mode disk   # volumes on the real disk: highest chip count with 0 drops
    .venv/bin/python bench/daq_bench.py --smoke       # 2 chips, one exposure, small dd: does it still run?

Each finished file is deleted as soon as its row lands, standing in for the transfer draining
the DAQ, so neither tmpfs nor the disk fills. In disk mode `dd` writes as much as the pipeline
did (the disk's sustained rate, not its cache's). Each run prints the load average before and
after, and how busy the writers' CPU was in all (the writers' share and what else ran there):
on a shared machine other work takes the writers' core.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml
from astropy.io import fits
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import Engine, func, select

from gozen.config import Config, load_config, tomoe_chip_ids
from gozen.daq import catalog, stats
from gozen.daq.cpus import cpu_sets
from gozen.daq.cube import CubeFile, to_fits_order
from gozen.daq.geometry import geometry
from gozen.daq.layout import SHM_DIR
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.db.tables import daq_files, readout_reports

# The first exposures are not counted: this VM's balloon hands freed memory back to the host, and
# the first touch of such a page costs a host fault (fresh tmpfs pages are written at ~400 MB/s,
# recycled ones at ~2.5 GB/s). Until the files drained by the transfer are recycled for new ones
# (four or five exposures at 84 chips), the writers spend twice their CPU in the kernel and the rings
# fill: that measures the VM, not gozen (a DAQ host on bare metal has no such cost). Their drops are
# printed apart (--warmup 0 counts them).
WARMUP = 6

console = Console(width=190)
FRAMES, FPS = 12, 2.0


@dataclass
class RunResult:
    chips: int
    seconds: float
    files: int
    bytes: int
    frames_expected: int
    frames_missing: int
    frames_dropped: int
    cpu: dict[str, float]  # % of one core, by program
    writer_core_busy: float  # % of the writers' CPUs busy in all (writers and anything else there)
    load: tuple[float, float]  # 1-minute load average before and after
    warmup_dropped: int = 0  # in the exposures before the measured ones (not counted above)

    @property
    def mb_s(self) -> float:
        return self.bytes / 1e6 / self.seconds

    @property
    def writers(self) -> list[float]:
        return [v for k, v in sorted(self.cpu.items()) if "writer" in k]


def write_config(tmp: Path, volume_root: Path, chips: int, writers: int, ring_seconds: float, readout: str) -> Path:
    cfg = {
        "data_dir": str(tmp / "var"),
        "hosts": [{"name": "bench", "roles": ["daq"], "supervisor": {"port": 9999}}],
        "camera": {"chips": tomoe_chip_ids()[:chips], "fps": FPS, "frames_per_exposure": FRAMES, "readout": readout},
        "daq_volumes": [{"name": f"vol{i}", "path": str(volume_root / f"vol{i}")} for i in (1, 2)],
        "daq": {
            "readouts": 1,
            "writers": writers,
            "reserve_bytes": 0,
            "start_delay_s": 1.0,
            "frame_timeout_s": 10,
            "fsync": "file",
            "ring_seconds": ring_seconds,
        },
    }
    path = tmp / "gozen.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def drain(engine_url: str, stop: threading.Event) -> None:
    """Delete each file once its row is in the database (the transfer)."""
    # The transfer runs beside the readout, not on the writers' CPUs (threads share the affinity call).
    os.sched_setaffinity(0, readout_cpus())
    engine = make_engine(engine_url)
    seen = 0
    while not stop.is_set():
        with engine.connect() as conn:
            rows = conn.execute(select(daq_files.c.id, daq_files.c.path).where(daq_files.c.id > seen)).all()
        for fid, path in rows:
            seen = max(seen, fid)
            if path:
                Path(path).unlink(missing_ok=True)
        time.sleep(0.2)


def readout_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))[:1]


def busy_pct(before: list[Any], after: list[Any], cpus: list[int]) -> float:
    """How busy these CPUs were between two psutil.cpu_times(percpu=True), % of one CPU."""
    total = idle = 0.0
    for c in cpus:
        d = [a - b for a, b in zip(after[c], before[c], strict=True)]
        total += sum(d)
        idle += after[c].idle - before[c].idle + after[c].iowait - before[c].iowait
    return 100 * (total - idle) / total * len(cpus) if total else 0.0


def run_pipeline(
    tmp: Path,
    volume_root: Path,
    chips: int,
    seconds: float,
    writers: int,
    ring_seconds: float = 4.0,
    readout: str = "light",
    warmup: int = WARMUP,
) -> RunResult:
    config = write_config(tmp, volume_root, chips, writers, ring_seconds, readout)
    cfg = load_config(config)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    env = {**os.environ, "GOZEN_HOST": "bench"}
    names = ["daq:control", "daq:readout-01", *[f"daq:writer-{i:02d}" for i in range(1, writers + 1)]]
    logs = {n: tmp / f"{n.replace(':', '-')}.log" for n in names}
    procs = {
        n: subprocess.Popen(
            [sys.executable, "-m", "gozen", "-c", str(config), "run", n], env=env, stderr=open(logs[n], "w")
        )
        for n in names
    }  # noqa: SIM115
    stop = threading.Event()
    drainer = threading.Thread(target=drain, args=(cfg.database_url, stop), daemon=True)
    drainer.start()
    try:
        wait_ready(tmp, {n: logs[n] for n in names[1:]}, procs)
        n_exp = max(1, round(seconds * FPS / FRAMES))
        ids = catalog.request_exposures(engine, catalog.ExposureRequest("BENCH", FRAMES, FPS), warmup + n_exp)
        warm_ids, ids = ids[:warmup], ids[warmup:]
        watch = Watch(engine, procs, logs, chips)
        watch.until(lambda: started(engine, ids[0]), "the warm-up")
        ps = {n: psutil.Process(p.pid) for n, p in procs.items()}
        cpu0 = {n: sum(p.cpu_times()[:2]) for n, p in ps.items()}
        load0, cores0 = os.getloadavg()[0], psutil.cpu_times(percpu=True)
        t0 = time.monotonic()
        watch.until(lambda: watch.closed(ids), "the exposures", len(ids) * chips)
        wall = time.monotonic() - t0
        cpu = {n: 100 * (sum(p.cpu_times()[:2]) - cpu0[n]) / wall for n, p in ps.items()}
        core_busy = busy_pct(cores0, psutil.cpu_times(percpu=True), cpu_sets(cfg)[1])
        load = (load0, os.getloadavg()[0])
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(timeout=30)
        stop.set()
        drainer.join()
    span, files, size, missing, dropped = tally(engine, ids, wall)
    return RunResult(
        chips,
        span,
        files,
        size,
        len(ids) * FRAMES * chips,
        missing,
        dropped,
        cpu,
        core_busy,
        load,
        warmup_dropped=tally(engine, warm_ids, wall)[-1],
    )


def started(engine: Engine, exp_id: int) -> bool:
    start = catalog.exposure_outcome(engine, exp_id).start_at
    return start is not None and datetime.now(UTC) >= start


@dataclass
class Watch:
    """Waits on the pipeline, with a progress bar; stops the bench if a program exits."""

    engine: Engine
    procs: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]
    chips: int
    files: int = 0

    def closed(self, ids: list[int]) -> bool:
        self.files, _, states = catalog.exposure_progress(self.engine, ids)
        return all(s in ("done", "incomplete") for s in states.values())

    def until(self, done: Callable[[], bool], what: str, total: int | None = None) -> None:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"{self.chips} chips: {what}", total=total)
            while not done():
                bar.update(task, completed=self.files)
                for n, p in self.procs.items():
                    if p.poll() is not None:
                        raise SystemExit(f"{n} exited: see {self.logs[n]}")
                time.sleep(0.2)


def tally(engine: Engine, ids: list[int], wall: float) -> tuple[float, int, int, int, int]:
    """(seconds from the first start to the last file, files, bytes, frames missing, dropped) of these exposures."""
    with engine.connect() as conn:
        n_files, size, last, missing = conn.execute(
            select(
                func.count(),
                func.sum(daq_files.c.size_bytes),
                func.max(daq_files.c.created_at),
                func.sum(daq_files.c.frames_missing),
            ).where(daq_files.c.exp_id.in_(ids))
        ).one()
        dropped = conn.execute(
            select(func.coalesce(func.sum(readout_reports.c.frames_dropped), 0)).where(
                readout_reports.c.exp_id.in_(ids)
            )
        ).scalar_one()
    st = stats.daq_stats(engine, exp_ids=ids)
    span = (last - st.first_start).total_seconds() if last and st.first_start else wall
    return span, int(n_files), int(size or 0), int(missing or 0), int(dropped)


def wait_ready(
    tmp: Path, logs: dict[str, Path], procs: dict[str, subprocess.Popen[bytes]], timeout_s: float = 120
) -> None:
    """Measure the steady state: start exposing once every readout and writer says it is ready."""
    deadline = time.monotonic() + timeout_s
    with console.status("starting readout and writers"):
        while not all(" ready: " in logs[n].read_text() for n in logs):
            for n, p in procs.items():
                if p.poll() is not None:
                    raise SystemExit(f"{n} exited: see {logs[n]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"not ready after {timeout_s} s: see the logs in {tmp}")
            time.sleep(0.2)


def dd_mb_s(volume: Path, total_mb: int) -> float:
    target = volume / "dd.bench"
    out = subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=4M", f"count={total_mb // 4}", "conv=fdatasync"],
        capture_output=True,
        text=True,
    )
    target.unlink(missing_ok=True)
    m = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", out.stderr)
    if not m:
        raise SystemExit(f"dd said: {out.stderr}")
    return int(m.group(1)) / 1e6 / float(m.group(2))


def astropy_mb_s(volume: Path, n_files: int, cfg: Config) -> float:
    """The plain way: a uint16 cube handed to astropy, which scales, swaps and writes it."""
    g = geometry(cfg.camera)
    rng = np.random.default_rng(0)
    cube = rng.normal(1300, 17, size=(FRAMES, g.height, g.width)).astype(np.uint16)
    t0 = time.perf_counter()
    total = 0
    for i in range(n_files):
        path = volume / f"astropy-{i}.fits"
        fits.PrimaryHDU(data=cube).writeto(path)
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        total += path.stat().st_size
        path.unlink()
    return total / 1e6 / (time.perf_counter() - t0)


def gozen_writer_mb_s(volume: Path, n_files: int, cfg: Config) -> float:
    """gozen's writer stage alone, unpaced, on the same cubes: header, frames as the readout leaves them in
    the ring (FITS order), checksum, table, fsync, rename."""
    from cubes import CubeMaker

    from gozen.daq.flusher import Flusher

    g = geometry(cfg.camera)
    template = CubeMaker(cfg).template  # its header; the frames are the geometry's
    rng = np.random.default_rng(0)
    frames = [to_fits_order(rng.normal(1300, 17, g.pixels).astype(np.uint16)) for _ in range(4)]
    scratch = np.empty(g.pixels, np.uint16)
    flusher = Flusher()  # as in the writer: fsync and rename off the loop
    t0 = time.perf_counter()
    total = 0
    paths = []
    for i in range(n_files):
        path = volume / f"gozen-{i}.fits"
        cube = CubeFile(path, template.render(111, "bench", path.name), g.pixels, FRAMES, fsync=True)
        for k in range(FRAMES):
            cube.write_converted(k, frames[(i + k) % 4], scratch, k, 0.0, 0)
        total += cube.finish(scratch).size_bytes
        flusher.submit(cube, None)
        paths.append(path)
    flusher.wait()
    elapsed = time.perf_counter() - t0
    for p in paths:
        p.unlink()
    return total / 1e6 / elapsed


def report(mode: str, readout: str, rows: list[RunResult], dd: float, dd_mb: int, astro: float, ours: float) -> None:
    table = Table(
        "chips",
        "s",
        "files",
        "MB/s",
        "frames",
        "missing",
        "dropped",
        "warm-up dropped",
        "CPU readout",
        "CPU writers",
        "their CPU busy",
        "load 1 min",
        "dd MB/s",
        "astropy MB/s",
        "vs dd",
        "vs astropy",
        title=f"gozen DAQ benchmark ({mode}, {readout} readout)",
    )
    for r in rows:
        table.add_row(
            str(r.chips),
            f"{r.seconds:.0f}",
            str(r.files),
            f"{r.mb_s:.0f}",
            str(r.frames_expected),
            str(r.frames_missing),
            str(r.frames_dropped),
            str(r.warmup_dropped),
            f"{r.cpu['daq:readout-01']:.0f}%",
            "+".join(f"{w:.0f}" for w in r.writers) + f"={sum(r.writers):.0f}%",
            f"{r.writer_core_busy:.0f}%",
            f"{r.load[0]:.1f}-{r.load[1]:.1f}",
            f"{dd:.0f}",
            f"{astro:.0f}",
            f"{r.mb_s / dd:.0%}",
            f"{r.mb_s / astro:.1f}x",
        )
    console.print(table)
    console.print(
        f"writer stage alone, unpaced, same cubes and volume: gozen {ours:.0f} MB/s, astropy {astro:.0f} MB/s "
        f"({ours / astro:.1f}x); dd {dd:.0f} MB/s ({dd_mb / 1000:.1f} GB, bs=4M conv=fdatasync)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["cpu", "disk"], default="cpu")
    ap.add_argument("--chips", type=int, nargs="*", help="chip counts to try (disk: the first with 0 drops wins)")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--ring-seconds", type=float, default=4.0, help="ring depth (config daq.ring_seconds)")
    ap.add_argument("--readout", choices=["light", "full"], default="light", help="config camera.readout")
    ap.add_argument("--volume", type=Path, help="where the DAQ volumes go (default: /dev/shm or the work dir)")
    ap.add_argument("--smoke", action="store_true", help="2 chips, one exposure, small baselines: a check it runs")
    ap.add_argument("--keep-logs", action="store_true", help="keep the programs' logs (the folder is printed)")
    ap.add_argument(
        "--warmup", type=int, default=WARMUP, help="exposures before the measured ones, not counted (see WARMUP)"
    )
    args = ap.parse_args()
    dd_mb, baseline_files = 2048, 8
    if args.smoke:
        args.chips, args.seconds, dd_mb, baseline_files = [2], FRAMES / FPS, 64, 1
    chips = args.chips or ([84] if args.mode == "cpu" else [84, 72, 64, 56, 48, 40, 32])
    base = args.volume or (SHM_DIR if args.mode == "cpu" else Path.cwd() / "var")
    base.mkdir(parents=True, exist_ok=True)
    cfg = Config.model_validate({"camera": {"readout": args.readout}})
    logs = contextlib.nullcontext(tempfile.mkdtemp(prefix="gozen-bench-")) if args.keep_logs else None
    with logs or tempfile.TemporaryDirectory(prefix="gozen-bench-") as t, tempfile.TemporaryDirectory(dir=base) as v:
        tmp, vol = Path(t), Path(v)
        if args.keep_logs:
            console.print(f"logs in {tmp}")
        rows = []
        for c in chips:
            run_dir = tmp / f"c{c}"
            run_dir.mkdir()
            r = run_pipeline(
                run_dir,
                vol,
                c,
                args.seconds,
                args.writers,
                args.ring_seconds,
                args.readout,
                0 if args.smoke else args.warmup,
            )
            console.print(
                f"{c} chips: {r.mb_s:.0f} MB/s, {r.frames_missing} missing, {r.frames_dropped} dropped "
                f"(in the warm-up before: {r.warmup_dropped} dropped)"
            )
            rows.append(r)
            shutil.rmtree(vol / "vol1", ignore_errors=True)
            shutil.rmtree(vol / "vol2", ignore_errors=True)
            for ring in SHM_DIR.glob("gozen-*-bench-*.ring"):
                ring.unlink()
            if args.mode == "disk" and r.frames_missing == 0 and r.frames_dropped == 0:
                break
        if args.mode == "disk" and not args.smoke:
            dd_mb = int(min(16384, max(2048, rows[-1].bytes / 1e6)))
        dd = dd_mb_s(vol, dd_mb)
        astro = astropy_mb_s(vol, baseline_files, cfg)
        ours = gozen_writer_mb_s(vol, baseline_files, cfg)
    report(args.mode, args.readout, rows, dd, dd_mb, astro, ours)


if __name__ == "__main__":
    main()
