"""transfer:retention on several storage hosts: never both copies of a file, and only on recent proofs."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from gozen.config import Config, parse_config
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.db.tables import files, replicas
from gozen.db.types import utcnow
from gozen.service import Context
from gozen.transfer.retention import Removal, Retention
from tests.transfer.test_archive_race import add_files


def two_hosts(tmp: Path, url: str, max_bytes: int) -> Config:
    """store1 holds node1, store2 node2, both with a small limit; no archive: a copy elsewhere makes it safe."""
    return parse_config(
        {
            "data_dir": str(tmp / "var"),
            "database": {"url": url},
            "hosts": [
                {"name": "daq1", "address": "127.0.0.11", "roles": ["daq"]},
                {"name": "store1", "address": "127.0.0.12", "roles": ["storage"], "rsync_port": 8730},
                {"name": "store2", "address": "127.0.0.13", "roles": ["storage"], "rsync_port": 8730},
            ],
            "daq_volumes": [{"name": "daq-vol1", "path": "daq/vol1", "host": "daq1"}],
            "storage_nodes": [
                {"name": f"node{i}", "path": f"storage/node{i}", "host": f"store{i}", "max_bytes": max_bytes}
                for i in (1, 2)
            ],
            "archive": None,
            "transfer": {"replication": 2},
        }
    )


def verified_per_file(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        q = (
            select(files.c.filename, replicas.c.state)
            .join(replicas, replicas.c.file_id == files.c.id)
            .where(replicas.c.state == "verified")
        )
        return Counter(name for name, _ in conn.execute(q))


def test_two_hosts_retention_racing_never_removes_both_copies_of_a_file(
    tmp_path: Path, pg_url: str, pg_engine: Engine
) -> None:
    cfg = two_hosts(tmp_path, pg_url, max_bytes=1000)  # far over: each wants every replica gone
    names = add_files(cfg, pg_engine, 0, 40)
    with pg_engine.begin() as conn:  # the DAQ copies are long gone: the nodes hold the only copies
        conn.execute(files.update().values(daq_state="deleted"))
    engines = [make_engine(pg_url) for _ in range(2)]
    sweeps = [
        Retention(Context(cfg, h, e, "transfer:retention")) for h, e in zip(("store1", "store2"), engines, strict=True)
    ]
    start = threading.Barrier(2)
    removed: list[list[Removal] | BaseException] = [[], []]

    def sweep(i: int) -> None:
        try:
            start.wait()
            removed[i] = sweeps[i].sweep()
        except BaseException as err:  # noqa: BLE001 - the test reports it
            removed[i] = err

    threads = [threading.Thread(target=sweep, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(isinstance(r, list) for r in removed), removed
    n = [len(r) for r in removed if isinstance(r, list)]
    assert sum(n) == 40, n  # every file lost one copy, whichever host removed it
    kept = verified_per_file(pg_engine)
    assert sorted(kept) == sorted(names) and set(kept.values()) == {1}  # a last copy, of every file
    on_disk = {p.name for p in (cfg.data_dir / "storage").rglob("*.fits")}
    assert on_disk == set(names)
    for e in engines:
        e.dispose()


def test_a_replica_stays_while_the_other_copy_has_no_recent_proof(tmp_path: Path, pg_url: str) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gozen.db'}")
    upgrade(engine)
    cfg = two_hosts(tmp_path, pg_url, max_bytes=1000)
    names = add_files(cfg, engine, 0, 4)
    with engine.begin() as conn:
        conn.execute(files.update().values(daq_state="deleted"))
        conn.execute(replicas.update().where(replicas.c.node == "node2").values(proved_at=utcnow() - timedelta(days=8)))
    store1 = Retention(Context(cfg, "store1", engine, "transfer:retention"))
    assert store1.sweep() == []  # node2's copies are not recently proven: node1's stay
    assert sum(verified_per_file(engine).values()) == 8
    store2 = Retention(Context(cfg, "store2", engine, "transfer:retention"))
    assert len(store2.sweep()) == 4  # node1's copies are: node2's may go
    assert verified_per_file(engine) == Counter(dict.fromkeys(names, 1))
