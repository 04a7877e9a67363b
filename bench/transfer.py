"""Benchmark: copy-and-verify DAQ-sized FITS files to a storage node, against `cp` and `rsync -a`.

Makes GB of 12-frame Tomo-e cubes (54 MB each) with gozen's writer, catalogues them, and
times one copy agent copying every file and checksumming what landed; in the same run,
`cp -r` and `rsync -a` of the same files to fresh directories. Caches are dropped before
each (when run as root), so every contender reads from the disk.

    .venv/bin/python bench/transfer.py [--gb 2] [--dir var/bench-transfer]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from cubes import PIXELS, CubeMaker
from rich.console import Console
from rich.table import Table

from gozen.config import parse_config
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.transfer import catalog
from gozen.transfer.agents import CopyAgent

console = Console(width=120)


def drop_caches() -> str:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "dropped"
    except OSError:
        return "kept (not root)"


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--dir", type=Path, default=Path("var/bench-transfer"))
    ap.add_argument("--workers", type=int, default=2, help="copy agents (config transfer.pop_workers)")
    args = ap.parse_args()
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
        CopyAgent(cfg, make_engine(cfg.database_url), "bench", f"transfer:pop-{i:02d}")
        for i in range(1, args.workers + 1)
    ]

    def gozen_copy() -> None:
        # transfer.pop_workers agents, as supervisord runs them (threads here: the copies and checksums
        # run in the kernel and in xxhash's C code).
        threads = [threading.Thread(target=lambda a=a: [None for _ in iter(a.work_once, False)]) for a in agents]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    results = []
    for label, fn in (
        (f"gozen: {args.workers} agents copy + verify (xxh3 of what landed)", gozen_copy),
        ("cp -r", lambda: subprocess.run(["cp", "-r", str(src), str(root / "cp")], check=True)),
        ("rsync -a", lambda: subprocess.run(["rsync", "-a", f"{src}/", str(root / "rsync")], check=True)),
    ):
        caches = drop_caches()
        seconds = timed(fn)
        results.append((label, total / 1e6 / seconds, caches))
    verified = sum(1 for r in catalog.backlog(engine)[0] for _ in range(r.verified))
    table = Table("until on disk (sync)", "MB/s", "vs cp", "caches", title=f"{n} files, {total / 1e9:.2f} GB on {root}")
    cp = results[1][1]
    for label, mb_s, caches in results:
        table.add_row(label, f"{mb_s:.0f}", f"{mb_s / cp:.2f}x", caches)
    console.print(table)
    rsync = results[2][1]
    console.print(f"gozen vs rsync -a: {results[0][1] / rsync:.2f}x; replicas verified: {verified} of {n}")
    shutil.rmtree(root, ignore_errors=True)
    if verified != n:
        sys.exit(1)


if __name__ == "__main__":
    main()
