"""How much disk the simulated observatory (`gozen up` with no config) takes over time.

Runs the simulated observatory in a data dir of its own for N minutes and prints, every
interval, the bytes each part holds (DAQ volumes, storage nodes, archive, database, logs,
rings) and at the end the growth rate, overall and over the second half (the steady state):

    .venv/bin/python bench/demo_disk_bench.py --minutes 120            # the README's 2-hour figure
    .venv/bin/python bench/demo_disk_bench.py --minutes 10 --every-s 60
    .venv/bin/python bench/demo_disk_bench.py --smoke                  # 12 s, for CI

By default the built-in simulated default is used with only its ports changed to free ones
(so the run does not collide with another observatory on this machine); `--default-ports`
runs it exactly as `./dev up` does (GOZEN_DATA_DIR only).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

GiB = 2**30
BUDGET_GB = 8.0  # the README's promise for ./var (see the README's simulated observatory)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def du_bytes(path: Path) -> int:
    """Bytes allocated under path (like `du -s -B1`); files vanishing meanwhile are skipped."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def parts(data_dir: Path, shm_dir: Path) -> dict[str, Path | list[Path]]:
    """The directories measured, by part; `other` is whatever else is under data_dir."""
    out: dict[str, Path | list[Path]] = {}
    for sub in ("daq", "storage"):
        for p in sorted((data_dir / sub).glob("*")):
            out[f"{sub}/{p.name}"] = p
    out["archive"] = data_dir / "archive"
    out["db"] = sorted(data_dir.glob("gozen.db*"))
    out["log"] = data_dir / "log"
    out["run"] = data_dir / "run"
    out["shm"] = shm_dir
    return out


def measure(data_dir: Path, shm_dir: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for name, where in parts(data_dir, shm_dir).items():
        paths = where if isinstance(where, list) else [where]
        sizes[name] = sum(du_bytes(p) for p in paths)
    everything = du_bytes(data_dir)
    sizes["other"] = max(0, everything - sum(v for k, v in sizes.items() if k != "shm"))
    sizes["total"] = everything + sizes["shm"]
    return sizes


def write_config(path: Path, data_dir: Path) -> None:
    """The built-in default, data_dir and ports aside."""
    alpaca = f"127.0.0.1:{free_port()}"
    data = {
        "data_dir": str(data_dir),
        "hosts": [{"name": "localhost", "supervisor": {"port": free_port()}}],
        "web": {"port": free_port()},
        "monitors": {
            "telescope": {"address": alpaca},
            "weather": {"address": alpaca},
            "safety_monitor": {"address": alpaca},
            "gpsd": {"port": free_port()},
        },
    }
    path.write_text(yaml.safe_dump(data))


def table_rows(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


def fmt(n: int) -> str:
    return f"{n / 2**20:8.0f}"


def report_row(t_s: float, sizes: dict[str, int], header: bool) -> None:
    cols = list(sizes)
    if header:
        print("   min " + " ".join(f"{c[-8:]:>8}" for c in cols) + "   (MiB)", flush=True)
    print(f"{t_s / 60:6.1f} " + " ".join(fmt(sizes[c]) for c in cols), flush=True)


def rate_gb_h(a: tuple[float, dict[str, int]], b: tuple[float, dict[str, int]], key: str) -> float:
    dt = b[0] - a[0]
    return (b[1].get(key, 0) - a[1].get(key, 0)) / 1e9 / (dt / 3600) if dt > 0 else 0.0


def summary(samples: list[tuple[float, dict[str, int]]], db: Path, budget_gb: float) -> None:
    first, last, mid = samples[0], samples[-1], samples[len(samples) // 2]
    peak = max(s["total"] for _, s in samples) / 1e9
    print(f"\npeak total: {peak:.2f} GB = {100 * peak / budget_gb:.0f}% of the {budget_gb:g} GB budget", flush=True)
    print(f"{'part':>12} {'end GB':>8} {'peak GB':>8} {'GB/h all':>9} {'GB/h 2nd half':>14}")
    for key in last[1]:
        peak = max(s.get(key, 0) for _, s in samples)
        print(
            f"{key:>12} {last[1][key] / 1e9:8.3f} {peak / 1e9:8.3f} "
            f"{rate_gb_h(first, last, key):9.3f} {rate_gb_h(mid, last, key):14.3f}"
        )
    rows = table_rows(db)
    if rows:
        print("\ndatabase rows: " + ", ".join(f"{k} {v}" for k, v in sorted(rows.items(), key=lambda kv: -kv[1])))


def run(args: argparse.Namespace) -> int:
    base = Path(args.dir or tempfile.mkdtemp(prefix="gozen-demo-disk-"))
    base.mkdir(parents=True, exist_ok=True)
    data_dir, shm_dir = base / "var", Path(tempfile.mkdtemp(prefix="gozen-demo-disk-", dir="/dev/shm"))
    env = {**os.environ, "GOZEN_DATA_DIR": str(data_dir), "GOZEN_SHM_DIR": str(shm_dir)}
    env.pop("GOZEN_CONFIG", None)
    cmd = [sys.executable, "-m", "gozen", "up"]
    if not args.default_ports:
        write_config(base / "gozen.yaml", data_dir)
        cmd[3:3] = ["--config", str(base / "gozen.yaml")]
    print(f"data dir {data_dir}, rings {shm_dir}; {' '.join(cmd)}", flush=True)
    with open(base / "up.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    samples: list[tuple[float, dict[str, int]]] = []
    t0 = time.monotonic()
    try:
        while True:
            t = time.monotonic() - t0
            sizes = measure(data_dir, shm_dir)
            samples.append((t, sizes))
            report_row(t, sizes, header=len(samples) == 1 or set(sizes) != set(samples[-2][1]))
            if t >= args.minutes * 60 or proc.poll() is not None:
                break
            time.sleep(min(args.every_s, max(1.0, args.minutes * 60 - t)))
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=120)
    if proc.returncode not in (0, -signal.SIGTERM, None) and len(samples) < 2:
        print(f"gozen up exited {proc.returncode}: see {base / 'up.log'}", file=sys.stderr)
        return 1
    summary(samples, data_dir / "gozen.db", args.budget_gb)
    print(f"rings left in {shm_dir} after the stop: {du_bytes(shm_dir) / 2**20:.0f} MiB")
    shutil.rmtree(shm_dir, ignore_errors=True)
    if not args.keep and not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"kept {base}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    ap.add_argument("--every-s", type=float, default=60.0, help="measure this often (default 60)")
    ap.add_argument("--dir", help="work here (default: a new temporary directory, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the data dir at the end")
    ap.add_argument("--default-ports", action="store_true", help="no config at all, as ./dev up (ports 8470, 9001...)")
    ap.add_argument("--budget-gb", type=float, default=BUDGET_GB, help="the budget compared with, GB")
    ap.add_argument("--smoke", action="store_true", help="12 s, measured every 4 s (CI)")
    args = ap.parse_args()
    if args.smoke:
        args.minutes, args.every_s = 0.2, 4.0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
