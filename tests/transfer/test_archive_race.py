"""Exports from several storage hosts at once, on PostgreSQL: each packages and sends only its own nodes' files,
claims race without a duplicate key or an exception, and every file ends up in exactly one package."""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from astropy.io import fits
from sqlalchemy import Engine, select

from gozen.config import Config, parse_config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.tables import exports, files, replicas
from gozen.db.types import utcnow
from gozen.service import Context
from gozen.transfer import catalog, packages
from gozen.transfer.export import Exporter, ExportPass, receive_once

HOSTS = ("store1", "store2")


def fleet_config(tmp: Path, pg_url: str) -> Config:
    """store1 holds node1, store2 node2, the archive a directory on head (reached through its daemon)."""
    return parse_config(
        {
            "data_dir": str(tmp / "var"),
            "database": {"url": pg_url},
            "hosts": [
                {"name": "daq1", "address": "127.0.0.11", "roles": ["daq"]},
                {"name": "store1", "address": "127.0.0.12", "roles": ["storage"], "rsync_port": 8730},
                {"name": "store2", "address": "127.0.0.13", "roles": ["storage"], "rsync_port": 8730},
                {"name": "head", "address": "127.0.0.14", "roles": ["archive"], "rsync_port": 8730},
            ],
            "daq_volumes": [{"name": "daq-vol1", "path": "daq/vol1", "host": "daq1"}],
            "storage_nodes": [
                {"name": "node1", "path": "storage/node1", "host": "store1", "transport": "rsync"},
                {"name": "node2", "path": "storage/node2", "host": "store2", "transport": "rsync"},
            ],
            "archive": {"dest": "archive", "host": "head", "min_age_s": 0},
            "transfer": {"replication": 2},
        }
    )


def add_files(cfg: Config, engine: Engine, first: int, n: int) -> list[str]:
    """n small raw frames of night 20261125, catalogued, verified (and proven) on node1 and node2."""
    names = []
    for i in range(first, first + n):
        name = f"TMQ120261125{i:08d}11.fits"
        hdr = fits.Header({"DATA-TYP": "OBJECT", "PROJECT": "race", "EXP_ID": i, "DET-ID": 111})
        paths = [cfg.data_dir / "storage" / node / "20261125" / name for node in ("node1", "node2")]
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            fits.PrimaryHDU(np.full((4, 4), i % 256, dtype=np.uint8), hdr).writeto(p)
        data = paths[0].read_bytes()
        row = {
            "filename": name,
            "daq_file_id": None,
            "exp_id": None,
            "det_id": 111,
            "size_bytes": len(data),
            "checksum_xxh3": xxhash.xxh3_64(data).hexdigest(),
            "daq_host": "daq1",
            "daq_volume": "daq-vol1",
            "daq_path": str(cfg.data_dir / "daq/vol1" / name),
        }
        catalog.register(engine, [row], 2)
        with engine.begin() as conn:
            fid = conn.execute(select(files.c.id).where(files.c.filename == name)).scalar_one()
            ids = list(conn.execute(select(replicas.c.id).where(replicas.c.file_id == fid)).scalars())
            for rid, node, p in zip(ids, ("node1", "node2"), paths, strict=True):
                conn.execute(
                    replicas.update()
                    .where(replicas.c.id == rid)
                    .values(state="verified", node=node, path=str(p), verified_at=utcnow(), proved_at=utcnow())
                )
        names.append(name)
    return names


def some_of(candidates: Callable[[], list[Any]], rng: random.Random) -> list[Any]:
    """Two thirds of the candidates, shuffled: what an exporter that looked a moment earlier or later saw."""
    rows = candidates()
    return rng.sample(rows, k=len(rows) * 2 // 3)


def package(x: Exporter, start: threading.Barrier, results: list[ExportPass | BaseException], i: int) -> None:
    """An exporter's packaging, started with the others at once; whatever it raises is kept in results[i]."""
    try:
        start.wait()
        p = ExportPass()
        x.package_new(p)
        results[i] = p
    except BaseException as err:  # noqa: BLE001 - whatever it is, the test reports it
        results[i] = err


def export_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(exports, files.c.filename).join(files, files.c.id == exports.c.file_id)))


def test_exporters_of_two_hosts_race_without_a_duplicate_and_each_sends_only_its_own(
    tmp_path: Path, pg_url: str, pg_engine: Engine
) -> None:
    cfg = fleet_config(tmp_path, pg_url)
    engines = [make_engine(pg_url) for _ in range(4)]
    hosts = ["store1", "store1", "store2", "store2"]  # two exporters per host, four at once
    exporters = [Exporter(Context(cfg, h, e, "transfer:export")) for h, e in zip(hosts, engines, strict=True)]
    assert {x.dest for x in exporters} == {"rsync://gozen@127.0.0.14:8730/archive"}  # head's daemon
    for i, x in enumerate(exporters):  # each saw the files at its own moment: overlapping, different sets
        x.candidates = partial(some_of, x.candidates, random.Random(i))  # type: ignore[method-assign]
    made: list[Counter[int]] = []  # per round: files packaged by each exporter
    names: list[str] = []
    for rnd in range(8):
        names += add_files(cfg, pg_engine, rnd * 25, 25)
        before = {r.package for r in export_rows(pg_engine)}
        start = threading.Barrier(len(exporters))
        results: list[ExportPass | BaseException] = [ExportPass() for _ in exporters]
        threads = [threading.Thread(target=package, args=(x, start, results, i)) for i, x in enumerate(exporters)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        errors = [r for r in results if not isinstance(r, ExportPass)]
        assert not errors, errors
        passes = [r for r in results if isinstance(r, ExportPass)]
        assert all(p.errors == [] for p in passes), [p.errors for p in passes]
        got = Counter({i: p.packaged for i, p in enumerate(passes)})
        made.append(got)
        rows = export_rows(pg_engine)
        new = [r for r in rows if r.package not in before]
        if rnd == 7:  # then, one after the other, until every file left is taken
            for _ in range(10):
                for x in exporters:
                    x.package_new(ExportPass())
            continue
        assert sum(got.values()) == len(new)  # each new file claimed once, by one exporter
        by_package: dict[str, list[Any]] = defaultdict(list)
        for r in new:
            by_package[r.package].append(r)
        for host in HOSTS:  # one new package per exporter of that host that claimed files, none shared
            mine = sorted(p for p in by_package if packages._of_host(p, host))
            sizes = sorted(len(by_package[p]) for p in mine)
            claimed = sorted(got[i] for i, h in enumerate(hosts) if h == host and got[i])
            assert sizes == claimed, (host, mine, sizes, claimed)
        for p, prs in by_package.items():  # a package holds only its host's own node's files
            node = "node1" if packages._of_host(p, "store1") else "node2"
            assert all(f"/storage/{node}/" in r.source_path for r in prs), (p, [r.source_path for r in prs])
    rows = export_rows(pg_engine)
    assert sorted(r.filename for r in rows) == sorted(names)  # every file in exactly one package
    assert len({r.package for r in rows}) == len(set(Counter(r.package for r in rows)))
    # The race did happen: exporters of one host each made a package in the same round, and both hosts won files.
    assert any(got[0] and got[1] for got in made) or any(got[2] and got[3] for got in made), made
    assert any(got[0] + got[1] for got in made) and any(got[2] + got[3] for got in made), made
    names_used = Counter(r.package for r in rows)
    assert all(p.split("-")[0] == "20261125" and p.split("-")[2].isdigit() for p in names_used)

    # Sending: store1 sends its own packages only; store2's files are on a disk store1 cannot see.
    archive = tmp_path / "archive-on-head"
    for node2_file in (cfg.data_dir / "storage/node2").rglob("*.fits"):
        node2_file.rename(node2_file.with_suffix(".away"))  # not readable "from store1"
    store1 = exporters[0]
    store1.dest = str(archive)  # what head's rsync daemon serves (the module `archive`)
    for _ in range(2):
        store1.run_once()
    assert not recent_events(pg_engine, 20, kind="archive_export_failing")
    states = Counter((packages._of_host(r.package, "store1"), r.state) for r in export_rows(pg_engine))
    n1 = sum(n for (s1, _), n in states.items() if s1)
    assert states[(True, "exported")] == n1 and states[(False, "packaged")] == len(names) - n1
    assert receive_once(archive) == len(packages.awaiting_receipt(pg_engine, "store1"))
    assert packages.awaiting_receipt(pg_engine, "store2") == [] and packages.packages_to_send(pg_engine, "store1") == []
    r = store1.export()
    assert (r.acknowledged, r.errors) == (n1, [])
    assert {p for p, _ in packages.awaiting_receipt(pg_engine, "store1")} == set()
    for e in engines:
        e.dispose()
