"""rsync storage nodes, archive export and node retention, against a real rsync daemon on 127.0.0.1."""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash
from sqlalchemy import Engine, select

from gozen.config import Config, parse_config
from gozen.db.events import recent_events
from gozen.db.tables import daq_files, exports, files, replicas
from gozen.monitors.board import publish
from gozen.monitors.df import DfMonitor
from gozen.service import Context
from gozen.transfer.agents import push_once
from gozen.transfer.audit import audit as run_audit
from gozen.transfer.export import Exporter, receive_once
from gozen.transfer.janitor import sweep
from gozen.transfer.prover import Prover
from gozen.transfer.retention import Retention, marks
from tests.conftest import WAIT_S, free_port, wait_until
from tests.transfer.test_transfer import W, copy_agent, drain, make_daq_files, replica_rows


class RsyncDaemon:
    """A real `rsync --daemon` serving modules (name -> directory), stoppable and restartable."""

    def __init__(self, root: Path, modules: dict[str, Path]) -> None:
        self.port = free_port()
        self.conf = root / "rsyncd.conf"
        lines = [
            f"pid file = {root / 'rsyncd.pid'}",
            "use chroot = false",
            f"uid = {os.getuid()}",
            f"gid = {os.getgid()}",
        ]
        for name, path in modules.items():
            path.mkdir(parents=True, exist_ok=True)
            lines += [f"[{name}]", f"path = {path}", "read only = false"]
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, module: str) -> str:
        return f"rsync://127.0.0.1:{self.port}/{module}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["rsync", "--daemon", "--no-detach", f"--config={self.conf}", f"--port={self.port}", "--address=127.0.0.1"]
        )
        wait_until(lambda: subprocess.run(["rsync", self.url("")], capture_output=True).returncode == 0, WAIT_S, 0.05)

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RsyncDaemon]:
    d = RsyncDaemon(tmp_path, {"node3": tmp_path / "var/storage/node3", "smoka": tmp_path / "smoka"})
    d.start()
    yield d
    d.stop()


def config(tmp: Path, **over: Any) -> Config:
    data: dict[str, Any] = {
        "data_dir": str(tmp / "var"),
        "camera": {"width_px": W, "height_px": 100, "fps": 20, "chips": [111, 112, 113, 114]},
        "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 0.1, "frame_timeout_s": 1},
        "transfer": {"retry_base_s": 0.01, "poll_s": 0.05, "node_reserve_bytes": 0},
        "archive": {"dest": str(tmp / "smoka"), "min_age_s": 0},
    }
    for key, value in over.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    cfg = parse_config(data)
    for n in cfg.storage_nodes:
        cfg.under_data_dir(n.path).mkdir(parents=True, exist_ok=True)
    return cfg


def exporter(cfg: Config, engine: Engine, host: str = "localhost") -> Exporter:
    """transfer:export of `host`, as `gozen run` builds it."""
    return Exporter(Context(cfg, host, engine, "transfer:export"))


def retention_of(cfg: Config, engine: Engine, host: str = "localhost") -> Retention:
    """transfer:retention of `host`, as `gozen run` builds it."""
    return Retention(Context(cfg, host, engine, "transfer:retention"))


def prove(cfg: Config, engine: Engine) -> None:
    """storage:prover of the nodes' host (here: the first) reads every copied replica back from the disk."""
    prover = Prover(Context(cfg, cfg.hosts[0].name, engine, "storage:prover"))
    while prover.run_once():
        pass


def unqueue(engine: Engine) -> None:
    """Skip the backoff wait of every queued copy."""
    with engine.begin() as conn:
        conn.execute(replicas.update().where(replicas.c.state == "queued").values(next_try_at=None))


def export_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(exports, files.c.filename).join(files, files.c.id == exports.c.file_id)))


def test_a_remote_node_gets_verified_copies_by_rsync_and_drains_after_its_daemon_returns(
    tmp_path: Path, daemon: RsyncDaemon
) -> None:
    node3 = {"name": "node3", "path": "storage/node3", "transport": "rsync", "rsync_url": daemon.url("node3")}
    cfg = config(tmp_path, storage_nodes=[node3])
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "localhost", scan=False)
    agent = copy_agent(cfg, engine)
    agent.batch_files = 1  # one copy per pass: the daemon goes away between two
    assert agent.run_once()  # no df reading of node3 yet: its free space is unknown, nothing is sent
    assert "free space unknown" in (replica_rows(engine)[0].last_error or "")
    df = DfMonitor(Context(cfg, "localhost", engine, "storage:dfmonitor"))
    publish(engine, "storage:dfmonitor", df.sample())  # node3's host measures it
    agent.placement.nodes[0].down_until = 0
    unqueue(engine)
    agent.run_once()
    daemon.stop()  # the node's daemon goes away mid-run
    unqueue(engine)
    agent.run_once()
    down = [r for r in replica_rows(engine) if r.state == "queued" and r.last_error]
    assert down and "rsync exit 10" in down[-1].last_error, [r.last_error for r in replica_rows(engine)]
    assert any(e.kind == "node_failed" for e in recent_events(engine, 20))
    daemon.start()
    agent.placement.nodes[0].down_until = 0
    unqueue(engine)
    drain(cfg, engine)
    prove(cfg, engine)
    rows = replica_rows(engine)
    assert [r.state for r in rows] == ["verified"] * 4
    for r in rows:
        assert r.path.startswith(str(cfg.data_dir / "storage/node3/"))
        assert xxhash.xxh3_64(Path(r.path).read_bytes()).hexdigest() == r.checksum_xxh3
    victim = rows[0]
    data = bytearray(Path(victim.path).read_bytes())
    data[5000] ^= 0xFF  # damaged on the node, same size and time: rsync's quick check would not see it
    st = os.stat(victim.path)
    Path(victim.path).write_bytes(data)
    os.utime(victim.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    found = run_audit(cfg, engine, "daq1", repair=True)
    assert found.corrupted == [f"node3:{victim.path}"] and found.lost == 0
    drain(cfg, engine)
    waiting = run_audit(cfg, engine, "daq1")  # copied again (its proof perhaps to come: under way, not short)
    copied = [r for r in replica_rows(engine) if r.state == "copied"]
    assert waiting.clean and waiting.in_progress == len(copied) and waiting.short == []
    prove(cfg, engine)
    after = run_audit(cfg, engine, "daq1")
    assert after.clean and after.replicas_checked == 4 and after.lost == 0 and not after.orphans


def test_export_packages_sends_verifies_and_is_acknowledged_once(tmp_path: Path, daemon: RsyncDaemon) -> None:
    cfg = config(tmp_path, archive={"dest": daemon.url("smoka")})
    engine = make_daq_files(cfg, exposures=2)
    push_once(cfg, engine, "localhost", scan=False)
    drain(cfg, engine)
    exporting = exporter(cfg, engine)
    first = exporting.export()
    assert (first.packaged, first.exported, first.acknowledged, first.errors) == (8, 8, 0, [])
    archive = tmp_path / "smoka"
    [manifest_path] = archive.glob("*/manifests/*.json")
    manifest = json.loads(manifest_path.read_text())
    night = manifest["night"]
    assert manifest["package"] == f"{night}-localhost-001" and len(manifest["files"]) == 8
    entry = manifest["files"][0]
    landed = archive / night / entry["file"]
    assert entry["size"] == landed.stat().st_size and entry["xxh3"] == xxhash.xxh3_64(landed.read_bytes()).hexdigest()
    assert entry["header"]["DATA-TYP"] == "OBJECT" and entry["header"]["DET-ID"] in (111, 112, 113, 114)
    assert receive_once(archive) == 1  # the archive reads the package and writes its receipt
    second = exporting.export()
    assert (second.packaged, second.exported, second.acknowledged) == (0, 0, 8)
    again = exporting.export()  # nothing new: nothing packaged, sent or counted twice
    assert (again.packaged, again.exported, again.acknowledged, again.rejected) == (0, 0, 0, 0)
    assert receive_once(archive) == 0
    assert {r.state for r in export_rows(engine)} == {"acknowledged"}
    assert len(list(archive.glob("*/manifests/*.json"))) == 1 and len(list(archive.glob("*/*.fits"))) == 8


def test_a_file_the_archive_refuses_is_sent_again_and_only_selected_files_go(tmp_path: Path) -> None:
    cfg = config(tmp_path)  # the archive is a directory here, as in the simulated observatory
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "localhost", scan=False)
    drain(cfg, engine)
    exporting = exporter(cfg, engine)
    assert exporting.export().exported == 4
    archive = tmp_path / "smoka"
    night_dir = next(p for p in archive.iterdir() if p.is_dir())
    victim = sorted(night_dir.glob("*.fits"))[0]
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")  # damaged at the archive before it ingests
    receive_once(archive)
    r = exporting.export()
    assert (r.acknowledged, r.rejected) == (3, 1)
    assert any(victim.name == e.subject and "checksum" in e.message for e in recent_events(engine, 10))
    r = exporting.export()  # packaged again as package 002, sent whole
    assert (r.packaged, r.exported) == (1, 1)
    receive_once(archive)
    assert exporting.export().acknowledged == 1
    rows = export_rows(engine)
    assert {x.state for x in rows} == {"acknowledged"} and sorted({x.package[-3:] for x in rows}) == ["001", "002"]
    assert xxhash.xxh3_64(victim.read_bytes()).hexdigest() in {x.manifest["xxh3"] for x in rows}

    other = config(tmp_path / "b", archive={"projects": ["another-project"]})
    engine2 = make_daq_files(other)
    push_once(other, engine2, "localhost", scan=False)
    drain(other, engine2)
    r = exporter(other, engine2).export()
    assert (r.packaged, r.not_selected) == (0, 4) and {x.state for x in export_rows(engine2)} == {"not_selected"}


def test_an_unreachable_archive_leaves_packages_to_send_later(tmp_path: Path, daemon: RsyncDaemon) -> None:
    cfg = config(tmp_path, archive={"dest": daemon.url("smoka")})
    engine = make_daq_files(cfg)
    push_once(cfg, engine, "localhost", scan=False)
    drain(cfg, engine)
    daemon.stop()
    r = exporter(cfg, engine).export()
    assert r.packaged == 4 and r.exported == 0 and "rsync exit 10" in r.errors[0]
    assert {x.state for x in export_rows(engine)} == {"packaged"}
    daemon.start()
    r = exporter(cfg, engine).export()
    assert (r.exported, r.errors) == (4, [])


def file_size(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(daq_files.c.size_bytes)).scalars().first())


def test_retention_removes_only_archived_replicas_oldest_first_and_never_a_last_copy(tmp_path: Path) -> None:
    engine = make_daq_files(config(tmp_path), exposures=3)
    size = file_size(engine)
    quota = int(8.2 * size)  # eight of the twelve files fit
    nodes = [{"name": "node0", "path": "storage/node0", "max_bytes": quota}]
    cfg = config(tmp_path, storage_nodes=nodes)
    push_once(cfg, engine, "localhost", scan=False)
    drain(cfg, engine, max_passes=200)
    held = [r for r in replica_rows(engine) if r.state == "verified"]
    assert len(held) == 8 and sum(Path(r.path).stat().st_size for r in held) <= quota
    retention = retention_of(cfg, engine)
    assert retention.sweep() == []  # over its high mark, but nothing is archived yet: all stay
    assert recent_events(engine, 5, kind="retention_blocked")
    exporting = exporter(cfg, engine)
    exporting.export()
    receive_once(tmp_path / "smoka")
    assert exporting.export().acknowledged == 8
    removed = retention.sweep()
    high, low = marks(quota, size)
    assert 8 * size > high and len(removed) == math.ceil((8 * size - low) / size) == 3
    oldest = sorted(held, key=lambda r: (r.verified_at, r.id))
    assert [d.path for d in removed] == [r.path for r in oldest[:3]]  # oldest first
    assert not any(Path(d.path).exists() for d in removed) and all(Path(r.path).exists() for r in oldest[3:])
    assert {r.state for r in replica_rows(engine) if r.path in {d.path for d in removed}} == {"expired"}
    assert recent_events(engine, 5, kind="replicas_expired")
    drain(cfg, engine, max_passes=200)  # the room made takes more of the waiting copies
    assert len([r for r in replica_rows(engine) if r.state == "verified"]) == 8
    # The DAQ volumes' quotas drive the janitor: it lets go of what is archived or copied, nothing else.
    vols = [{"name": f"daq-vol{i}", "path": f"daq/vol{i}", "max_bytes": 1000} for i in (1, 2)]
    swept = sweep(config(tmp_path, storage_nodes=nodes, daq_volumes=vols), engine, "daq1")
    copied = {r.filename for r in replica_rows(engine) if r.state in ("verified", "expired")}
    assert {Path(d.path).name for d in swept} == copied and len(copied) == 11
    rep = run_audit(cfg, engine, "daq1")
    assert rep.lost == 0 and rep.archived == 8 and rep.corrupted == [] and rep.missing == []


def test_retention_without_an_archive_keeps_one_verified_replica(tmp_path: Path) -> None:
    engine = make_daq_files(config(tmp_path))
    size = file_size(engine)
    nodes = [{"name": f"node{i}", "path": f"storage/node{i}", "max_bytes": 4 * size} for i in range(3)]
    cfg = config(tmp_path, storage_nodes=nodes, archive=None, transfer={"replication": 2})
    push_once(cfg, engine, "localhost", scan=False)
    drain(cfg, engine)
    assert [r.state for r in replica_rows(engine)] == ["verified"] * 8
    with engine.begin() as conn:  # the DAQ copies are gone: the nodes hold the only copies
        conn.execute(files.update().values(daq_state="deleted"))
    for n in nodes:
        n["max_bytes"] = size  # the limits shrink: every node is over
    removed = retention_of(config(tmp_path, storage_nodes=nodes, archive=None), engine).sweep()
    assert len(removed) == 4
    by_file: dict[str, int] = {}
    for r in replica_rows(engine):
        by_file[r.filename] = by_file.get(r.filename, 0) + (r.state == "verified")
    assert sorted(by_file.values()) == [1, 1, 1, 1]  # each file kept its last copy
    rep = run_audit(cfg, engine, "daq1")
    assert rep.lost == 0 and rep.clean
