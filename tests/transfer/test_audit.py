"""`gozen audit` renews proofs: on a node's own host by reading the disk, elsewhere by an rsync checksum pass."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, select

from gozen.config import Config, parse_config
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.db.tables import files, replicas
from gozen.db.types import utcnow
from gozen.transfer import catalog
from gozen.transfer.audit import audit as run_audit
from gozen.transfer.janitor import sweep
from tests.conftest import free_port, gozen_cmd
from tests.transfer.test_archive import RsyncDaemon
from tests.transfer.test_janitor import fleet_data, set_copies
from tests.transfer.test_transfer import random_daq_files

STALE = timedelta(days=10)  # older than the default proof_max_age_s (7 days)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RsyncDaemon]:
    """store1's rsync daemon serving node1 (here on 127.0.0.1, its disk a directory of this test)."""
    d = RsyncDaemon(tmp_path, {"node1": tmp_path / "var/storage/node1"})
    d.start()
    yield d
    d.stop()


def fleet(tmp: Path, node1_url: str) -> tuple[dict[str, Any], Config, Engine, list[dict[str, Any]]]:
    """The fleet's config (node1 reached at node1_url, node2's daemon down), 4 files on daq1, each verified
    on node1 (a real copy on node1's disk) and node2, every proof 10 days old."""
    data = fleet_data(tmp)
    data["database"] = {"url": f"sqlite:///{tmp / 'gozen.db'}"}
    data["storage_nodes"][0]["rsync_url"] = node1_url
    data["storage_nodes"][1]["rsync_url"] = f"rsync://127.0.0.1:{free_port()}/node2"  # nobody listens
    cfg = parse_config(data)
    vol = cfg.data_dir / "daq/vol1"
    vol.mkdir(parents=True)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    rows = random_daq_files(vol, 4, seed=11, min_bytes=20_000)
    catalog.register(engine, rows, 2)
    for r in rows:
        set_copies(cfg, engine, r["filename"], [utcnow() - STALE, utcnow() - STALE])
        on_node1 = cfg.data_dir / "storage/node1" / r["filename"][4:12] / r["filename"]
        on_node1.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(r["daq_path"], on_node1)
    return data, cfg, engine, rows


def proofs(engine: Engine) -> dict[tuple[str, str], Any]:
    """(filename, node) -> proved_at."""
    with engine.connect() as conn:
        q = select(files.c.filename, replicas.c.node, replicas.c.proved_at).join(
            files, files.c.id == replicas.c.file_id
        )
        return {(f, n): p for f, n, p in conn.execute(q)}


def test_the_audit_on_a_storage_host_reads_its_own_nodes_and_renews_their_proofs(tmp_path: Path) -> None:
    _, cfg, engine, rows = fleet(tmp_path, "rsync://127.0.0.1:1/node1")
    assert sweep(cfg, engine, "daq1") == []  # proofs 10 days old: the DAQ copies stay
    began = utcnow()
    rep = run_audit(cfg, engine, "store1")
    assert (rep.replicas_checked, rep.proofs_renewed, rep.rsync_checked) == (4, 4, 0)
    assert rep.elsewhere == 4 and rep.elsewhere_hosts == {"store2": 4}  # node2: store2's audit reads it
    assert rep.lost == 0 and rep.corrupted == [] and rep.missing == [] and rep.clean
    assert rep.stale_proofs == 4  # node2's, until store2 audits
    got = proofs(engine)
    assert all(got[(r["filename"], "node1")] >= began for r in rows)
    assert all(got[(r["filename"], "node2")] < began - timedelta(days=9) for r in rows)
    # node1's proofs are recent now, node2's are not: one proven copy of the two needed.
    assert sweep(cfg, engine, "daq1") == []
    with engine.begin() as conn:  # store2's audit renews node2's (what it would do, reading its disk)
        conn.execute(replicas.update().where(replicas.c.node == "node2").values(proved_at=utcnow()))
    assert len(sweep(cfg, engine, "daq1")) == 4


def test_a_damaged_copy_is_not_proven_again(tmp_path: Path) -> None:
    _, cfg, engine, rows = fleet(tmp_path, "rsync://127.0.0.1:1/node1")
    victim = cfg.data_dir / "storage/node1" / rows[0]["filename"][4:12] / rows[0]["filename"]
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(data)
    rep = run_audit(cfg, engine, "store1", repair=False)
    assert rep.corrupted == [f"node1:{victim}"] and rep.proofs_renewed == 3 and not rep.clean
    assert proofs(engine)[(rows[0]["filename"], "node1")] < utcnow() - timedelta(days=9)


def test_the_audit_on_the_daq_host_proves_other_hosts_copies_by_rsync_against_the_daq_copy(
    tmp_path: Path, daemon: RsyncDaemon
) -> None:
    data, cfg, engine, rows = fleet(tmp_path, daemon.url("node1"))
    gone, damaged = rows[0], rows[1]
    Path(gone["daq_path"]).unlink()  # the janitor freed it before: only the nodes can prove that file
    with engine.begin() as conn:
        conn.execute(files.update().where(files.c.filename == gone["filename"]).values(daq_state="deleted"))
    on_node1 = cfg.data_dir / "storage/node1" / damaged["filename"][4:12] / damaged["filename"]
    st = os.stat(on_node1)
    bad = bytearray(on_node1.read_bytes())
    bad[1000] ^= 0xFF  # same size and time: only a checksum read finds it
    on_node1.write_bytes(bad)
    os.utime(on_node1, ns=(st.st_atime_ns, st.st_mtime_ns))
    began = utcnow()
    rep = run_audit(cfg, engine, "daq1")
    assert rep.replicas_checked == 0  # daq1 holds no node: nothing is read from a disk here
    assert rep.rsync_checked == 3 and rep.proofs_renewed == 2
    assert rep.differing == [f"node1:{on_node1}"] and not rep.clean
    assert rep.elsewhere_hosts == {"store1": 1, "store2": 4}  # the file without a DAQ copy; node2 not reached
    assert len(rep.unreachable) == 1 and rep.unreachable[0].startswith("node2: rsync exit")
    assert rep.lost == 0
    got = proofs(engine)
    renewed = {f for (f, n), p in got.items() if p >= began}
    assert renewed == {rows[2]["filename"], rows[3]["filename"]}
    # The command says the same, and what is left to the storage hosts' own audits.
    path = tmp_path / "gozen.yaml"
    path.write_text(yaml.safe_dump(data))
    r = subprocess.run(
        gozen_cmd(path, "audit", "--host", "daq1", "--no-repair"),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "4 replicas on store2's nodes: proven by `gozen audit` on store2" in r.stdout, r.stdout
    assert f"differs from the DAQ copy (its host's audit repairs it): node1:{on_node1}" in r.stdout, r.stdout
    assert "not reached: node2: rsync exit" in r.stdout, r.stdout
    lost = next(line for line in r.stdout.splitlines() if "files lost" in line)
    assert lost.split()[-1] == "0", r.stdout


def test_a_copy_waiting_for_its_proof_is_under_way_not_short(tmp_path: Path) -> None:
    _, cfg, engine, rows = fleet(tmp_path, "rsync://127.0.0.1:1/node1")
    with engine.begin() as conn:  # on node2, fsynced, store2's prover has not read it yet
        fid = conn.execute(select(files.c.id).where(files.c.filename == rows[0]["filename"])).scalar_one()
        conn.execute(
            replicas.update()
            .where(replicas.c.file_id == fid, replicas.c.node == "node2")
            .values(state="copied", proved_at=None)
        )
    rep = run_audit(cfg, engine, "store1")
    assert (rep.unreplicated, rep.in_progress, rep.short) == (1, 1, []) and rep.clean and rep.lost == 0
