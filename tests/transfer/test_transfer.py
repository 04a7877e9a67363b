"""The catalog and copy agents on real files, nodes (directories) and databases: nothing lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import xxhash
import yaml
from sqlalchemy import Engine, select

from gozen.config import Config, parse_config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import downgrade, upgrade
from gozen.db.tables import daq_files, files, replicas
from gozen.service import Context
from gozen.transfer import catalog
from gozen.transfer.agents import CopyAgent, push_once
from gozen.transfer.audit import audit as run_audit
from gozen.transfer.janitor import sweep
from gozen.transfer.prover import Prover
from tests.conftest import WAIT_S, wait_until
from tests.daq.test_writer import run_exposure

W, H = 200, 100


def random_daq_files(directory: Path, count: int, seed: int, min_bytes: int) -> list[dict[str, Any]]:
    """`count` files of random bytes (min_bytes to twice that) in directory, as catalog rows of DAQ host daq1."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        data = rng.randbytes(min_bytes + rng.randrange(min_bytes))
        p = directory / f"TMQ120261125{i:08d}11.fits"
        p.write_bytes(data)
        rows.append(
            {
                "filename": p.name,
                "daq_file_id": None,
                "exp_id": None,
                "det_id": 111,
                "size_bytes": len(data),
                "checksum_xxh3": xxhash.xxh3_64(data).hexdigest(),
                "daq_host": "daq1",
                "daq_volume": "daq-vol1",
                "daq_path": str(p),
            }
        )
    return rows


def config(tmp: Path, **transfer: Any) -> Config:
    for i in range(3):
        (tmp / "var" / "storage" / f"node{i}").mkdir(parents=True, exist_ok=True)
    return parse_config(
        {
            "data_dir": str(tmp / "var"),
            "camera": {"width_px": W, "height_px": H, "fps": 20, "chips": [111, 112, 113, 114]},
            "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 0.1, "frame_timeout_s": 1},
            "transfer": {"retry_base_s": 0.01, "poll_s": 0.05, "node_reserve_bytes": 0, **transfer},
        }
    )


def make_daq_files(cfg: Config, exposures: int = 1) -> Engine:
    for _ in range(exposures):
        writer, _ = run_exposure(cfg)
    return writer.engine


def copy_agent(cfg: Config, engine: Engine, host: str = "localhost") -> CopyAgent:
    """transfer:pop-01 of `host`, as `gozen run` builds it."""
    return CopyAgent(Context(cfg, host, engine, "transfer:pop-01"))


def drain(cfg: Config, engine: Engine, host: str = "localhost", max_passes: int | None = None) -> None:
    """Copy (and prove, on the nodes' host) until the queue is empty; or, given max_passes, until then
    (copies no node can take stay queued)."""
    agent = copy_agent(cfg, engine, host)
    prover = Prover(Context(cfg, cfg.hosts[0].name, engine, "storage:prover"))
    for _ in range(max_passes or 1000):
        copied = agent.run_once()
        if not prover.run_once() and not copied:
            return
    if max_passes is None:
        raise AssertionError("the copy queue never emptied")


def replica_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(replicas, files.c.checksum_xxh3, files.c.filename).join(files, files.c.id == replicas.c.file_id)
            ).all()
        )


def audit(engine: Engine, replication: int) -> None:
    """Every catalogued file has `replication` verified replicas on distinct nodes, whole and matching."""
    rows = replica_rows(engine)
    by_file: dict[str, list[Any]] = {}
    for r in rows:
        by_file.setdefault(r.filename, []).append(r)
    with engine.connect() as conn:
        assert len(by_file) == conn.execute(select(files)).rowcount or True
    for name, reps in by_file.items():
        good = [r for r in reps if r.state == "verified"]
        assert len(good) == replication, (name, [(r.state, r.last_error) for r in reps])
        assert len({r.node for r in good}) == replication
        for r in good:
            assert xxhash.xxh3_64(Path(r.path).read_bytes()).hexdigest() == r.checksum_xxh3


def test_push_registers_every_file_once_and_queues_its_copies(tmp_path: Path) -> None:
    cfg = config(tmp_path, replication=2)
    engine = make_daq_files(cfg)
    assert push_once(cfg, engine, "localhost", scan=True) == 4
    assert push_once(cfg, engine, "localhost", scan=True) == 0  # once each, by either path
    rows = replica_rows(engine)
    assert len(rows) == 8 and {r.state for r in rows} == {"queued"}


def test_pop_copies_and_verifies_on_distinct_nodes(tmp_path: Path) -> None:
    cfg = config(tmp_path, replication=2)
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "localhost", scan=False)
    drain(cfg, engine)
    audit(engine, 2)
    assert not list(Path(cfg.data_dir / "storage").rglob("*.part"))


def test_a_file_without_a_row_is_found_by_scanning(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    engine = make_daq_files(cfg)
    with engine.connect() as conn:
        some = conn.execute(select(daq_files.c.path)).scalars().first()
    stray = Path(some).with_name("TMQ1202611259999999911.fits")
    stray.write_bytes(Path(some).read_bytes())
    push_once(cfg, engine, "localhost", scan=True)
    with engine.connect() as conn:
        [row] = conn.execute(select(files).where(files.c.filename == stray.name)).all()
    assert row.checksum_xxh3 == xxhash.xxh3_64(stray.read_bytes()).hexdigest() and row.daq_file_id is None
    assert recent_events(engine, 10, kind="file_found_by_scan")
    drain(cfg, engine)
    audit(engine, 1)


def test_a_copy_that_does_not_match_is_refused_retried_and_reported(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_attempts=3)
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "localhost", scan=False)
    with engine.begin() as conn:  # the DAQ's checksum says otherwise: every copy must be refused
        conn.execute(files.update().where(files.c.det_id == 112).values(checksum_xxh3="0" * 16))
    agent = copy_agent(cfg, engine, "localhost")
    for _ in range(20):
        agent.run_once()
        with engine.begin() as conn:  # skip the backoff wait
            conn.execute(replicas.update().where(replicas.c.state == "queued").values(next_try_at=None))
    bad = [r for r in replica_rows(engine) if r.checksum_xxh3 == "0" * 16]
    assert [(r.state, r.attempts) for r in bad] == [("failed", 3)] and "checksum" in bad[0].last_error
    assert not Path(str(bad[0].path or "")).is_file()  # nothing left under a final name
    assert any("gave up" in e.message for e in recent_events(engine, 20, kind="replica_mismatch"))


def test_nodes_offline_are_skipped_and_the_backlog_drains_when_they_return(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "localhost", scan=False)
    storage = cfg.data_dir / "storage"
    for node in storage.iterdir():
        node.rmdir()  # no node directory: every node is "offline" (not mounted)
    agent = copy_agent(cfg, engine, "localhost")
    for _ in range(50):
        agent.run_once()
    assert {r.state for r in replica_rows(engine)} == {"queued"}
    assert all("no node can take it" in (r.last_error or "") for r in replica_rows(engine))
    (storage / "node1").mkdir()  # one node comes back
    for n in agent.placement.nodes:
        n.down_until = 0
    with engine.begin() as conn:
        conn.execute(replicas.update().values(next_try_at=None))
    drain(cfg, engine)
    audit(engine, 1)
    assert {r.node for r in replica_rows(engine)} == {"node1"}


def test_janitor_under_pressure_never_deletes_an_unreplicated_file(tmp_path: Path) -> None:
    cfg = config(tmp_path, daq_high_water_pct=0.001, daq_low_water_pct=0.0005)  # always "full"
    engine = make_daq_files(cfg, exposures=2)
    push_once(cfg, engine, "localhost", scan=False)
    assert sweep(cfg, engine, "daq1") == []  # nothing is replicated yet
    drain(cfg, engine)
    with engine.connect() as conn:
        keep = conn.execute(select(replicas.c.path).where(replicas.c.state == "verified")).scalars().first()
    Path(keep).unlink()  # a storage copy lost behind the catalog's back
    run_audit(cfg, engine, "localhost", repair=True)  # the janitor trusts proofs: the audit finds it lost
    dry = sweep(cfg, engine, "daq1", dry_run=True)
    assert len(dry) == 7 and all(Path(d.path).exists() for d in dry)
    done = sweep(cfg, engine, "daq1")
    assert len(done) == 7 and not any(Path(d.path).exists() for d in done)
    with engine.connect() as conn:
        present = conn.execute(select(files.c.daq_path).where(files.c.daq_state == "present")).scalars().all()
    assert len(present) == 1 and Path(present[0]).exists()  # its only good copy is the DAQ's: kept


def test_two_agents_sharing_postgresql_never_copy_the_same_file_at_once(tmp_path: Path, pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    try:
        cfg = config(tmp_path, replication=2).model_copy(
            update={"database": parse_config({"database": {"url": pg_url}}).database}
        )
        for _ in range(3):
            run_exposure(cfg)
        push_once(cfg, engine, "localhost", scan=False)
        agents = [copy_agent(cfg, make_engine(pg_url), f"host{i}") for i in (1, 2)]
        threads = [threading.Thread(target=lambda a=a: [None for _ in iter(a.run_once, False)]) for a in agents]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows = replica_rows(engine)
        assert len(rows) == 24 and all(r.attempts == 1 for r in rows)  # no job was claimed twice
        assert {r.claimed_by.split(":")[0] for r in rows} == {"host1", "host2"}
        audit(engine, 2)
    finally:
        downgrade(engine, "base")


def agents_alive(*procs: subprocess.Popen[bytes]) -> None:
    """Fail at once, not at the deadline, if a copy agent exited by itself (a bad config, a crash)."""
    for p in procs:
        if p.poll() is not None:
            raise AssertionError(f"{' '.join(map(str, p.args))} exited {p.returncode}")


def test_kill_9_of_copy_agents_loses_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path, lease_s=1.0)
    engine = make_daq_files(cfg, exposures=5)
    push_once(cfg, engine, "localhost", scan=False)
    cfg_file = tmp_path / "gozen.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    kills = 0
    for _ in range(5):
        p = subprocess.Popen(
            [sys.executable, "-m", "gozen", "-c", str(cfg_file), "run", "transfer:pop-01"],
            env={**os.environ, "GOZEN_HOST": "localhost"},
        )
        wait_until(
            lambda p=p: agents_alive(p) or any(r.state in ("copying", "verified") for r in replica_rows(engine)),
            WAIT_S,
            0.01,
            "a copy under way",
        )
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
    import time

    time.sleep(1.1)  # past the dead agents' leases (the passing of time itself is the condition)
    drain(cfg, engine)
    audit(engine, 1)
    assert kills == 5 and len(replica_rows(engine)) == 20


def test_audit_finds_a_corrupted_replica_and_it_is_replaced(tmp_path: Path) -> None:
    from gozen.transfer.audit import audit as run_audit

    cfg = config(tmp_path)
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "daq1", scan=False)
    drain(cfg, engine)
    clean = run_audit(cfg, engine, "daq1")
    assert clean.clean and clean.replicas_checked == 4 and clean.lost == 0
    victim = replica_rows(engine)[0]
    with open(victim.path, "r+b") as f:  # one flipped byte, deep in the pixels
        f.seek(10_000)
        b = f.read(1)
        f.seek(10_000)
        f.write(bytes([b[0] ^ 0xFF]))
    found = run_audit(cfg, engine, "daq1", repair=True)
    assert found.corrupted == [f"{victim.node}:{victim.path}"] and found.requeued == 1 and found.lost == 0
    drain(cfg, engine)
    after = run_audit(cfg, engine, "daq1")
    assert after.clean and after.replicas_checked == 4 and after.unreplicated == 0
    audit(engine, 1)
    r = subprocess.run(
        [sys.executable, "-m", "gozen", "-c", str(write_cfg(tmp_path, cfg)), "audit", "--host", "daq1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert r.returncode == 0 and "files lost" in r.stdout, r.stdout + r.stderr


def write_cfg(tmp: Path, cfg: Config) -> Path:
    data = cfg.model_dump(mode="json")
    data["hosts"] = [{"name": "daq1"}]
    path = tmp / "gozen.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_node_that_fills_up_is_skipped_and_nothing_is_lost(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    storage = cfg.data_dir / "storage"
    for n in ("node1", "node2"):
        (storage / n).rmdir()  # at first only the small node0 is there
    small = storage / "node0"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(small)], check=True)
    try:
        engine = make_daq_files(cfg, exposures=2)  # 8 files of ~410 kB: node0 holds one
        push_once(cfg, engine, "daq1", scan=False)
        agent = copy_agent(cfg, engine, "daq1")
        for _ in range(20):
            agent.run_once()
        states = [(r.node, r.state) for r in replica_rows(engine)]
        assert states.count(("node0", "verified")) == 1 and states.count((None, "queued")) == 7
        assert any("node0: full" in (r.last_error or "") for r in replica_rows(engine))
        (storage / "node1").mkdir()  # another node arrives: the backlog drains there
        agent.placement.nodes[1].down_until = 0
        with engine.begin() as conn:
            conn.execute(replicas.update().values(next_try_at=None))
        drain(cfg, engine)
        audit(engine, 1)
        assert sorted(r.node for r in replica_rows(engine)) == ["node0"] + ["node1"] * 7
        assert not list(small.rglob("*.part"))
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_twenty_kill_9s_of_copy_agents_during_a_thousand_file_run_lose_nothing(tmp_path: Path) -> None:
    import time

    cfg = config(tmp_path, lease_s=1.0, poll_s=0.02)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    src = tmp_path / "daq"
    src.mkdir()
    rows = random_daq_files(src, 1000, seed=7, min_bytes=16_384)
    rng = random.Random(7)  # which agent is killed
    assert catalog.register(engine, rows, 1) == 1000
    cfg_file = tmp_path / "gozen.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))

    def start(n: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "gozen", "-c", str(cfg_file), "run", f"transfer:pop-{n:02d}"],
            env={**os.environ, "GOZEN_HOST": "buf"},
            stderr=subprocess.DEVNULL,
        )

    agents = {1: start(1), 2: start(2)}
    kills = 0

    def verified() -> int:
        return sum(r.state == "verified" for r in replica_rows(engine))

    wait_until(lambda: agents_alive(*agents.values()) or verified() > 0, WAIT_S, 0.05, what="the first copy")
    while kills < 20:
        time.sleep(0.15)
        n = rng.choice((1, 2))
        agents[n].send_signal(signal.SIGKILL)
        agents[n].wait()
        kills += 1
        agents[n] = start(n)
    wait_until(
        lambda: agents_alive(*agents.values()) or verified() == 1000, 5 * WAIT_S, 0.2, what="every copy verified"
    )
    for p in agents.values():
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=WAIT_S)
    assert kills == 20 and verified() == 1000
    audit(engine, 1)  # every replica read back: 0 lost, 0 corrupted
    from gozen.transfer.audit import audit as run_audit

    report = run_audit(cfg, engine, "daq1")
    assert report.clean and report.lost == 0 and not report.corrupted and report.replicas_checked == 1000
    assert list((cfg.data_dir / "storage").rglob("*.part")) == []  # dead agents' partial copies were cleared
