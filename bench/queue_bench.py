"""Benchmark: choosing the next recipe among 10,000 queued ones, and the submit rate.

Submits N recipes with random targets, windows and constraints (through the same store
call the CLI and the HTTP API use), then times the queue server's choice: the first pass
(reading and parsing every recipe) and the steady state (the server keeps parsed recipes;
each pass asks which are queued, then orders and checks them). Target: a choice < 50 ms.
Baseline in the same run: the same N rows inserted with one executemany of the bare driver.

    .venv/bin/python bench/queue_bench.py [--recipes 10000] [--choices 20]
    .venv/bin/python bench/queue_bench.py --smoke   # 200 recipes, a few seconds: does it still run?
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from gozen.config import Site
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.queue import store
from gozen.queue.recipe import Recipe
from gozen.queue.scheduler import choose, sky_at

console = Console(width=120)


def recipe(rng: random.Random, i: int, now: datetime) -> Recipe:
    start = now + timedelta(minutes=rng.uniform(-120, 600))
    return Recipe.model_validate(
        {
            "name": f"bench {i:05d}",
            "priority": rng.choice(["low", "normal", "normal", "high"]),
            "window": {"not_before": start.isoformat(), "not_after": (start + timedelta(hours=3)).isoformat()},
            "constraints": {"min_alt_deg": rng.uniform(20, 60), "min_moon_sep_deg": 15},
            "steps": [
                {"slew": {"ra_deg": rng.uniform(0, 360), "dec_deg": rng.uniform(-30, 80)}},
                {"expose": {"object": f"F{i}", "frames": 12, "fps": 2, "count": 3}},
            ],
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", type=int, default=10_000)
    ap.add_argument("--choices", type=int, default=20)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (200 recipes, 3 choices): a check that it runs")
    args = ap.parse_args()
    if args.smoke:
        args.recipes, args.choices = 200, 3
    rng = random.Random(1)
    now = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    site = Site()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "queue.db"
        engine = make_engine(f"sqlite:///{db}")
        upgrade(engine)
        recipes = [recipe(rng, i, now) for i in range(args.recipes)]
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("submitting", total=len(recipes))
            t0 = time.perf_counter()
            for r in recipes:
                store.submit(engine, r, "bench", {})
                bar.advance(task)
            submit_s = time.perf_counter() - t0
        raw = sqlite3.connect(db)
        rows = [(f"x{i}", "n", "normal", 2, "queued", "p", "o", "{}", "2026-11-25", "b") for i in range(args.recipes)]
        t0 = time.perf_counter()
        with raw:
            raw.executemany(
                "INSERT INTO recipes (uuid, name, priority, priority_rank, state, project, observer, body, "
                "submitted_at, submitted_by) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
        raw_s = time.perf_counter() - t0
        with raw:
            raw.execute("DELETE FROM recipes WHERE uuid LIKE 'x%'")
        raw.close()

        cache = store.CandidateCache()
        t0 = time.perf_counter()
        pick = choose(cache.columns(engine), sky_at(site, now), site, safe=True)
        cold_ms = (time.perf_counter() - t0) * 1e3
        warm = []
        for k in range(args.choices):
            when = now + timedelta(seconds=2 * k)  # as the server polls (queue.poll_s)
            t0 = time.perf_counter()
            pick = choose(cache.columns(engine), sky_at(site, when), site, safe=True)
            warm.append((time.perf_counter() - t0) * 1e3)
        changed = []
        for k in range(5):  # a submission (or a recipe starting, ending) changes the queue
            store.submit(engine, recipe(rng, args.recipes + k, now), "bench", {})
            t0 = time.perf_counter()
            pick = choose(cache.columns(engine), sky_at(site, now), site, safe=True)
            changed.append((time.perf_counter() - t0) * 1e3)
        sky_ms = []
        for k in range(args.choices):
            t0 = time.perf_counter()
            sky_at(site, now + timedelta(minutes=k))
            sky_ms.append((time.perf_counter() - t0) * 1e3)
    table = Table("", "figure", title=f"queue: {args.recipes} recipes on SQLite")
    table.add_row("submit (validated, one transaction each)", f"{args.recipes / submit_s:.0f} recipes/s")
    table.add_row(
        "bare driver executemany, same rows",
        f"{args.recipes / raw_s:.0f} rows/s (submit = {raw_s / submit_s:.3f}x of it)",
    )
    table.add_row("choose, first pass (parse all)", f"{cold_ms:.0f} ms")
    table.add_row(
        "choose, steady state: median / max",
        f"{statistics.median(warm):.1f} / {max(warm):.1f} ms",
    )
    table.add_row(
        "choose, right after the queue changed: median / max",
        f"{statistics.median(changed):.1f} / {max(changed):.1f} ms",
    )
    table.add_row("  Sun and Moon at a new minute (astropy; cached within it)", f"{statistics.median(sky_ms):.1f} ms")
    table.add_row("each choice (ms)", " ".join(f"{w:.0f}" for w in warm))
    worst = statistics.median(changed)
    table.add_row(
        "target: a choice < 50 ms (medians)", "met" if max(statistics.median(warm), worst) < 50 else "NOT met"
    )
    table.add_row("picked", pick.name if pick else "none runnable")
    console.print(table)


if __name__ == "__main__":
    main()
