"""The Data page and /api/data measure a node with a max_bytes quota against its quota, and show failed copies."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import insert

from gozen.db.engine import make_engine
from gozen.db.tables import files, replicas
from gozen.db.types import utcnow
from tests.web.test_security import serve_app

MB = 10**6


def catalogue(engine: object, name: str, size: int, node: str | None, state: str, error: str | None = None) -> None:
    now = utcnow()
    with engine.begin() as conn:  # type: ignore[attr-defined]
        fid = conn.execute(
            insert(files).values(
                filename=name,
                size_bytes=size,
                checksum_xxh3="0" * 16,
                daq_host="localhost",
                daq_volume="daq-vol1",
                daq_path=f"/nowhere/{name}",
                daq_state="deleted",
                registered_at=now,
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(replicas).values(
                file_id=fid,
                node=node,
                path=None if node is None else f"/nowhere/{node}/{name}",
                state=state,
                attempts=5,
                last_error=error,
                queued_at=now,
                verified_at=now if state == "verified" else None,
            )
        )


def test_api_data_shows_a_node_with_a_quota_against_its_quota_not_the_host_disk(tmp_path: Path) -> None:
    with serve_app(tmp_path) as (url, cfg):
        quota = next(n.max_bytes for n in cfg.storage_nodes if n.name == "node0")
        assert quota == 2**30  # the simulated observatory's nodes: 1 GiB each
        for n in cfg.storage_nodes:
            cfg.under_data_dir(n.path).mkdir(parents=True, exist_ok=True)
        engine = make_engine(cfg.database_url)
        catalogue(engine, "TMQ1202611250000000111.fits", 300 * MB, "node0", "verified")
        catalogue(engine, "TMQ1202611250000000211.fits", 200 * MB, "node0", "copying")
        body = httpx.get(f"{url}/api/data", timeout=60).json()
        node0 = next(v for v in body["volumes"] if v["name"] == "node0")
        assert node0["quota_bytes"] == quota and node0["total_bytes"] == quota
        assert node0["used_bytes"] == 500 * MB
        assert abs(node0["used_pct"] - 100 * 500 * MB / quota) < 0.01
        assert node0["free_bytes"] <= quota - 500 * MB
        node1 = next(v for v in body["volumes"] if v["name"] == "node1")
        assert node1["used_pct"] == 0 and node1["free_bytes"] <= quota
        page = httpx.get(f"{url}/data", timeout=60).text
        assert f"{100 * 500 * MB / quota:.1f}%" in page and "of quota" in page


def test_data_page_and_api_show_copies_failed_for_good(tmp_path: Path) -> None:
    with serve_app(tmp_path) as (url, cfg):
        engine = make_engine(cfg.database_url)
        catalogue(engine, "TMQ1202611250000000311.fits", MB, None, "failed", "no source: the DAQ copy is gone")
        catalogue(engine, "TMQ1202611250000000411.fits", MB, None, "queued", "no node can take it")
        body = httpx.get(f"{url}/api/data", timeout=60).json()
        assert body["copies_failed"] == 1 and body["copies_waiting_for_a_node"] == 1
        assert body["failures"] == [{"file": "TMQ1202611250000000311.fits", "error": "no source: the DAQ copy is gone"}]
        page = httpx.get(f"{url}/data", timeout=60).text
        assert "1 copies failed for good" in page and "TMQ1202611250000000311.fits" in page
        assert "every file fully replicated" not in page
