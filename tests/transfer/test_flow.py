"""The whole data flow under real supervisord, on disks kept small: exposures -> storage -> archive -> freed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gozen.db.engine import make_engine
from gozen.db.tables import daq_files, exports, files, replicas
from tests.conftest import WAIT_S, Fleet, free_port, run_gozen, start_fleet, wait_until

NODE_QUOTA = 700_000  # about two files: the nodes cannot hold the night without the archive and retention


@pytest.fixture(scope="module")
def observatory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("flow")
    host = {
        "name": "obs1",
        "roles": ["daq", "buffer", "storage", "archive"],
        "supervisor": {"port": free_port()},
    }
    extra = {
        "camera": {"chips": [111, 112, 113, 114], "width_px": 200, "height_px": 100},
        # Lead time and frame timeout for a busy machine (see tests/daq/test_pipeline.py).
        "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 5.0, "frame_timeout_s": 20},
        "daq_volumes": [{"name": "vol1", "path": "daq/vol1", "max_bytes": 100_000}],  # always over: janitor works
        "storage_nodes": [{"name": f"node{i}", "path": f"storage/node{i}", "max_bytes": NODE_QUOTA} for i in range(3)],
        "transfer": {
            "poll_s": 0.2,
            "retry_base_s": 0.5,
            "node_reserve_bytes": 0,
            "janitor_every_s": 1,
            "retention_every_s": 1,
        },
        "archive": {"dest": "smoka", "min_age_s": 0, "every_s": 1},
    }
    fleet = start_fleet(tmp, [host], down=[], extra=extra)
    for p in ("transfer:push", "transfer:pop-01", "transfer:export", "transfer:retention", "archive:simulator"):
        fleet.wait_state("obs1", p, "RUNNING")
    yield fleet
    fleet.stop()


def test_every_file_ends_archived_and_the_disks_stay_within_their_limits(observatory: Fleet) -> None:
    r = run_gozen(observatory, "daq", "expose", "--object", "FIELD-1", "--frames", "6", "--count", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    engine = make_engine(observatory.cfg.database_url)

    def count(q: object) -> int:
        with engine.connect() as conn:
            return int(conn.execute(q).scalar_one())  # type: ignore[call-overload]

    n = count(select(func.count()).select_from(daq_files).where(daq_files.c.state == "written"))
    assert n == 12
    acked = select(func.count()).select_from(exports).where(exports.c.state == "acknowledged")
    wait_until(lambda: count(acked) == n, 2 * WAIT_S, 0.5, "every file acknowledged by the archive", observatory.dump)
    daq_left = select(func.count()).select_from(files).where(files.c.daq_state == "present")
    wait_until(lambda: count(daq_left) == 0, WAIT_S, 0.5, "the janitor to free the DAQ volume", observatory.dump)
    with engine.connect() as conn:
        held = dict(
            conn.execute(
                select(replicas.c.node, func.sum(files.c.size_bytes))
                .join(files, files.c.id == replicas.c.file_id)
                .where(replicas.c.state == "verified")
                .group_by(replicas.c.node)
            ).all()
        )
    assert all(b <= NODE_QUOTA for b in held.values()), held
    on_nodes = sum(p.stat().st_size for p in (observatory.cfg.data_dir / "storage").rglob("*.fits"))
    assert on_nodes == sum(held.values())
    assert not list((observatory.cfg.data_dir / "daq").rglob("*.fits"))
    archive = observatory.cfg.data_dir / "smoka"
    assert len(list(archive.glob("*/*.fits"))) == n and list(archive.glob("*/receipts/*.json"))

    status = run_gozen(observatory, "transfer", "status")
    assert status.returncode == 0 and f"{n} acknowledged" in status.stdout, status.stdout + status.stderr
    audit = run_gozen(observatory, "audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    lost = next(line for line in audit.stdout.splitlines() if "files lost" in line)
    assert lost.split()[-1] == "0" and Path(archive).is_dir()
