"""Benchmark: one full refresh of the process monitor over many supervisord hosts.

Starts HOSTS real supervisord instances on loopback, each with PROGRAMS programs (plus
gozen's event listener), then times `fetch_all` asking every host at once against the
same hosts asked one by one, in this one run. Target: a full concurrent refresh < 1 s.

    .venv/bin/python bench/process_monitor_bench.py [--hosts 40] [--programs 25] [--rounds 5]
    .venv/bin/python bench/process_monitor_bench.py --smoke   # 2 hosts x 3 programs: does it still run?
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from gozen.config import Host, parse_config
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.supervise.client import fetch_all
from gozen.supervise.render import render_supervisord_conf

console = Console(width=120)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_hosts(
    tmp: Path, n_hosts: int, n_programs: int, settle_s: float = 180
) -> tuple[list[subprocess.Popen[bytes]], object]:
    hosts = [
        {
            "name": f"bench-{i:02d}",
            "roles": [],
            "supervisor": {"port": port},
            "programs": [{"group": "work", "name": f"p{j:02d}", "command": "sleep 100000"} for j in range(n_programs)],
        }
        for i, port in enumerate(free_ports(n_hosts))
    ]
    cfg = parse_config({"data_dir": str(tmp), "hosts": hosts})
    cfg.log_dir.mkdir(parents=True)
    cfg.run_dir.mkdir(parents=True)
    upgrade(make_engine(cfg.database_url))  # the event listeners record every start
    procs = []
    for h in cfg.hosts:
        conf = cfg.run_dir / f"{h.name}.conf"
        conf.write_text(render_supervisord_conf(cfg, h, None, tmp))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    expected = n_hosts * (n_programs + 1)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("starting programs", total=expected)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            running = sum(p.state == "RUNNING" for h in fetch_all(cfg.hosts, timeout_s=5) for p in h.processes)
            progress.update(task, completed=running)
            if running == expected:
                break
            time.sleep(1)
        else:
            raise SystemExit(f"only {running} of {expected} programs came up")
    settle(settle_s)
    return procs, cfg


def settle(max_s: float = 180, idle_percent: float = 25) -> None:
    """Wait for the programs' start-up work to finish, so the figures measure the refresh alone."""
    import psutil

    deadline = time.monotonic() + max_s
    with console.status("waiting for the machine to settle"):
        while time.monotonic() < deadline and psutil.cpu_percent(interval=2) > idle_percent:
            pass


@contextlib.contextmanager
def blackholes(n: int) -> Iterator[list[Host]]:
    """Listening sockets that never accept: connections hang like a host that froze."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        socks.append(s)
    try:
        yield [
            # A password, so the client connects (and hangs) rather than stopping at a missing password file.
            Host(name=f"hung-{i}", address="127.0.0.1", supervisor={"port": s.getsockname()[1], "password": "unused"})
            for i, s in enumerate(socks)
        ]
    finally:
        for s in socks:
            s.close()


def timed(fn, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=40)
    ap.add_argument("--programs", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dead", type=int, default=4, help="hung hosts added in the last scenario")
    ap.add_argument("--dead-timeout", type=float, default=1.0)
    ap.add_argument("--smoke", action="store_true", help="2 hosts x 3 programs, 2 rounds, no settling: a check it runs")
    args = ap.parse_args()
    settle_s = 180.0
    if args.smoke:
        args.hosts, args.programs, args.rounds, args.dead, settle_s = 2, 3, 2, 1, 0.0
    with tempfile.TemporaryDirectory(prefix="gozen-bench-") as tmp:
        procs, cfg = start_hosts(Path(tmp), args.hosts, args.programs, settle_s)
        try:
            hosts = cfg.hosts  # type: ignore[attr-defined]
            n = sum(len(h.processes) for h in fetch_all(hosts))
            console.print(f"{len(hosts)} supervisord hosts, {n} programs on loopback; {args.rounds} rounds each")
            rows = []
            for label, tail in (
                ("states only (gozen ps, /api/processes)", 0),
                ("with 2 KB log tails (web page)", 2000),
            ):
                conc = timed(lambda t=tail: fetch_all(hosts, tail_bytes=t), args.rounds)
                seq = timed(lambda t=tail: fetch_all(hosts, tail_bytes=t, concurrent=False), args.rounds)
                rows.append((label, statistics.median(conc), statistics.median(seq)))
            # Hosts that accept a connection but never answer (a hung machine): the case concurrency is for.
            with blackholes(args.dead) as dead:
                with_dead = [*hosts, *dead]
                conc = timed(lambda: fetch_all(with_dead, timeout_s=args.dead_timeout), 1)
                seq = timed(lambda: fetch_all(with_dead, timeout_s=args.dead_timeout, concurrent=False), 1)
                rows.append((f"plus {args.dead} hung hosts ({args.dead_timeout:g} s timeout)", conc[0], seq[0]))
            table = Table(
                "full refresh of every host",
                "concurrent",
                "one by one",
                "ratio",
                "target < 1 s",
                title=f"median of {args.rounds} rounds (hung-host row: 1 round)",
            )
            for label, c, s in rows:
                verdict = "OK" if c < 1.0 else ("bounded by the timeout" if "hung" in label else "OVER")
                table.add_row(label, f"{c * 1000:.0f} ms", f"{s * 1000:.0f} ms", f"{s / c:.1f}x", verdict)
            console.print(table)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(timeout=60)


if __name__ == "__main__":
    main()
