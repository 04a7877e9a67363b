"""Benchmark: the Monitors page with two days of status history at the default monitors.every_s (5 s).

Seeds a SQLite database with the simulated observatory's board (tests/web/test_monitors.py:observatory,
~40 keys every 5 s and the disks' 30 keys every 30 s: ~1.5 million history rows), serves the app on
127.0.0.1 and times GET /monitors for each range, the median of several requests. The baseline, in the
same process: only reading the raw history of the plotted keys over the same range (board.history, what
the page's plots did before they were thinned in the database), without drawing anything.

    .venv/bin/python bench/monitors_page_bench.py [--days 2] [--every 5] [--repeat 5]
    .venv/bin/python bench/monitors_page_bench.py --smoke   # an hour of history: does it still run?
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' seeding and server helpers

from gozen.db.engine import make_engine  # noqa: E402
from gozen.db.migrate import upgrade  # noqa: E402
from gozen.monitors.board import history  # noqa: E402
from gozen.web.monitors import time_range  # noqa: E402
from tests.conftest import free_port, web_section, write_config  # noqa: E402
from tests.web.served import served  # noqa: E402
from tests.web.test_monitors import observatory, seed_board  # noqa: E402


def seed_history(db: Path, now: datetime, days: float, every_s: float) -> int:
    """History rows written straight into SQLite (as the board's API stores them), oldest first: the disks
    every 30 s, everything else every `every_s`."""
    n = int(days * 86400 / every_s)
    rows = []
    for i in range(n):
        t = now - timedelta(seconds=(n - i) * every_s)
        text = t.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        disks_now = i % max(1, round(30 / every_s)) == 0
        for r in observatory(t, i, (n - i) * every_s):
            if disks_now or not r.key.startswith("df."):
                rows.append((r.key, json.dumps(r.value), text))
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany("INSERT INTO status_history (key, value, time) VALUES (?, ?, ?)", rows)
    conn.close()
    return len(rows)


def median_s(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--every", type=float, default=5.0, help="monitors.every_s")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.days, a.repeat = 1 / 24, 2
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(Path(tmp) / "gozen.yaml", {"data_dir": tmp, "web": web_section(free_port())})
        engine = make_engine(cfg.database_url)
        upgrade(engine)
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        rows = seed_history(Path(tmp) / "gozen.db", now, a.days, a.every)
        seed_board(engine, now, hours=0, every_s=a.every)  # the latest values, through the board's API
        print(f"seeded {rows:,} history rows ({a.days:g} days every {a.every:g} s) in {time.perf_counter() - t0:.1f} s")
        body = {}
        with served(cfg, engine) as url, httpx.Client(base_url=url, timeout=120) as client:
            ranges = (None, "1h", "6h", "24h", "night")
            for name in ranges:  # warm: the first reading of a range brings its rows into the OS's cache
                client.get("/monitors", params={"range": name} if name else {}).raise_for_status()
            for name in ranges:
                params = {"range": name} if name else {}
                page = median_s(lambda p=params: client.get("/monitors", params=p).raise_for_status(), a.repeat)
                body[name] = page
                print(f"GET /monitors{'?range=' + name if name else ' (default)'}: {1000 * page:.0f} ms")
            view = client.get("/api/monitors", params={"range": "24h"}).json()
        keys = [k for g in view["groups"] for p in g["plot"]["numbers"] for k in p["lines"]]
        keys += [k for g in view["groups"] for k in g["plot"]["bands"]]
        t_0, t_1 = time_range("24h", datetime.now(UTC), cfg.local_tz)
        raw = median_s(lambda: [history(engine, k, t_0, t_1) for k in keys], max(1, a.repeat // 2))
        print(
            f"baseline, the raw 24 h history of the {len(keys)} plotted keys read (nothing drawn): "
            f"{1000 * raw:.0f} ms; the whole 24 h page: {body['24h'] / raw:.2f}x that"
        )


if __name__ == "__main__":
    main()
