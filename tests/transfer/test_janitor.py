"""The janitor on a DAQ host that cannot see the storage hosts' disks: it frees space on recent proofs only."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from gozen.config import Config, parse_config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.tables import files, replicas
from gozen.db.types import utcnow
from gozen.service import Context
from gozen.transfer import catalog
from gozen.transfer.janitor import Janitor, sweep
from tests.transfer.test_transfer import random_daq_files

DAY = 86400.0


def fleet_data(tmp: Path, **transfer: Any) -> dict[str, Any]:
    """The README's hosts on one machine: daq1 (DAQ volume), store1 and store2 (a node each), head (archive)."""
    return {
        "data_dir": str(tmp / "var"),
        "hosts": [
            {"name": "daq1", "address": "127.0.0.11", "roles": ["daq", "monitors"]},
            {"name": "store1", "address": "127.0.0.12", "roles": ["storage"], "rsync_port": 8730},
            {"name": "store2", "address": "127.0.0.13", "roles": ["storage"], "rsync_port": 8730},
            {"name": "head", "address": "127.0.0.14", "roles": ["web", "queue", "couriers"]},
        ],
        "daq_volumes": [{"name": "daq-vol1", "path": "daq/vol1", "host": "daq1", "max_bytes": 1000}],
        "storage_nodes": [
            {"name": "node1", "path": "storage/node1", "host": "store1", "transport": "rsync"},
            {"name": "node2", "path": "storage/node2", "host": "store2", "transport": "rsync"},
        ],
        "transfer": {"replication": 2, **transfer},
        "archive": None,
    }


def setup(tmp: Path, n: int = 4, **transfer: Any) -> tuple[Config, Engine, list[dict[str, Any]]]:
    """The fleet's config, a catalog with n DAQ files on daq1 (2 copies queued each) and no node dirs here."""
    cfg = parse_config(fleet_data(tmp, **transfer))
    vol = cfg.data_dir / "daq/vol1"
    vol.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{tmp / 'gozen.db'}")
    upgrade(engine)
    rows = random_daq_files(vol, n, seed=7, min_bytes=20_000)
    assert catalog.register(engine, rows, 2) == n
    return cfg, engine, rows


def node_path(cfg: Config, node: str, filename: str) -> str:
    """Where the node's host keeps the replica (a path on *its* disk: not there on this machine)."""
    return str(cfg.data_dir / "storage" / node / filename[4:12] / filename)


def set_copies(cfg: Config, engine: Engine, filename: str, proofs: list[datetime | None]) -> None:
    """The file's replicas verified on node1, node2 ... with these proof times."""
    with engine.begin() as conn:
        fid = conn.execute(select(files.c.id).where(files.c.filename == filename)).scalar_one()
        ids = conn.execute(select(replicas.c.id).where(replicas.c.file_id == fid).order_by(replicas.c.id)).scalars()
        for i, (rid, proved) in enumerate(zip(ids, proofs, strict=True), 1):
            conn.execute(
                replicas.update()
                .where(replicas.c.id == rid)
                .values(
                    state="verified",
                    node=f"node{i}",
                    path=node_path(cfg, f"node{i}", filename),
                    verified_at=utcnow() - timedelta(days=30),
                    proved_at=proved,
                )
            )


def daq_states(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(files.c.filename, files.c.daq_state)).all())


def test_recent_proofs_free_the_daq_volume_on_a_host_that_cannot_see_the_nodes(tmp_path: Path) -> None:
    cfg, engine, rows = setup(tmp_path)
    assert cfg.archive is None  # no archive: the proofs alone free the DAQ volume
    assert not (cfg.data_dir / "storage").exists()  # daq1 sees none of the nodes' disks
    now = utcnow()
    for r in rows:
        set_copies(cfg, engine, r["filename"], [now - timedelta(hours=1), now - timedelta(days=6)])
    deleted = sweep(cfg, engine, "daq1")
    assert sorted(Path(d.path).name for d in deleted) == sorted(r["filename"] for r in rows)
    assert all(d.replicas == 2 for d in deleted)
    assert not any(Path(r["daq_path"]).exists() for r in rows)
    assert set(daq_states(engine).values()) == {"deleted"}
    assert len(recent_events(engine, 20, kind="daq_file_deleted")) == 4
    assert not recent_events(engine, 20, kind="daq_file_kept")


def test_old_or_missing_proofs_keep_the_daq_copy_and_say_why_once(tmp_path: Path) -> None:
    cfg, engine, rows = setup(tmp_path, proof_max_age_s=3600)
    now = utcnow()
    fresh, old, never, half = (r["filename"] for r in rows)
    set_copies(cfg, engine, fresh, [now - timedelta(minutes=5), now - timedelta(minutes=50)])
    set_copies(cfg, engine, old, [now - timedelta(hours=2), now - timedelta(days=8)])  # older than proof_max_age_s
    set_copies(cfg, engine, never, [None, None])  # verified, never proven
    set_copies(cfg, engine, half, [now, None])  # one proven copy of the two needed
    janitor = Janitor(Context(cfg, "daq1", engine, "transfer:janitor"))
    janitor.run_once()
    janitor.run_once()  # a second pass tells nothing again
    assert daq_states(engine) == {fresh: "deleted", old: "present", never: "present", half: "present"}
    assert all(Path(r["daq_path"]).exists() for r in rows if r["filename"] != fresh)
    kept = recent_events(engine, 20, kind="daq_file_kept")
    assert sorted(e.subject for e in kept) == sorted([old, never, half]), [(e.subject, e.message) for e in kept]
    why = {e.subject: e.message for e in kept}
    assert "2 verified replicas but 0 proven" in why[old] and "last proof 0.1 days ago" in why[old]
    assert "never proven" in why[never] and "1 proven" in why[half] and "gozen audit" in why[half]
    assert all(e.severity == "warning" and e.source == "transfer:janitor" for e in kept)


def test_a_proven_replica_that_is_the_daq_copy_itself_does_not_count(tmp_path: Path) -> None:
    data = fleet_data(tmp_path)
    data["storage_nodes"] = [{"name": "node1", "path": "storage/node1", "host": "daq1"}]  # a node on the DAQ host
    data["transfer"]["replication"] = 1
    cfg = parse_config(data)
    (cfg.data_dir / "daq/vol1").mkdir(parents=True)
    (cfg.data_dir / "storage/node1").mkdir(parents=True)
    engine = make_engine(f"sqlite:///{tmp_path / 'gozen.db'}")
    upgrade(engine)
    rows = random_daq_files(cfg.data_dir / "daq/vol1", 2, seed=3, min_bytes=20_000)
    catalog.register(engine, rows, 1)
    link = cfg.data_dir / "storage/node1" / rows[1]["filename"]
    link.symlink_to(rows[1]["daq_path"])  # the node "holds" it through a link to the DAQ file
    with engine.begin() as conn:  # an agent that "copied" each file onto itself, proven just now
        for r, path in zip(rows, [rows[0]["daq_path"], str(link)], strict=True):
            fid = conn.execute(select(files.c.id).where(files.c.filename == r["filename"])).scalar_one()
            conn.execute(
                replicas.update()
                .where(replicas.c.file_id == fid)
                .values(state="verified", node="node1", path=path, verified_at=utcnow(), proved_at=utcnow())
            )
    assert sweep(cfg, engine, "daq1") == []
    assert all(Path(r["daq_path"]).is_file() for r in rows)  # the only copies, kept
    kept = recent_events(engine, 10, kind="daq_file_kept")
    assert len(kept) == 2 and all("0 of 1 proven replicas besides the DAQ copy itself" in e.message for e in kept)
    # The same path on another host's node is on another disk: there, that copy counts.
    elsewhere = cfg.model_copy(update={"storage_nodes": [cfg.storage_nodes[0].model_copy(update={"host": "store1"})]})
    assert len(sweep(elsewhere, engine, "daq1")) == 2
