"""Benchmark: the status board at 50 keys x 1 Hz, on SQLite and on PostgreSQL.

For each database: how many one-second rounds of 50 readings `publish` writes per second
(latest values replaced and history appended, one transaction a round), against appending
the same 50 history rows with the bare DB-API driver (`executemany`, one transaction a
round: half the work, so the ratio is a floor);
then the latency of a consistent snapshot of the board (what the DAQ reads for each
exposure's headers and the safety monitor every few seconds), with a day of history behind it.

    .venv/bin/python bench/status_bench.py [--rounds 600] [--reads 300] [--pg postgresql://postgres@127.0.0.1/test]
    .venv/bin/python bench/status_bench.py --smoke   # tiny sizes, a few seconds: does it still run?
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.monitors.board import Reading, publish, snapshot

console = Console(width=120)
KEYS = 50


def readings(i: int) -> list[Reading]:
    return [Reading(f"bench.key{k:02d}", 20.0 + (i * 7 + k) % 13 / 10, "degC", 5.0) for k in range(KEYS)]


def raw_rounds(url: str, rounds: int) -> float:
    """Rounds per second inserting the same history rows through the bare driver."""
    now = datetime.now(UTC)
    rows = [(f"bench.key{k:02d}", "21.5", now) for k in range(KEYS)]
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute("PRAGMA journal_mode=WAL")
        t0 = time.perf_counter()
        for _ in range(rounds):
            with conn:
                conn.executemany("INSERT INTO status_history (key, value, time) VALUES (?, ?, ?)", rows)
        dt = time.perf_counter() - t0
        conn.close()
        return rounds / dt
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as pconn:
        t0 = time.perf_counter()
        for _ in range(rounds):
            with pconn.transaction(), pconn.cursor() as cur:
                cur.executemany("INSERT INTO status_history (key, value, time) VALUES (%s, %s::json, %s)", rows)
        return rounds / (time.perf_counter() - t0)


def measure(label: str, url: str, rounds: int, reads: int, history_rounds: int = 864) -> list[str]:
    engine = make_engine(url)
    upgrade(engine)
    start = datetime.now(UTC) - timedelta(days=1)
    with console.status(f"{label}: history behind the board (50 keys every 100 s, {history_rounds} rounds)"):
        for i in range(history_rounds):
            publish(engine, "bench", readings(10 * i), start + timedelta(seconds=100 * i))
    t0 = time.perf_counter()
    for i in range(rounds):
        publish(engine, "bench", readings(i))
    ours = rounds / (time.perf_counter() - t0)
    raw = raw_rounds(url, rounds)
    lat = []
    for _ in range(reads):
        t = time.perf_counter()
        snap = snapshot(engine)
        lat.append((time.perf_counter() - t) * 1e3)
        assert len(snap.values) == KEYS
    lat.sort()
    engine.dispose()
    return [
        label,
        f"{ours:.0f}",
        f"{ours * KEYS:.0f}",
        f"{ours:.0f}x",
        f"{raw:.0f}",
        f"{ours / raw:.2f}x",
        f"{statistics.median(lat):.2f}",
        f"{lat[int(0.99 * len(lat)) - 1]:.2f}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=600, help="publish rounds of 50 readings timed")
    ap.add_argument("--reads", type=int, default=300, help="snapshots timed")
    ap.add_argument(
        "--pg", default="postgresql://postgres@127.0.0.1:5432/test", help="server to make a scratch database on"
    )
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (20 rounds, 20 reads): a check that it runs")
    args = ap.parse_args()
    history = 864
    if args.smoke:
        args.rounds, args.reads, history = 20, 20, 10
    table = Table(
        "database",
        "rounds/s",
        "readings/s",
        "vs 1 Hz need",
        "bare driver rounds/s",
        "vs bare",
        "snapshot p50 ms",
        "p99 ms",
        title=f"status board: {KEYS} keys; publish = replace latest + append history, one transaction a round",
    )
    with tempfile.TemporaryDirectory() as tmp:
        table.add_row(*measure("SQLite (WAL)", f"sqlite:///{Path(tmp) / 'bench.db'}", args.rounds, args.reads, history))
    name = f"gozen_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = args.pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
        table.add_row(*measure("PostgreSQL", url, args.rounds, args.reads, history))
    finally:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    console.print(table)


if __name__ == "__main__":
    main()
