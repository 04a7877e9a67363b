"""Copies retried until done, repairs from any good source, damaged replicas set aside, audit that tells the truth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash
from sqlalchemy import Engine, select

from gozen.config import Config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.db.tables import files, replicas
from gozen.monitors.board import publish
from gozen.monitors.df import DfMonitor
from gozen.service import Context
from gozen.transfer import catalog
from gozen.transfer.agents import push_once
from gozen.transfer.audit import audit as run_audit
from gozen.transfer.export import receive_once
from gozen.transfer.janitor import sweep
from gozen.transfer.prover import Prover
from tests.conftest import WAIT_S, gozen_cmd, wait_until
from tests.transfer.test_archive import RsyncDaemon, config, exporter
from tests.transfer.test_transfer import (
    audit,
    copy_agent,
    drain,
    make_daq_files,
    random_daq_files,
    replica_rows,
    write_cfg,
)

FAST = {"retry_base_s": 0.01, "retry_max_s": 0.3, "max_attempts": 5, "poll_s": 0.02, "node_reserve_bytes": 0}


def local_nodes(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "path": f"storage/{n}"} for n in names]


def gozen(tmp: Path, cfg: Config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        gozen_cmd(write_cfg(tmp, cfg), *args),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "160", "GOZEN_HOST": "daq1"},
    )


class AgentLoop:
    """A copy agent working in a thread as transfer:pop-NN does, with the node's dfmonitor publishing."""

    def __init__(self, cfg: Config, engine: Engine, publish_df: bool = False) -> None:
        self.cfg, self.engine, self.publish_df = cfg, engine, publish_df
        self.agent = copy_agent(cfg, engine, "daq1")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        df = DfMonitor(Context(self.cfg, "daq1", self.engine, "storage:dfmonitor"))
        prover = Prover(Context(self.cfg, "localhost", self.engine, "storage:prover"))  # rsync nodes' host
        while not self.stop.is_set():
            if self.publish_df:
                publish(self.engine, "storage:dfmonitor", df.sample())
            copied = self.agent.run_once()
            if not prover.run_once() and not copied:
                self.stop.wait(self.cfg.transfer.poll_s)

    def __enter__(self) -> AgentLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(WAIT_S)


def states(engine: Engine) -> list[tuple[Any, ...]]:
    return [(r.filename, r.node, r.state, r.attempts, r.last_error) for r in replica_rows(engine)]


def delete_daq_copies(engine: Engine) -> None:
    """What the janitor does once a file is safe elsewhere: the DAQ copy goes."""
    with engine.connect() as conn:
        rows = conn.execute(select(files.c.id, files.c.daq_path)).all()
    for fid, path in rows:
        Path(path).unlink()
        catalog.mark_daq_deleted(engine, fid)


def nothing_under_a_final_name_but_good_copies(cfg: Config, engine: Engine) -> None:
    """Every TMQ*.fits on the nodes is a verified replica whose bytes match the catalog."""
    rows = {r.path: r for r in replica_rows(engine) if r.state == "verified"}
    on_disk = sorted(str(p) for p in (cfg.data_dir / "storage").rglob("TMQ*.fits"))
    assert on_disk == sorted(rows), (on_disk, sorted(rows))
    for path, r in rows.items():
        assert xxhash.xxh3_64(Path(path).read_bytes()).hexdigest() == r.checksum_xxh3


# -- 1. a node away longer than the old retry window --------------------------------------------
@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RsyncDaemon]:
    d = RsyncDaemon(tmp_path, {"node3": tmp_path / "var/storage/node3"})
    d.start()
    yield d
    d.stop()


def test_a_node_down_longer_than_the_old_retry_window_gets_every_copy_when_it_returns(
    tmp_path: Path, daemon: RsyncDaemon
) -> None:
    node3 = {"name": "node3", "path": "storage/node3", "transport": "rsync", "rsync_url": daemon.url("node3")}
    cfg = config(tmp_path, storage_nodes=[*local_nodes("node0"), node3], transfer={**FAST, "replication": 2})
    engine = make_daq_files(cfg, exposures=2)
    push_once(cfg, engine, "daq1", scan=False)
    daemon.stop()  # node3's daemon goes away before the first copy
    with AgentLoop(cfg, engine, publish_df=True):

        def retried_past_the_old_window() -> bool:
            rows = replica_rows(engine)
            waiting = [r for r in rows if r.state != "verified"]
            return len(rows) - len(waiting) == 8 and all(
                r.attempts > cfg.transfer.max_attempts + 1 or r.state == "failed" for r in waiting
            )

        wait_until(retried_past_the_old_window, WAIT_S, 0.1, "node3's copies tried past 5 attempts", lambda: "")
        assert not [s for s in states(engine) if s[2] == "failed"], states(engine)
        assert any("rsync exit" in (r.last_error or "") for r in replica_rows(engine))
        status = gozen(tmp_path, cfg, "audit", "--no-repair")
        assert status.returncode == 1 and "stuck" in status.stdout, status.stdout  # short of copies: not clean
        daemon.start()
        wait_until(
            lambda: all(r.state == "verified" for r in replica_rows(engine)),
            WAIT_S,
            0.2,
            "every copy verified after node3 came back",
            lambda: "\n".join(map(str, states(engine))),
        )
    assert sorted(r.node for r in replica_rows(engine)) == ["node0"] * 8 + ["node3"] * 8
    audit(engine, 2)  # counts and checksums, every replica read back
    rep = run_audit(cfg, engine, "daq1")
    assert rep.clean and rep.replicas_checked == 16 and rep.lost == 0 and not rep.short and not rep.orphans
    r = gozen(tmp_path, cfg, "audit")
    assert r.returncode == 0, r.stdout + r.stderr
    st = gozen(tmp_path, cfg, "transfer", "status")
    assert "every catalogued file has all its verified copies" in st.stdout and "failed for good" not in st.stdout


def test_a_read_only_node_is_waited_for_and_filled_when_writable_again(tmp_path: Path) -> None:
    cfg = config(tmp_path, storage_nodes=local_nodes("node0"), transfer=FAST)
    node0 = cfg.data_dir / "storage/node0"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(node0)], check=True)
    try:
        engine = make_daq_files(cfg)
        push_once(cfg, engine, "daq1", scan=False)
        subprocess.run(["mount", "-o", "remount,ro", str(node0)], check=True)
        with AgentLoop(cfg, engine):
            late_tries: set[int] = set()  # copies seen refused by the node itself after more than 6 tries

            def tried_past_the_old_window() -> bool:
                rows = replica_rows(engine)
                late_tries.update(
                    r.id
                    for r in rows
                    if (r.last_error or "").startswith("node0:") and r.attempts > cfg.transfer.max_attempts + 1
                )
                return bool(late_tries) or any(r.state == "failed" for r in rows)

            wait_until(tried_past_the_old_window, WAIT_S, 0.02, "a copy refused by the read-only node after 6 tries")
            assert {r.state for r in replica_rows(engine)} <= {"queued", "copying"}, states(engine)
            assert any("Read-only" in (r.last_error or "") for r in replica_rows(engine))
            subprocess.run(["mount", "-o", "remount,rw", str(node0)], check=True)
            wait_until(lambda: all(r.state == "verified" for r in replica_rows(engine)), WAIT_S, 0.2, "every copy")
        assert len(recent_events(engine, 100, kind="node_failed")) == 1
        assert [e.subject for e in recent_events(engine, 100, kind="node_ok")] == ["node0"]  # one outage, told once
        audit(engine, 1)
        assert run_audit(cfg, engine, "daq1").clean
        nothing_under_a_final_name_but_good_copies(cfg, engine)
    finally:
        subprocess.run(["umount", str(node0)], check=False)


# -- 2. repairs from another replica (or the archive) when the DAQ copy is gone ---------------
def test_a_lost_replica_is_repaired_from_a_replica_on_another_node_when_the_daq_copy_is_gone(tmp_path: Path) -> None:
    cfg = config(tmp_path, storage_nodes=local_nodes("node0", "node1", "node2"), transfer={**FAST, "replication": 2})
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "daq1", scan=False)
    drain(cfg, engine)
    delete_daq_copies(engine)
    victim = replica_rows(engine)[0]
    survivor = next(r for r in replica_rows(engine) if r.file_id == victim.file_id and r.id != victim.id)
    Path(victim.path).unlink()  # lost behind the catalog's back: only `survivor` (on node A) is left
    found = run_audit(cfg, engine, "daq1", repair=True)
    assert found.missing == [f"{victim.node}:{victim.path}"] and found.lost == 0 and found.requeued == 1
    drain(cfg, engine)
    now = [r for r in replica_rows(engine) if r.file_id == victim.file_id]
    assert [r.state for r in now] == ["verified", "verified"], states(engine)
    assert survivor.node in {r.node for r in now}  # copied from node A onto another node
    audit(engine, 2)
    after = run_audit(cfg, engine, "daq1")
    assert after.clean and after.replicas_checked == 8 and after.lost == 0 and not after.orphans
    nothing_under_a_final_name_but_good_copies(cfg, engine)


def test_a_lost_replica_is_repaired_from_a_replica_on_a_remote_rsync_node(tmp_path: Path, daemon: RsyncDaemon) -> None:
    node3 = {"name": "node3", "path": "storage/node3", "transport": "rsync", "rsync_url": daemon.url("node3")}
    cfg = config(tmp_path, storage_nodes=[*local_nodes("node0"), node3], transfer={**FAST, "replication": 2})
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "daq1", scan=False)
    with AgentLoop(cfg, engine, publish_df=True):
        wait_until(lambda: all(r.state == "verified" for r in replica_rows(engine)), WAIT_S, 0.1, "every copy")
    delete_daq_copies(engine)
    victim = next(r for r in replica_rows(engine) if r.node == "node0")
    Path(victim.path).unlink()  # its only good copy is now on node3, reached by rsync
    found = run_audit(cfg, engine, "daq1", repair=True)
    assert found.missing == [f"node0:{victim.path}"] and found.lost == 0
    with AgentLoop(cfg, engine, publish_df=True):
        wait_until(lambda: all(r.state == "verified" for r in replica_rows(engine)), WAIT_S, 0.1, "the repair")
    assert sorted(r.node for r in replica_rows(engine) if r.file_id == victim.file_id) == ["node0", "node3"]
    audit(engine, 2)
    assert run_audit(cfg, engine, "daq1").clean
    assert not [p for p in (cfg.data_dir / "transfer-staging").iterdir()]  # the fetched copy was cleared
    nothing_under_a_final_name_but_good_copies(cfg, engine)


def test_a_file_with_no_good_replica_left_is_copied_back_from_the_archive(tmp_path: Path) -> None:
    cfg = config(tmp_path, storage_nodes=local_nodes("node0", "node1"), transfer=FAST)
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "daq1", scan=False)
    drain(cfg, engine)

    exporting = exporter(cfg, engine, "daq1")
    exporting.export()
    receive_once(cfg.archive_local_dir() or Path())
    assert exporting.export().acknowledged == 4
    delete_daq_copies(engine)
    victim = replica_rows(engine)[0]
    Path(victim.path).write_bytes(b"not the data")  # the only storage copy is ruined
    found = run_audit(cfg, engine, "daq1", repair=True)
    assert found.missing == [f"{victim.node}:{victim.path}"] and found.lost == 0 and found.archived == 4
    drain(cfg, engine)
    assert {r.state for r in replica_rows(engine)} == {"verified"}, states(engine)
    audit(engine, 1)
    assert run_audit(cfg, engine, "daq1", repair=True).clean
    nothing_under_a_final_name_but_good_copies(cfg, engine)


# -- 3. damaged replicas: set aside, removed only once a good copy exists ---------------------
def damage(path: str, how: str) -> None:
    if how == "truncate":
        os.truncate(path, os.stat(path).st_size // 2)
    else:
        with open(path, "r+b") as f:
            f.seek(10_000)
            b = f.read(1)
            f.seek(10_000)
            f.write(bytes([b[0] ^ 0xFF]))


def test_damaged_replicas_are_set_aside_and_removed_only_after_a_good_copy_exists(tmp_path: Path) -> None:
    cfg = config(tmp_path, storage_nodes=local_nodes("node0", "node1", "node2"), transfer={**FAST, "replication": 2})
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "daq1", scan=False)
    drain(cfg, engine)
    delete_daq_copies(engine)  # the other replica is each file's only good source
    rows = replica_rows(engine)
    corrupt, truncated = rows[0], next(r for r in rows if r.file_id != rows[0].file_id)
    damage(corrupt.path, "flip")
    damage(truncated.path, "truncate")
    found = run_audit(cfg, engine, "daq1", repair=True)
    assert found.corrupted == [f"{corrupt.node}:{corrupt.path}"]
    assert found.missing == [f"{truncated.node}:{truncated.path}"]
    assert found.lost == 0 and found.requeued == 2 and not found.orphans and not found.clean
    for r in (corrupt, truncated):
        assert not Path(r.path).exists()  # never left under its final name
        assert Path(r.path).with_name(f".{Path(r.path).name}.bad").is_file()  # kept: no good copy made yet
    drain(cfg, engine)
    for r in (corrupt, truncated):
        assert not Path(r.path).with_name(f".{Path(r.path).name}.bad").exists()  # a good copy exists now
    audit(engine, 2)
    after = run_audit(cfg, engine, "daq1", repair=True)
    assert after.clean and after.replicas_checked == 8 and not after.orphans and not after.quarantined
    nothing_under_a_final_name_but_good_copies(cfg, engine)


def test_a_damaged_last_copy_is_kept_aside_reported_lost_and_shown_failed(tmp_path: Path) -> None:
    cfg = config(tmp_path, storage_nodes=local_nodes("node0", "node1"), transfer=FAST, archive=None)
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "daq1", scan=False)
    drain(cfg, engine)
    delete_daq_copies(engine)
    victim = replica_rows(engine)[0]
    damage(victim.path, "flip")
    r = gozen(tmp_path, cfg, "audit")
    assert r.returncode == 1 and f"lost: {victim.filename}" in r.stdout, r.stdout + r.stderr
    aside = Path(victim.path).with_name(f".{Path(victim.path).name}.bad")
    assert aside.is_file() and not Path(victim.path).exists()  # the damaged bytes kept, off the final name
    agent = copy_agent(cfg, engine, "daq1")

    def given_up() -> bool:
        agent.run_once()
        return any(r.state == "failed" for r in replica_rows(engine))

    wait_until(given_up, WAIT_S, 0.01, "the copy with no source anywhere to be given up")
    [failed] = [r for r in replica_rows(engine) if r.state == "failed"]
    assert failed.filename == victim.filename and "no source" in (failed.last_error or "")
    assert any(e.subject == victim.filename for e in recent_events(engine, 20, kind="source_missing"))
    st = gozen(tmp_path, cfg, "transfer", "status")
    assert "1 copies failed for good" in st.stdout and victim.filename in st.stdout, st.stdout
    again = run_audit(cfg, engine, "daq1", repair=True)
    assert again.lost_files == [victim.filename] and again.quarantined == [str(aside)] and not again.clean
    assert aside.is_file()  # still the only bytes of that file: never deleted
    good = [r for r in replica_rows(engine) if r.state == "verified"]
    assert len(good) == 3 and all(
        xxhash.xxh3_64(Path(r.path).read_bytes()).hexdigest() == r.checksum_xxh3 for r in good
    )


# -- 4. audit on a busy system --------------------------------------------------------------
def test_audit_during_a_busy_run_reports_no_false_problems(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        storage_nodes=local_nodes("node0", "node1", "node2"),
        transfer={**FAST, "replication": 2, "daq_high_water_pct": 0.001, "daq_low_water_pct": 0.0005},
        archive=None,
    )
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    vol = cfg.data_dir / "daq/vol1"
    vol.mkdir(parents=True)
    rows = random_daq_files(vol, 600, seed=11, min_bytes=8_192)
    assert catalog.register(engine, rows, 2) == 600
    cfg_file = write_cfg(tmp_path, cfg)
    agents = [
        subprocess.Popen(
            gozen_cmd(cfg_file, "run", f"transfer:pop-{n:02d}"),
            env={**os.environ, "GOZEN_HOST": "daq1"},
            stderr=subprocess.DEVNULL,
        )
        for n in (1, 2)
    ]
    stop = threading.Event()

    def janitor() -> None:  # frees DAQ copies as soon as they are safe, all through the audits
        while not stop.wait(0.05):
            sweep(cfg, engine, "daq1")

    jt = threading.Thread(target=janitor, daemon=True)
    jt.start()
    reports = []
    try:
        while sum(r.state == "verified" for r in replica_rows(engine)) < 1200 or not reports:
            rep = run_audit(cfg, engine, "daq1", repair=True)
            reports.append(rep)
            assert not (rep.missing or rep.corrupted or rep.daq_missing or rep.orphans), rep
            assert not (rep.lost_files or rep.short), rep
            assert len(reports) < 500, "the copies never finished"
    finally:
        stop.set()
        jt.join(WAIT_S)
        for p in agents:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=WAIT_S)
    assert any(rep.in_progress for rep in reports)  # the audits did run while copies were under way
    audit(engine, 2)
    final = gozen(tmp_path, cfg, "audit")
    assert final.returncode == 0, final.stdout + final.stderr
    done = run_audit(cfg, engine, "daq1")
    assert done.clean and done.replicas_checked == 1200 and done.lost == 0 and not done.orphans
    with engine.connect() as conn:
        states_now = conn.execute(select(replicas.c.state)).scalars().all()
    assert states_now.count("verified") == 1200


# -- 5. the simulated archive keeps within simulator_keep_bytes ------------------------------
def test_the_simulated_archive_drops_its_oldest_packages_to_stay_within_keep_bytes(tmp_path: Path) -> None:
    root = tmp_path / "smoka"
    night = root / "20261125"  # one night only: dropping whole past nights would free nothing
    (night / "manifests").mkdir(parents=True)
    sent: list[list[Path]] = []
    for pkg in range(6):
        entries, paths = [], []
        for i in range(4):
            data = os.urandom(100_000)
            p = night / f"TMQ120261125{pkg:04d}{i:04d}11.fits"
            p.write_bytes(data)
            entries.append({"file": p.name, "size": len(data), "xxh3": xxhash.xxh3_64(data).hexdigest()})
            paths.append(p)
        name = f"20261125-obs1-{pkg + 1:03d}"
        (night / "manifests" / f"{name}.json").write_text(json.dumps({"package": name, "files": entries}))
        assert receive_once(root, keep_bytes=1_000_000) == 1  # one package arrives and is received each pass
        os.utime(night / "receipts" / f"{name}.json", (1_000 + pkg, 1_000 + pkg))  # receipts in package order
        sent.append(paths)
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total <= 1_000_000
    assert all(p.exists() for p in sent[-1])  # the newest package stays
    assert not any(p.exists() for p in sent[0])  # the oldest went first
    kept = [i for i, paths in enumerate(sent) if all(p.exists() for p in paths)]
    assert kept == list(range(kept[0], 6))  # oldest first, whole packages
    receipts = sorted(p.name for p in (night / "receipts").glob("*.json"))
    assert len(receipts) == 6  # every receipt stays for the exporter to read
    for r in (night / "receipts").glob("*.json"):
        assert not json.loads(r.read_text())["rejected"]


# -- point 6: a storage node on a DAQ volume (config check refuses it; the copy path must too) --
def test_a_node_on_a_daq_volume_is_never_a_copy_and_the_janitor_keeps_the_only_one(tmp_path: Path) -> None:
    good = config(
        tmp_path,
        daq_volumes=[{"name": "daq-vol1", "path": "daq/vol1"}],
        storage_nodes=local_nodes("node0", "node1"),
        transfer={**FAST, "daq_high_water_pct": 0.001, "daq_low_water_pct": 0.0005},
        archive=None,
    )
    # What `config check` now refuses, made anyway: node0 is the DAQ volume's own directory, and the
    # roomiest node (node1's small quota ranks it last), so every copy is first offered to it.
    on_daq = good.storage_nodes[0].model_copy(update={"path": Path("daq/vol1")})
    small = good.storage_nodes[1].model_copy(update={"max_bytes": 100 * 10**6})
    cfg = good.model_copy(update={"storage_nodes": [on_daq, small]})
    engine = make_daq_files(cfg, exposures=2)
    push_once(cfg, engine, "daq1", scan=False)
    with AgentLoop(cfg, engine):
        wait_until(lambda: all(r.state == "verified" for r in replica_rows(engine)), WAIT_S, 0.1, "every copy")
    assert {r.node for r in replica_rows(engine)} == {"node1"}, states(engine)
    assert any("its own source" in e.message for e in recent_events(engine, 50, kind="node_failed"))
    deleted = sweep(cfg, engine, "daq1")
    assert len(deleted) == 8
    audit(engine, 1)
    rep = run_audit(cfg, engine, "daq1")
    assert rep.clean and rep.lost == 0 and rep.replicas_checked == 8


def test_the_janitor_never_counts_the_daq_copy_itself_as_a_replica(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        storage_nodes=local_nodes("node0"),
        transfer={**FAST, "daq_high_water_pct": 0.001, "daq_low_water_pct": 0.0005},
        archive=None,
    )
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "daq1", scan=False)
    with engine.begin() as conn:  # what an agent copying "to" a node on the DAQ volume recorded before
        for fid, path in conn.execute(select(files.c.id, files.c.daq_path)).all():
            conn.execute(
                replicas.update().where(replicas.c.file_id == fid).values(state="verified", node="node0", path=path)
            )
    assert sweep(cfg, engine, "daq1") == []
    with engine.connect() as conn:
        paths = conn.execute(select(files.c.daq_path).where(files.c.daq_state == "present")).scalars().all()
    assert len(paths) == 4 and all(Path(p).is_file() for p in paths)  # the only copies, kept
