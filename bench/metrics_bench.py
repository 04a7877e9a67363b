"""The time of one /metrics scrape on a night of a full Tomo-e camera (84 chips, an exposure every
10 s for 10 h: 302,400 files, 604,800 replicas, 302,400 exports) in SQLite, against the DAQ page's
overview of the same night measured in the same run. (H6; proposed as bench/metrics_scrape.py)

    .venv/bin/python bench/metrics_scrape.py [N_EXPOSURES] [DIR]
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import Engine, insert

from gozen.config import parse_config, tomoe_chip_ids
from gozen.daq.stats import daq_overview
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.db.tables import daq_files, exports, exposures, files, readout_reports, replicas
from gozen.metrics import GozenCollector

SIZE = 54_236_160


def seed(engine: Engine, n_exp: int) -> None:
    chips = tomoe_chip_ids()
    t0 = datetime.now(UTC) - timedelta(seconds=10 * n_exp)
    fid = 0
    with engine.begin() as c:
        for i in range(n_exp):
            at, x = t0 + timedelta(seconds=10 * i), i + 1
            recent = i >= n_exp - 60  # the last ten minutes: copies and the archive still to come
            c.execute(
                insert(exposures),
                [
                    {
                        "exp_id": x,
                        "state": "done",
                        "object": "F",
                        "data_type": "OBJECT",
                        "obs_mode": "m",
                        "filter": "none",
                        "project": "p",
                        "observer": "o",
                        "n_frames": 12,
                        "fps": 2.0,
                        "requested_at": at,
                        "start_at": at,
                        "end_at": at,
                    }
                ],
            )
            c.execute(
                insert(readout_reports),
                [
                    {
                        "exp_id": x,
                        "det_id": d,
                        "readout": "daq:readout-01",
                        "recognised": True,
                        "frames_read": 12,
                        "frames_missed": 0,
                        "frames_damaged": 0,
                        "frames_dropped": 0,
                        "created_at": at,
                        "daq_host": "daq0",
                    }
                    for d in chips
                ],
            )
            names = [(d, f"TMQ{d // 100}20260101{x:08d}{d % 100:02d}.fits") for d in chips]
            c.execute(
                insert(daq_files),
                [
                    {
                        "exp_id": x,
                        "det_id": d,
                        "state": "written",
                        "path": "/d/" + n,
                        "filename": n,
                        "daq_host": "daq0",
                        "daq_volume": "vol1",
                        "size_bytes": SIZE,
                        "checksum_xxh3": "0" * 16,
                        "frames_expected": 12,
                        "frames_written": 12,
                        "frames_missing": 0,
                        "frames_damaged": 0,
                        "naxis1": 2000,
                        "naxis2": 1128,
                        "naxis3": 12,
                        "writer": "w",
                        "created_at": at,
                    }
                    for d, n in names
                ],
            )
            c.execute(
                insert(files),
                [
                    {
                        "id": fid + k + 1,
                        "filename": n,
                        "exp_id": x,
                        "det_id": d,
                        "size_bytes": SIZE,
                        "checksum_xxh3": "0" * 16,
                        "daq_host": "daq0",
                        "daq_volume": "vol1",
                        "daq_path": "/d/" + n,
                        "daq_state": "present",
                        "registered_at": at,
                    }
                    for k, (d, n) in enumerate(names)
                ],
            )
            c.execute(
                insert(replicas),
                [
                    {
                        "file_id": fid + k + 1,
                        "node": node,
                        "state": "queued" if recent else "verified",
                        "attempts": 0,
                        "queued_at": at,
                        "verified_at": None if recent else at,
                    }
                    for k in range(len(chips))
                    for node in ("node1", "node2")
                ],
            )
            c.execute(
                insert(exports),
                [
                    {"file_id": fid + k + 1, "state": "packaged" if recent else "acknowledged", "packaged_at": at}
                    for k in range(len(chips))
                ],
            )
            fid += len(chips)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("exposures", type=int, nargs="?", default=3600, help="exposures of 84 chips (3600: 10 h at 10 s)")
    ap.add_argument("dir", type=Path, nargs="?", help="keep the seeded database here, to scrape it again")
    ap.add_argument("--smoke", action="store_true", help="a tiny night (tests/test_bench_smoke.py)")
    args = ap.parse_args()
    n_exp = 20 if args.smoke else args.exposures
    d = args.dir or Path(tempfile.mkdtemp(prefix="gozen-bench-metrics-"))
    cfg = parse_config({"data_dir": str(d), "archive": {"dest": str(d / "archive")}})
    engine = make_engine(cfg.database_url)
    if not (d / "seeded").exists():
        upgrade(engine)
        seed(engine, n_exp)
        (d / "seeded").touch()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GozenCollector(cfg, engine))
    times = []
    for _ in range(6):
        t = time.perf_counter()
        size = len(generate_latest(registry))
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    daq_overview(cfg, engine, datetime.now(UTC) - timedelta(days=1))
    baseline = time.perf_counter() - t
    steady = sorted(times[1:])[len(times[1:]) // 2]
    print(f"first scrape {times[0]:.3f} s (sums the settled night once)")
    print(f"scrape (median of 5) {steady:.3f} s, {size} bytes")
    print(f"baseline: the DAQ page's overview of the same night {baseline:.3f} s; ratio {steady / baseline:.3f}x")


if __name__ == "__main__":
    main()
