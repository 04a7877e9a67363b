"""Benchmark: copy-and-verify DAQ-sized FITS files to a storage node, against `cp` and `rsync -a`.

Makes GB of 12-frame Tomo-e cubes (54 MB each) with gozen's writer, catalogues them, and
times the copy agents copying every file, fsyncing it and checksumming what landed (read back
from the disk, its cached pages dropped); in the
same run, `cp -r` and `rsync -a` of the same files to fresh directories. After one untimed
warm-up copy, each round runs every contender in turn (order rotated), caches dropped before
each (when run as root), timed until synced; the table gives the median of the rounds.

    .venv/bin/python bench/transfer_bench.py [--gb 2] [--workers 2] [--rounds 3] [--dir var/bench-transfer]
    .venv/bin/python bench/transfer_bench.py --smoke   # 2 cubes, 1 round, caches kept: does it still run?
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from cubes import PIXELS, CubeMaker, drop_caches
from rich.console import Console
from rich.table import Table

from gozen.config import parse_config
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.db.tables import replicas
from gozen.service import Context
from gozen.transfer import catalog
from gozen.transfer.agents import CopyAgent

console = Console(width=120)


def make_files(src: Path, n: int) -> list[dict[str, object]]:
    maker = CubeMaker()
    rows = []
    day = src / "20261125"
    day.mkdir(parents=True)
    for i in range(n):
        name = f"TMQ120261125{i + 1:08d}11.fits"
        res = maker.write(day / name, fsync=False, seed=i).close(maker.scratch)
        rows.append(
            {
                "filename": name,
                "daq_file_id": None,
                "exp_id": None,
                "det_id": 111,
                "size_bytes": res.size_bytes,
                "checksum_xxh3": res.checksum_xxh3,
                "daq_host": "bench",
                "daq_volume": "vol1",
                "daq_path": str(res.path),
            }
        )
    return rows


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    """Until the data is on disk: cp and rsync leave it in the page cache, gozen fsyncs each replica."""
    t0 = time.perf_counter()
    fn()
    os.sync()
    return time.perf_counter() - t0


def warm_up(src: Path, scratch: Path) -> None:
    """One untimed copy of everything, synced and removed. On a VM the host caches the virtual disk
    (guest drop_caches cannot clear it) and allocates its blocks on first write: without this,
    whoever goes first pays for both, which measured as a 2-3x slower first round."""
    subprocess.run(["cp", "-r", str(src), str(scratch)], check=True)
    os.sync()
    shutil.rmtree(scratch)
    os.sync()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--dir", type=Path, default=Path("var/bench-transfer"))
    ap.add_argument("--workers", type=int, default=2, help="copy agents (config transfer.pop_workers)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each contender in turn, order rotated")
    ap.add_argument("--smoke", action="store_true", help="2 cubes, 1 round, caches kept: a check that it runs")
    args = ap.parse_args()
    if args.smoke:
        args.gb, args.rounds = 0.1, 1
    root = args.dir.resolve()
    shutil.rmtree(root, ignore_errors=True)
    src, node = root / "daq", root / "node0"
    node.mkdir(parents=True)
    cfg = parse_config(
        {
            "data_dir": str(root),
            "storage_nodes": [{"name": "node0", "path": str(node)}],
            "transfer": {"node_reserve_bytes": 0},
        }
    )
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    n = max(1, round(args.gb * 1e9 / (PIXELS * 2 * 12)))
    with console.status(f"writing {n} cubes"):
        rows = make_files(src, n)
    total = sum(r["size_bytes"] for r in rows)
    catalog.register(engine, rows, 1)
    agents = [
        CopyAgent(Context(cfg, "bench", make_engine(cfg.database_url), f"transfer:pop-{i:02d}"))
        for i in range(1, args.workers + 1)
    ]
    verified: list[int] = []

    def gozen_copy() -> None:
        # transfer.pop_workers agents, as supervisord runs them (threads here: the copies and checksums
        # run in the kernel and in xxhash's C code).
        threads = [threading.Thread(target=lambda a=a: [None for _ in iter(a.run_once, False)]) for a in agents]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        verified.append(sum(b.verified for b in catalog.backlog(engine)[0]))

    def gozen_reset() -> None:
        shutil.rmtree(node)
        node.mkdir()
        with engine.begin() as conn:
            conn.execute(
                replicas.update().values(
                    state="queued", node=None, path=None, attempts=0, claimed_by=None, verified_at=None
                )
            )

    def fresh(path: Path) -> Path:
        shutil.rmtree(path, ignore_errors=True)
        return path

    gozen_label = f"gozen: {args.workers} agent(s) copy + fsync + read back from disk + xxh3"
    contenders = [
        (gozen_label, gozen_reset, gozen_copy),
        (
            "cp -r",
            lambda: fresh(root / "cp"),
            lambda: subprocess.run(["cp", "-r", str(src), str(root / "cp")], check=True),
        ),
        (
            "rsync -a",
            lambda: fresh(root / "rsync"),
            lambda: subprocess.run(["rsync", "-a", f"{src}/", str(root / "rsync")], check=True),
        ),
    ]
    with console.status("warming up: one untimed copy"):
        warm_up(src, root / "scratch")
    seconds: dict[str, list[float]] = {c[0]: [] for c in contenders}
    caches = ""
    with console.status("") as status:
        for r in range(args.rounds):
            for label, reset, fn in contenders[r % 3 :] + contenders[: r % 3]:
                status.update(f"round {r + 1}/{args.rounds}: {label}")
                reset()
                caches = drop_caches(args.smoke)
                seconds[label].append(timed(fn))
    mb_s = {label: total / 1e6 / statistics.median(t) for label, t in seconds.items()}
    cp, rsync = mb_s["cp -r"], mb_s["rsync -a"]
    table = Table(
        "until on disk (sync); median of rounds",
        "MB/s",
        "vs cp",
        "vs rsync -a",
        "each round (MB/s)",
        title=f"{n} files, {total / 1e9:.2f} GB on {root}; caches {caches}; {args.rounds} rounds, order rotated",
    )
    for label, v in mb_s.items():
        rounds = " ".join(f"{total / 1e6 / t:.0f}" for t in seconds[label])
        table.add_row(label, f"{v:.0f}", f"{v / cp:.2f}x", f"{v / rsync:.2f}x", rounds)
    console.print(table)
    console.print(f"replicas verified in each round: {verified} of {n}")
    shutil.rmtree(root, ignore_errors=True)
    if any(v != n for v in verified):
        sys.exit(1)


if __name__ == "__main__":
    main()
