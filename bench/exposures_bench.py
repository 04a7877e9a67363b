"""The exposures browser's list with many exposures: one page's time, filtered and not, on SQLite and
PostgreSQL, against a baseline in the same process (the bare page of exposure ids, no counts).

    .venv/bin/python bench/exposures_bench.py [N_EXPOSURES] [--pg]

Rows are bulk-inserted as the DAQ, transfer:push, the copy agents and transfer:export leave them
(4 chips each, 2 verified replicas per file, files of every other night archived).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select, text

from gozen.config import Config
from gozen.daq.browse import ExposureFilter, list_exposures
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.db.tables import daq_files, exports, exposures, files, replicas
from gozen.web.app import create_app

CHIPS = [111, 112, 121, 122]
PER_NIGHT = 1000
BATCH = 5000


def seed(engine: Engine, n: int) -> None:
    t0 = datetime(2026, 1, 1, 11, tzinfo=UTC)
    exp_rows, df_rows, f_rows, r_rows, x_rows = [], [], [], [], []
    fid = rid = 0
    for i in range(1, n + 1):
        start = t0 + timedelta(days=i // PER_NIGHT, seconds=30 * (i % PER_NIGHT))
        exp_rows.append(
            {"exp_id": i, "state": "done", "object": f"FIELD-{i % 500:03d}",
             "data_type": "OBJECT" if i % 10 else "FLAT", "obs_mode": "high-cadence", "filter": "none",
             "project": "survey", "observer": "bench", "n_frames": 12, "fps": 2.0,
             "recipe_name": f"Recipe {i % 50}", "requested_at": start, "start_at": start,
             "end_at": start + timedelta(seconds=6), "finished_at": start + timedelta(seconds=20), "chips": CHIPS}
        )  # fmt: skip
        for det in CHIPS:
            fid += 1
            name = f"TMQ{det // 100}20260101{i:08d}{det % 100:02d}.fits"
            df_rows.append(
                {"id": fid, "exp_id": i, "det_id": det, "state": "written", "path": f"/daq/{name}", "filename": name,
                 "daq_host": "daq0", "daq_volume": "vol1", "size_bytes": 54_236_160, "checksum_xxh3": f"{fid:016x}",
                 "frames_expected": 12, "frames_written": 12, "frames_missing": 0, "frames_damaged": 0, "naxis1": 2160,
                 "naxis2": 1200, "naxis3": 12, "writer": "daq:writer-01", "created_at": start}
            )  # fmt: skip
            f_rows.append(
                {"id": fid, "filename": name, "daq_file_id": fid, "exp_id": i, "det_id": det, "size_bytes": 54_236_160,
                 "checksum_xxh3": f"{fid:016x}", "daq_host": "daq0", "daq_volume": "vol1", "daq_path": f"/daq/{name}",
                 "daq_state": "present", "registered_at": start}
            )  # fmt: skip
            for node in ("node0", "node1"):
                rid += 1
                r_rows.append(
                    {"id": rid, "file_id": fid, "node": node, "path": f"/{node}/{name}", "state": "verified",
                     "attempts": 1, "queued_at": start, "verified_at": start, "proved_at": start}
                )  # fmt: skip
            if (i // PER_NIGHT) % 2 == 0:
                x_rows.append(
                    {"file_id": fid, "state": "acknowledged", "package": "p", "night": "20260101",
                     "packaged_at": start, "exported_at": start, "acknowledged_at": start}
                )  # fmt: skip
    with engine.begin() as conn:
        tables = ((exposures, exp_rows), (daq_files, df_rows), (files, f_rows), (replicas, r_rows), (exports, x_rows))
        for table, rows in tables:
            for k in range(0, len(rows), BATCH):
                conn.execute(insert(table), rows[k : k + BATCH])
        conn.execute(text("ANALYZE"))


def per_row(engine: Engine) -> None:
    """The page read row by row: the exposures, then each one's counts in three queries of its own."""
    with engine.connect() as conn:
        ids = conn.execute(select(exposures.c.exp_id).order_by(exposures.c.exp_id.desc()).limit(50)).scalars().all()
        for i in ids:
            conn.execute(select(func.count(), func.sum(daq_files.c.size_bytes)).where(daq_files.c.exp_id == i)).one()
            # The catalog reached as the browser reaches it (daq_files.exp_id is indexed, files.exp_id not).
            of_exp = (
                select(files.c.id)
                .join(daq_files, daq_files.c.filename == files.c.filename)
                .where(daq_files.c.exp_id == i)
            )
            conn.execute(
                select(func.count()).where(replicas.c.file_id.in_(of_exp), replicas.c.state == "verified")
            ).one()
            conn.execute(
                select(exports.c.state, func.count()).where(exports.c.file_id.in_(of_exp)).group_by(exports.c.state)
            ).all()


def best_ms(fn: Callable[[], Any], repeat: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def run(url: str, n: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    t = time.perf_counter()
    seed(engine, n)
    print(f"{engine.dialect.name}: seeded {n} exposures x {len(CHIPS)} chips in {time.perf_counter() - t:.1f} s")
    cfg = Config(database={"url": url}, transfer={"replication": 2})
    base = best_ms(lambda: per_row(engine))
    print(f"  baseline, per-row queries (50 exposures, 3 count queries each): {base:.1f} ms")
    last_night = (datetime(2026, 1, 1) + timedelta(days=max(n // PER_NIGHT - 1, 0))).date()
    cases = {
        "first page (50)": ExposureFilter(),
        "page of 200": ExposureFilter(limit=200),
        "deep page (before=100)": ExposureFilter(before=100),
        f"night {last_night}": ExposureFilter(night=last_night),
        "first night (oldest)": ExposureFilter(night=datetime(2026, 1, 1).date()),
        "object contains 'field-042'": ExposureFilter(object="field-042"),
        "recipe 'Recipe 7'": ExposureFilter(recipe="Recipe 7"),
        "data_type FLAT + state done": ExposureFilter(data_type="FLAT", state="done"),
        "object matching none (whole table read)": ExposureFilter(object="no such field"),
    }
    for name, f in cases.items():
        ms = best_ms(lambda f=f: list_exposures(cfg, engine, f))
        rows = list_exposures(cfg, engine, f).rows
        assert rows or "none" in name, name
        print(f"  {name}: {ms:.1f} ms ({len(rows)} rows; baseline / this: {base / ms:.0f}x)")
    client = TestClient(create_app(cfg, engine))
    for path in ("/exposures", "/api/exposures", "/exposures?limit=200", f"/exposures/{n // 2}"):
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)
        ms = best_ms(lambda path=path: client.get(path))
        print(f"  GET {path}: {ms:.1f} ms (baseline / this: {base / ms:.0f}x)")
    engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("n", type=int, nargs="?", default=20_000)
    p.add_argument("--pg", action="store_true", help="on a scratch database of the local PostgreSQL")
    p.add_argument("--smoke", action="store_true", help="200 exposures (tests/test_bench_smoke.py)")
    a = p.parse_args()
    if a.smoke:
        a.n = 200
    if a.pg:
        from tests.conftest import scratch_pg_database

        with scratch_pg_database() as url:
            run(url, a.n)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{Path(tmp) / 'bench.db'}", a.n)


if __name__ == "__main__":
    sys.exit(main())
