"""Copies across hosts: agents claim only what they can read; rsync batches fsynced and checked by their
xxh3 as they are read; storage:prover proves each copy from the node's disk, not the page cache."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import xxhash
from sqlalchemy import Engine, select

from gozen.config import Config, parse_config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import downgrade, upgrade
from gozen.db.tables import files, replicas
from gozen.db.types import utcnow
from gozen.monitors.board import publish
from gozen.monitors.df import DfMonitor
from gozen.service import Context
from gozen.transfer import catalog
from gozen.transfer.agents import CopyAgent
from gozen.transfer.copy import xxh3_from_disk, xxh3_of
from gozen.transfer.prover import Prover
from gozen.transfer.rsyncd import write_rsyncd_files
from tests.conftest import WAIT_S, fake_command, free_port, wait_until
from tests.transfer.test_transfer import random_daq_files

PASSWORD = "s3cret-rsync"
FAST = {"retry_base_s": 0.01, "retry_max_s": 0.2, "poll_s": 0.02, "node_reserve_bytes": 0, "max_attempts": 2}


def fleet_config(tmp: Path, hosts: list[dict[str, Any]], nodes: list[dict[str, Any]], **transfer: Any) -> Config:
    """Hosts on 127.0.0.1, each its own supervisord port; one data_dir (one machine plays every host)."""
    for i, h in enumerate(hosts):
        h.setdefault("supervisor", {"port": 19100 + i})
    cfg = parse_config(
        {
            "data_dir": str(tmp / "var"),
            "hosts": hosts,
            "daq_volumes": [
                {"name": f"{h['name']}-vol1", "path": f"daq/{h['name']}", "host": h["name"]}
                for h in hosts
                if "daq" in h["roles"]
            ],
            "storage_nodes": nodes,
            "archive": None,
            "transfer": {**FAST, "rsync_password": PASSWORD, **transfer},
        }
    )
    for n in cfg.storage_nodes:
        cfg.under_data_dir(n.path).mkdir(parents=True, exist_ok=True)
    return cfg


def daq_files_of(cfg: Config, host: str, count: int, seed: int, min_bytes: int = 50_000) -> list[dict[str, Any]]:
    """Random files on `host`'s DAQ volume, as catalog rows."""
    vol = next(v for v in cfg.daq_volumes if v.host == host)
    night = cfg.under_data_dir(vol.path) / "20261125"
    night.mkdir(parents=True, exist_ok=True)
    rows = random_daq_files(night, count, seed, min_bytes)
    for r in rows:
        r.update(daq_host=host, daq_volume=vol.name, filename=f"TMQ{seed}{r['filename'][4:]}")
        Path(r["daq_path"]).rename(night / r["filename"])
        r["daq_path"] = str(night / r["filename"])
    return rows


def agent(cfg: Config, engine: Engine, host: str, n: int = 1) -> CopyAgent:
    """transfer:pop-NN of `host`; the rsync nodes' free space published as their hosts' dfmonitor does."""
    for h in {cfg.host_of(n).name for n in cfg.storage_nodes if n.transport == "rsync"}:
        publish(engine, "storage:dfmonitor", DfMonitor(Context(cfg, h, engine, "storage:dfmonitor")).sample())
    return CopyAgent(Context(cfg, host, engine, f"transfer:pop-{n:02d}"))


def prover(cfg: Config, engine: Engine, host: str) -> Prover:
    return Prover(Context(cfg, host, engine, "storage:prover"))


def rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        q = select(replicas, files.c.filename, files.c.daq_host, files.c.checksum_xxh3)
        return list(conn.execute(q.join(files, files.c.id == replicas.c.file_id).order_by(replicas.c.id)).all())


def run_until_idle(*services: CopyAgent | Prover) -> None:
    for _ in range(500):
        if not [s for s in services if s.run_once()]:
            return
    raise AssertionError("still busy after 500 passes")


@pytest.fixture
def sqlite(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'gozen.db'}")
    upgrade(engine)
    return engine


class Daemons:
    """storage:rsyncd of every host with rsync_port: gozen's own conf (auth users, secrets file), real rsync."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cfg: Config) -> None:
        for h in cfg.hosts:
            if h.rsync_port is None:
                continue
            conf = write_rsyncd_files(cfg, h)
            self.procs.append(subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}"]))
            wait_until(lambda h=h: _answers(h.rsync_port), WAIT_S, 0.05, f"{h.name}'s rsync daemon")

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
            p.wait()


def _answers(port: int | None) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port or 0), 0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    d = Daemons()
    yield d
    d.stop()


STORE = {"name": "store1", "roles": ["storage"]}
NODE1 = {"name": "node1", "path": "storage/node1", "host": "store1", "transport": "rsync"}


# -- who claims what ----------------------------------------------------------------------------
def test_an_agent_never_claims_another_hosts_daq_file(tmp_path: Path, pg_url: str) -> None:
    nodes = [{"name": f"node{i}", "path": f"storage/node{i}"} for i in (1, 2)]  # mounted on both DAQ hosts
    daq_hosts = [
        {"name": "daq1", "roles": ["daq"], "chips": [111, 112]},
        {"name": "daq2", "roles": ["daq"], "chips": [113, 114]},
    ]
    cfg = fleet_config(tmp_path, daq_hosts, nodes)
    engine = make_engine(pg_url)
    upgrade(engine)
    try:
        for host, seed in (("daq1", 1), ("daq2", 2)):
            catalog.register(engine, daq_files_of(cfg, host, 6, seed), 2)
        run_until_idle(agent(cfg, make_engine(pg_url), "daq1"))
        mine = [r for r in rows(engine) if r.daq_host == "daq1"]
        theirs = [r for r in rows(engine) if r.daq_host == "daq2"]
        assert all(r.state == "verified" for r in mine) and len(mine) == 12
        assert all(r.state == "queued" and r.attempts == 0 for r in theirs), theirs  # never touched
        both = [agent(cfg, make_engine(pg_url), h, 2) for h in ("daq1", "daq2")]
        threads = [threading.Thread(target=run_until_idle, args=(a,)) for a in both]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = rows(engine)
        assert all(r.state == "verified" and r.attempts == 1 for r in done), done
        assert all(r.claimed_by.split(":")[0] == r.daq_host for r in done)  # each by its own host's agent
        assert all(r.proved_at is not None and xxh3_of(Path(r.path)) == r.checksum_xxh3 for r in done)
    finally:
        downgrade(engine, "base")


def test_a_buffer_host_pulls_daq_files_from_the_daq_hosts_rsync_daemon(
    tmp_path: Path, sqlite: Engine, daemons: Daemons
) -> None:
    hosts = [
        {"name": "daq1", "roles": ["daq"], "rsync_port": free_port()},
        {"name": "buf", "roles": ["buffer"]},
        {**STORE, "rsync_port": free_port()},
    ]
    cfg = fleet_config(tmp_path, hosts, [NODE1])
    daemons.start(cfg)
    catalog.register(sqlite, daq_files_of(cfg, "daq1", 3, 1), 1)
    run_until_idle(agent(cfg, sqlite, "store1"))  # no agent there would read them: nothing claimed
    assert all(r.state == "queued" and r.attempts == 0 for r in rows(sqlite))
    run_until_idle(agent(cfg, sqlite, "buf"), prover(cfg, sqlite, "store1"))
    done = rows(sqlite)
    assert all(r.state == "verified" and r.attempts == 1 and r.claimed_by is None for r in done), done
    assert all(xxh3_of(Path(r.path)) == r.checksum_xxh3 for r in done)
    assert not list((cfg.data_dir / "transfer-staging").rglob("*"))  # the pulled copies were cleared


# -- rsync nodes ----------------------------------------------------------------------------------
def logging_rsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`rsync` on PATH that logs each command line, then runs the real one."""
    log = tmp_path / "rsync.log"
    real = subprocess.run(["which", "rsync"], capture_output=True, text=True, check=True).stdout.strip()
    fake_command(tmp_path, monkeypatch, "rsync", f'echo "$*" >> {log}\nexec {real} "$@"\n')
    return log


def test_a_nights_files_go_to_an_rsync_node_in_one_fsynced_run_and_wait_for_their_proof(
    tmp_path: Path, sqlite: Engine, daemons: Daemons, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = [{"name": "daq1", "roles": ["daq"]}, {**STORE, "rsync_port": free_port()}]
    cfg = fleet_config(tmp_path, hosts, [NODE1])
    daemons.start(cfg)
    catalog.register(sqlite, daq_files_of(cfg, "daq1", 8, 1), 1)
    log = logging_rsync(tmp_path, monkeypatch)
    assert agent(cfg, sqlite, "daq1").run_once()
    runs = log.read_text().splitlines()
    assert len(runs) == 1, runs  # the 8 files in one rsync process
    assert all(opt in runs[0] for opt in ("--fsync", "--checksum-choice=xxh3", "--whole-file", "%C"))
    copied = rows(sqlite)
    assert [r.state for r in copied] == ["copied"] * 8 and all(r.proved_at is None for r in copied)
    [node] = catalog.backlog(sqlite)[0]
    assert (node.copying, node.proving, node.verified) == (8, 8, 0)  # still shown, as being proven
    assert not prover(cfg, sqlite, "daq1").nodes  # only the node's own host proves it
    assert prover(cfg, sqlite, "store1").run_once()
    done = rows(sqlite)
    assert all(r.state == "verified" and r.proved_at is not None for r in done), done
    assert all(xxh3_of(Path(r.path)) == r.checksum_xxh3 for r in done)


def test_a_source_that_reads_wrong_is_caught_by_rsyncs_own_checksum(
    tmp_path: Path, sqlite: Engine, daemons: Daemons
) -> None:
    hosts = [{"name": "daq1", "roles": ["daq"]}, {**STORE, "rsync_port": free_port()}]
    cfg = fleet_config(tmp_path, hosts, [NODE1])
    daemons.start(cfg)
    rows_in = daq_files_of(cfg, "daq1", 3, 1)
    catalog.register(sqlite, rows_in, 1)
    bad = Path(rows_in[1]["daq_path"])
    with open(bad, "r+b") as f:  # same size, one byte different: only a checksum tells
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    a, b = agent(cfg, sqlite, "daq1"), prover(cfg, sqlite, "store1")

    def given_up() -> bool:
        run_until_idle(a, b)
        return any(r.state == "failed" for r in rows(sqlite))

    wait_until(given_up, WAIT_S, 0.05, "the copy with a bad source given up")
    run_until_idle(a, b)
    by_name = {r.filename: r for r in rows(sqlite)}
    victim = by_name[bad.name]
    assert victim.state == "failed" and "rsync's xxh3" in victim.last_error, victim
    assert [r.state for n, r in by_name.items() if n != bad.name] == ["verified", "verified"]
    assert not (cfg.data_dir / "storage/node1/20261125" / bad.name).exists()  # not left under its name
    assert any(e.subject == bad.name for e in recent_events(sqlite, 20, kind="replica_mismatch"))


def test_the_prover_catches_a_copy_damaged_on_the_node_and_it_is_copied_again(
    tmp_path: Path, sqlite: Engine, daemons: Daemons
) -> None:
    hosts = [{"name": "daq1", "roles": ["daq"]}, {**STORE, "rsync_port": free_port()}]
    cfg = fleet_config(tmp_path, hosts, [NODE1])
    daemons.start(cfg)
    catalog.register(sqlite, daq_files_of(cfg, "daq1", 2, 1), 1)
    run_until_idle(agent(cfg, sqlite, "daq1"))
    first = rows(sqlite)[0]
    assert first.state == "copied"
    with open(first.path, "r+b") as f:  # the disk returned other bytes than were sent
        f.write(b"\0" * 16)
    run_until_idle(prover(cfg, sqlite, "store1"))
    after = {r.id: r for r in rows(sqlite)}
    aside = Path(first.path).with_name(f".{first.filename}.bad")
    assert after[first.id].state == "queued" and "from disk" in after[first.id].last_error
    assert aside.is_file() and not Path(first.path).exists()
    [ev] = [e for e in recent_events(sqlite, 20, kind="replica_mismatch") if e.subject == first.filename]
    assert ev.severity == "error"
    run_until_idle(agent(cfg, sqlite, "daq1"), prover(cfg, sqlite, "store1"))
    assert all(r.state == "verified" and xxh3_of(Path(r.path)) == r.checksum_xxh3 for r in rows(sqlite))
    assert not aside.exists()  # a good copy is there now: the damaged one went


def test_a_node_on_no_gozen_storage_host_is_proven_by_an_rsync_checksum_pass(
    tmp_path: Path, sqlite: Engine, daemons: Daemons
) -> None:
    port = free_port()
    external = {**NODE1, "rsync_url": f"rsync://gozen@127.0.0.1:{port}/node1"}
    hosts = [{"name": "daq1", "roles": ["daq"]}, {"name": "nas", "roles": ["web"], "rsync_port": port}]
    cfg = fleet_config(tmp_path, hosts, [{**external, "host": "nas"}])
    daemons.start(cfg)  # the NAS's daemon: not a gozen storage host, no prover there
    catalog.register(sqlite, daq_files_of(cfg, "daq1", 3, 1), 1)
    assert not prover(cfg, sqlite, "nas").nodes
    run_until_idle(agent(cfg, sqlite, "daq1"))
    done = rows(sqlite)
    assert all(r.state == "verified" and r.proved_at is not None for r in done), done


# -- proofs read the disk ---------------------------------------------------------------------------
def read_bytes() -> int:
    """Bytes this thread has had read from storage (not from the page cache)."""
    for line in Path("/proc/thread-self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    raise AssertionError("no read_bytes in /proc/thread-self/io")


def test_the_proof_reads_the_disk_not_the_page_cache(tmp_path: Path) -> None:
    data = os.urandom(8 * 2**20)
    path = tmp_path / "copy.fits"
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    assert xxh3_of(path) == xxhash.xxh3_64(data).hexdigest()  # now surely in the page cache
    before = read_bytes()
    xxh3_of(path)
    assert read_bytes() - before < len(data) // 2  # a plain read is served from the cache: the probe can tell
    before = read_bytes()
    assert xxh3_from_disk(path) == xxhash.xxh3_64(data).hexdigest()
    assert read_bytes() - before >= len(data)  # every byte came from the device


def test_a_copy_still_being_written_is_flushed_before_its_cache_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "copy.fits"
    data = os.urandom(4 * 2**20)
    path.write_bytes(data)  # dirty pages, not yet on disk: DONTNEED alone would keep them and read the cache
    before = read_bytes()
    assert xxh3_from_disk(path) == xxhash.xxh3_64(data).hexdigest()
    assert read_bytes() - before >= len(data)


# -- proofs renewed, waits told -----------------------------------------------------------------------
def age_proofs(engine: Engine, days: float) -> None:
    with engine.begin() as conn:
        conn.execute(replicas.update().values(proved_at=utcnow() - timedelta(days=days)))


def test_an_idle_prover_renews_old_proofs_and_catches_a_copy_gone_bad_since(
    tmp_path: Path, sqlite: Engine, daemons: Daemons
) -> None:
    hosts = [{"name": "daq1", "roles": ["daq"]}, {**STORE, "rsync_port": free_port()}]
    cfg = fleet_config(tmp_path, hosts, [NODE1])
    daemons.start(cfg)
    catalog.register(sqlite, daq_files_of(cfg, "daq1", 6, 1), 1)
    p = prover(cfg, sqlite, "store1")
    run_until_idle(agent(cfg, sqlite, "daq1"), p)
    age_proofs(sqlite, 5)  # older than half of proof_max_age_s (7 days)
    rotten = rows(sqlite)[0]
    with open(rotten.path, "r+b") as f:  # bit rot since the copy was proven
        f.write(b"\xff" * 8)
    p.run_once()  # nothing copied waiting: renews the 4 oldest proofs
    p.run_once()
    after = {r.id: r for r in rows(sqlite)}
    assert after[rotten.id].state == "queued" and "from disk" in after[rotten.id].last_error
    assert Path(rotten.path).with_name(f".{rotten.filename}.bad").is_file()
    fresh = utcnow() - timedelta(minutes=5)
    assert all(r.proved_at > fresh for i, r in after.items() if i != rotten.id)
    assert any(e.subject == rotten.filename for e in recent_events(sqlite, 20, kind="replica_mismatch"))


def test_copies_waiting_to_be_tried_again_are_told_soonest_first(tmp_path: Path, sqlite: Engine) -> None:
    cfg = fleet_config(tmp_path, [{"name": "daq1", "roles": ["daq"]}], [{"name": "node1", "path": "storage/node1"}])
    catalog.register(sqlite, daq_files_of(cfg, "daq1", 3, 1), 1)
    a = agent(cfg, sqlite, "daq1")
    jobs = [catalog.claim(sqlite, a.agent_id, a.lease) for _ in range(3)]
    for job, wait_s in zip(jobs, (30, 10, 60), strict=True):
        assert job is not None
        catalog.failed(sqlite, job, f"node1: down {wait_s}", timedelta(seconds=wait_s))
    n, some = catalog.waiting_copies(sqlite, limit=2)
    assert n == 3 and [why for _, why, _ in some] == ["node1: down 10", "node1: down 30"]
    assert 0 < some[0][2] <= 10
