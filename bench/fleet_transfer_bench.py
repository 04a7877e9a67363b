"""Benchmark: gozen's copies to two storage hosts' rsync daemons, against `rsync -a` to the same daemons.

Two real rsync daemons (gozen's own storage:rsyncd configuration: auth users, secrets file) on
127.0.0.12 and 127.0.0.13 serve node1 and node2. 40 Tomo-e cubes (54 MB each; --gb scales the
count) are catalogued on DAQ host daq1 with 2 copies each. gozen: copy agents of daq1 and each
storage host's storage:prover, in processes as supervisord runs them, timed until every replica is
verified (sent in fsynced rsync batches checked by their xxh3, then read back from each node's disk).
`rsync -a` of the same files to both daemons at once (one process per daemon, as many as agents),
timed until rsync exits and `sync` returns. Caches dropped before each (as root); median of the rounds.

    .venv/bin/python bench/fleet_transfer_bench.py [--gb 2.16] [--agents 2] [--batch 8] [--rounds 3] [--pg URL]
    .venv/bin/python bench/fleet_transfer_bench.py --smoke   # 4 small files, 1 round: does it still run?
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from cubes import PIXELS, CubeMaker, drop_caches
from rich.console import Console
from rich.table import Table

from gozen.config import Config, parse_config
from gozen.db.engine import make_engine
from gozen.db.migrate import downgrade, upgrade
from gozen.db.tables import replicas
from gozen.monitors.board import publish
from gozen.monitors.df import DfMonitor
from gozen.service import Context
from gozen.transfer import catalog
from gozen.transfer.agents import CopyAgent
from gozen.transfer.prover import Prover
from gozen.transfer.rsyncd import write_rsyncd_files

console = Console(width=130)
STORES = {"store1": "127.0.0.12", "store2": "127.0.0.13"}
PASSWORD = "bench-rsync-password"
CUBE_BYTES = PIXELS * 2 * 12
WORKER_LIMIT_S = 600


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def fleet(root: Path, url: str | None) -> Config:
    port = free_port("127.0.0.12")
    hosts: list[dict[str, Any]] = [{"name": "daq1", "address": "127.0.0.11", "roles": ["daq"]}]
    hosts += [{"name": h, "address": a, "roles": ["storage"], "rsync_port": port} for h, a in STORES.items()]
    cfg = parse_config(
        {
            "data_dir": str(root),
            "hosts": hosts,
            "daq_volumes": [{"name": "daq1-vol1", "path": "daq/vol1", "host": "daq1"}],
            "storage_nodes": [
                {"name": f"node{i}", "path": f"storage/node{i}", "host": f"store{i}", "transport": "rsync"}
                for i in (1, 2)
            ],
            "archive": None,
            "database": {"url": url},
            "transfer": {"replication": 2, "node_reserve_bytes": 0, "poll_s": 0.02, "rsync_password": PASSWORD},
        }
    )
    for n in cfg.storage_nodes:
        cfg.under_data_dir(n.path).mkdir(parents=True, exist_ok=True)
    return cfg


def make_files(cfg: Config, n: int, size: int | None) -> list[dict[str, Any]]:
    """n cubes written by gozen's writer (or, given size, files of random bytes) on daq1's volume."""
    night = cfg.under_data_dir(cfg.daq_volumes[0].path) / "20261125"
    night.mkdir(parents=True)
    maker = CubeMaker() if size is None else None
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = night / f"TMQ120261125{i + 1:08d}11.fits"
        if maker is not None:
            res = maker.write(path, fsync=False, seed=i).close(maker.scratch)
            nbytes, checksum = res.size_bytes, res.checksum_xxh3
        else:
            data = rng.bytes(size or 0)
            path.write_bytes(data)
            nbytes, checksum = len(data), xxhash.xxh3_64(data).hexdigest()
        rows.append(
            {
                "filename": path.name,
                "daq_file_id": None,
                "exp_id": None,
                "det_id": 111,
                "size_bytes": nbytes,
                "checksum_xxh3": checksum,
                "daq_host": "daq1",
                "daq_volume": "daq1-vol1",
                "daq_path": str(path),
            }
        )
    return rows


def start_daemons(cfg: Config) -> list[subprocess.Popen[bytes]]:
    procs = []
    for h in cfg.hosts:
        if h.rsync_port is None:
            continue
        conf = write_rsyncd_files(cfg, h)
        procs.append(subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}"]))
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((h.address, h.rsync_port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{h.name}'s rsync daemon did not start on {h.address}:{h.rsync_port}") from None
                time.sleep(0.05)
    return procs


def all_verified(engine: Any) -> bool:
    with engine.connect() as conn:
        left = conn.execute(replicas.select().where(replicas.c.state != "verified").limit(1)).first()
    return left is None


def worker(cfg: Config, host: str, program: str, batch: int, fsync: bool = True) -> None:
    """One gozen program (copy agent or prover) in its own process, until every replica is verified."""
    engine = make_engine(cfg.database_url)
    ctx = Context(cfg, host, engine, program)
    svc: CopyAgent | Prover
    if program.startswith("transfer:pop"):
        svc = CopyAgent(ctx)
        svc.batch_files = batch
        svc.rsync_fsync = fsync
    else:
        svc = Prover(ctx)
    deadline = time.monotonic() + WORKER_LIMIT_S
    while True:
        if not svc.run_once():
            if all_verified(engine):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{host} {program}: not every replica verified after {WORKER_LIMIT_S} s")
            time.sleep(0.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=40 * CUBE_BYTES / 1e9, help="data to copy (54 MB cubes)")
    ap.add_argument("--dir", type=Path, default=Path("var/bench-fleet-transfer"))
    ap.add_argument("--agents", type=int, default=2, help="copy agents on daq1 = rsync -a processes (one per node)")
    ap.add_argument(
        "--batch",
        type=lambda v: [int(b) for b in v.split(",")],
        default=[CopyAgent.batch_files],
        help="files per rsync run of an agent; several (8,1) compare them",
    )
    ap.add_argument(
        "--compare-fsync", action="store_true", help="also without rsync --fsync (the prover's fdatasync only)"
    )

    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pg", default=None, help="a PostgreSQL URL for the catalog (default: SQLite in --dir)")
    ap.add_argument("--smoke", action="store_true", help="4 files of 2 MB, 1 round, caches kept")
    args = ap.parse_args()
    size = None
    if args.smoke:
        args.rounds, size = 1, 2 * 2**20
    n = 4 if args.smoke else max(1, round(args.gb * 1e9 / CUBE_BYTES))
    root = args.dir.resolve()
    shutil.rmtree(root, ignore_errors=True)
    cfg = fleet(root, args.pg)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    with console.status(f"writing {n} files"):
        rows = make_files(cfg, n, size)
    total = sum(r["size_bytes"] for r in rows)
    catalog.register(engine, rows, 2)
    daemons = start_daemons(cfg)
    src = cfg.under_data_dir(cfg.daq_volumes[0].path)
    nodes = {n.name: cfg.under_data_dir(n.path) for n in cfg.storage_nodes}
    urls = [f"{cfg.node_rsync_url(n)}/rsync-a/" for n in cfg.storage_nodes]

    def gozen_reset() -> None:
        for h in STORES:  # each storage host's dfmonitor tells the agents its node's free space
            publish(engine, "storage:dfmonitor", DfMonitor(Context(cfg, h, engine, "storage:dfmonitor")).sample())
        for d in nodes.values():
            shutil.rmtree(d / "20261125", ignore_errors=True)
        with engine.begin() as conn:
            conn.execute(
                replicas.update().values(
                    state="queued",
                    node=None,
                    path=None,
                    attempts=0,
                    claimed_by=None,
                    claimed_at=None,
                    verified_at=None,
                    proved_at=None,
                    next_try_at=None,
                )
            )

    def gozen(batch: int, fsync: bool) -> Any:
        def copy() -> None:
            ctx = multiprocessing.get_context("fork")
            programs = [("daq1", f"transfer:pop-{i:02d}") for i in range(1, args.agents + 1)]
            programs += [(h, "storage:prover") for h in STORES]
            procs = [ctx.Process(target=worker, args=(cfg, h, prog, batch, fsync)) for h, prog in programs]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
                if p.exitcode != 0:
                    raise SystemExit(f"a gozen worker exited {p.exitcode}")

        return copy

    def rsync_reset() -> None:
        for d in nodes.values():
            shutil.rmtree(d / "rsync-a", ignore_errors=True)

    def rsync_copy() -> None:
        env = {**os.environ, "RSYNC_PASSWORD": PASSWORD}
        procs = [subprocess.Popen(["rsync", "-a", f"{src}/", url], env=env) for url in urls]
        if any(p.wait() != 0 for p in procs):
            raise SystemExit("rsync -a failed")

    rsync_label = f"rsync -a to both daemons ({len(urls)} processes), then sync"
    contenders = [
        (
            f"gozen: {args.agents} agents, batches of {b}{'' if fsync else ', rsync without --fsync'}; 2 provers",
            gozen_reset,
            gozen(b, fsync),
        )
        for b in args.batch
        for fsync in ([True, False] if args.compare_fsync else [True])
    ]
    contenders.append((rsync_label, rsync_reset, rsync_copy))
    seconds: dict[str, list[float]] = {c[0]: [] for c in contenders}
    caches = ""
    try:
        with console.status("") as status:
            for r in range(args.rounds):
                for label, reset, fn in contenders[r % len(contenders) :] + contenders[: r % len(contenders)]:
                    status.update(f"round {r + 1}/{args.rounds}: {label}")
                    reset()
                    caches = drop_caches(args.smoke)
                    t0 = time.perf_counter()
                    fn()
                    os.sync()
                    seconds[label].append(time.perf_counter() - t0)
        if not all_verified(engine):
            raise SystemExit("not every replica verified")
    finally:
        for d in daemons:
            d.terminate()
            d.wait()
    copied = 2 * total  # both contenders put every file on both nodes
    mb_s = {label: copied / 1e6 / statistics.median(t) for label, t in seconds.items()}
    table = Table(
        "until on disk; median of rounds",
        "MB/s",
        "vs rsync -a",
        "each round (MB/s)",
        title=f"{n} files x 2 copies, {copied / 1e9:.2f} GB to 2 rsync daemons; caches {caches}; {args.rounds} rounds",
    )
    for label, v in mb_s.items():
        rounds = " ".join(f"{copied / 1e6 / t:.0f}" for t in seconds[label])
        table.add_row(label, f"{v:.0f}", f"{v / mb_s[rsync_label]:.2f}x", rounds)
    console.print(table)
    if args.pg:
        downgrade(engine, "base")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
