"""`/metrics`: Prometheus's text format, moving as frames flow through the real DAQ code, public or
behind a token, answering with the database away; docs/metrics.md and the Grafana dashboard name
only metrics it exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, event, select

from gozen.config import Config
from gozen.couriers.store import remember_read
from gozen.daq import catalog
from gozen.daq.readout import Readout
from gozen.daq.writer import Writer
from gozen.db.engine import make_engine
from gozen.db.events import record_event
from gozen.db.migrate import upgrade
from gozen.db.tables import daq_files, exports, exposures, files
from gozen.metrics import DISK, SINGLE, WEATHER
from gozen.monitors.board import Reading, heartbeat, publish
from gozen.supervise.client import HostStatus, ProcessInfo
from gozen.supervise.fleet import host_readings
from gozen.transfer import catalog as transfer
from gozen.web.app import create_app
from gozen.web.auth import token_sha256
from tests.conftest import API_TOKEN, WAIT_S, free_port, web_section, write_config
from tests.daq.exposing import expose
from tests.web.served import serve_asgi, served

ROOT = Path(__file__).parents[2]
W, H, FRAMES = 200, 100, 6
CHIPS = [111, 112, 113, 114]
VIEWER_TOKEN = "viewer-token-0a1b2c3d"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def make_config(tmp: Path, top: dict[str, Any] | None = None, **web: Any) -> Config:
    tokens = [{"name": "grafana", "token_sha256": token_sha256(VIEWER_TOKEN), "role": "viewer"}]
    section = web_section(free_port())
    section["api_tokens"] = [*section["api_tokens"], *tokens]
    return write_config(
        tmp / "gozen.yaml",
        {
            "data_dir": str(tmp / "var"),
            "camera": {"width_px": W, "height_px": H, "fps": 20, "chips": CHIPS},
            "daq_volumes": [{"name": "vol1", "path": str(tmp / "vol1")}],
            "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 0.1, "frame_timeout_s": 1},
            "web": section | web,
            **(top or {}),
        },
    )


def scrape(url: str, **headers: str) -> Samples:
    """Every sample of /metrics as parsed by prometheus_client's own parser."""
    r = httpx.get(f"{url}/metrics", headers=headers, timeout=WAIT_S)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == CONTENT_TYPE_LATEST
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The database the DAQ and the web app share: a SQLite file, or the local PostgreSQL."""
    if request.param == "postgresql":
        yield request.getfixturevalue("pg_engine")
        return
    engine = make_engine(f"sqlite:///{tmp_path / 'gozen.sqlite'}")
    upgrade(engine)
    yield engine


def test_frames_through_the_daq_move_the_counters_per_chip(tmp_path: Path, database: Engine) -> None:
    cfg, engine = make_config(tmp_path), database
    readout, writer = Readout(cfg, engine, 0, "daq1"), Writer(cfg, engine, 0, "daq1")
    writer.attach(timeout_s=WAIT_S)
    with served(cfg, engine) as url:
        before = scrape(url)
        assert value(before, "gozen_daq_frames_read_total", chip="111", host="daq1") is None  # nothing yet
        expose(cfg, engine, readout, writer, catalog.ExposureRequest("F1", FRAMES, 20.0))
        first = scrape(url)
        expose(cfg, engine, readout, writer, catalog.ExposureRequest("F2", FRAMES, 20.0))
        second = scrape(url)
    for chip in map(str, CHIPS):
        for name in ("gozen_daq_frames_read_total", "gozen_daq_frames_written_total"):
            assert value(first, name, chip=chip, host="daq1") == FRAMES, (name, chip)
            assert value(second, name, chip=chip, host="daq1") == 2 * FRAMES, (name, chip)
        assert value(second, "gozen_daq_frames_missing_total", chip=chip, host="daq1") == 0
        assert value(second, "gozen_daq_frames_dropped_total", chip=chip, host="daq1") == 0
        assert value(second, "gozen_daq_files_written_total", chip=chip, host="daq1") == 2
        grown = value(second, "gozen_daq_written_bytes_total", chip=chip, host="daq1") or 0
        assert grown > (value(first, "gozen_daq_written_bytes_total", chip=chip, host="daq1") or 0) > 0
    assert (value(second, "gozen_daq_write_bytes_per_second", host="daq1") or 0) > 0  # files of the last minute
    assert sum(v for (n, _), v in second.items() if n == "gozen_daq_exposures") == 2, second
    assert value(second, "gozen_database_up") == 1


def seed_board(engine: Engine) -> None:
    """A reading of every kind the collector turns into a metric, a host's programs and a restart."""
    publish(
        engine,
        "test",
        [
            Reading("weather.temperature_c", 3.5, "degC", 60),
            Reading("weather.humidity_pct", 80.0, "%", 60),
            Reading("weather.pressure_hpa", 850.0, "hPa", 60),
            Reading("weather.wind_ms", 4.0, "m/s", 60),
            Reading("safety.safe", False, "", 60),
            Reading("df.vol1.used_pct", 25.0, "%", 60),
            Reading("df.vol1.free_bytes", 300, "B", 60),
            Reading("df.vol1.online", True, "", 60),
            Reading("daq.daq1.ring.r01w01.fill_pct", 40.0, "%", 60),
            Reading("daq.daq1.readout-01.frames_per_s", 8.0, "1/s", 60),
            Reading("camera.ccd_c", -10.0, "degC", 60),
            Reading("weather.cloud_pct", 50.0, "%", 0),  # already stale: left out, not a lie
        ],
    )
    heartbeat(engine, "head", "queue:server", 60)
    running = ProcessInfo("head", "queue", "server", "RUNNING", 123, None, None, 42.0, 0, "", "pid 123, uptime 0:00:42")
    seen = HostStatus("head", "127.0.0.1", 9001, True, processes=[running])
    publish(engine, "fleet:watch", host_readings(seen, None, 60), history=False)
    remember_read(engine, "maxi", "ok: 2 read, 0 new, 0 skipped", {})
    remember_read(engine, "gaia", "https://gaia.example/alerts: ConnectError: refused", {})
    record_event(engine, host="head", source="supervisord", kind="process_exited", subject="queue:server",
                 message="exited unexpectedly", severity="error")  # fmt: skip


def test_board_values_come_out_in_base_units(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    seed_board(engine)
    with served(cfg, engine) as url:
        got = scrape(url)
    assert value(got, "gozen_weather_temperature_celsius") == 3.5
    assert value(got, "gozen_weather_humidity_ratio") == pytest.approx(0.8)
    assert value(got, "gozen_weather_pressure_pascals") == 85_000
    assert value(got, "gozen_weather_wind_speed_meters_per_second") == 4.0
    assert value(got, "gozen_weather_cloud_cover_ratio") is None
    assert value(got, "gozen_safe") == 0
    disk = {"volume": "vol1", "kind": "daq"}
    assert value(got, "gozen_disk_used_ratio", **disk) == 0.25
    assert value(got, "gozen_disk_size_bytes", **disk) == 400 and value(got, "gozen_disk_used_bytes", **disk) == 100
    assert value(got, "gozen_daq_ring_fill_ratio", host="daq1", ring="r01w01") == 0.4
    assert value(got, "gozen_daq_frames_per_second", host="daq1", readout="readout-01") == 8
    assert value(got, "gozen_temperature_celsius", sensor="camera.ccd_c") == -10
    assert value(got, "gozen_program_up", host="head", program="queue:server") == 1
    assert value(got, "gozen_program_state", host="head", program="queue:server", state="RUNNING") == 1
    assert value(got, "gozen_program_restarts_total", host="head", program="queue:server") == 1
    assert 0 <= (value(got, "gozen_program_heartbeat_age_seconds", host="head", program="queue:server") or -1) < 60
    assert value(got, "gozen_host_reachable", host="head") == 1
    assert (value(got, "gozen_feed_read_ok", feed="maxi"), value(got, "gozen_feed_read_ok", feed="gaia")) == (1, 0)
    assert value(got, "gozen_alerts_total", feed="maxi") == 0


def test_an_empty_database_answers_every_family_without_an_error(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    with served(cfg) as url:
        got = scrape(url)
    assert value(got, "gozen_database_up") == 1
    assert value(got, "gozen_queue_mode", mode="normal") == 1
    assert value(got, "gozen_transfer_oldest_unreplicated_age_seconds") == 0


def test_with_metrics_not_public_a_token_is_needed(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, metrics_public=False)
    with served(cfg) as url:
        refused = httpx.get(f"{url}/metrics", timeout=WAIT_S)
        wrong = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=WAIT_S)
        assert (refused.status_code, wrong.status_code) == (401, 401)
        assert "metrics_public" in refused.json()["detail"] and "gozen_" not in refused.text
        assert value(scrape(url, Authorization=f"Bearer {VIEWER_TOKEN}"), "gozen_database_up") == 1
        assert value(scrape(url, Authorization=f"Bearer {API_TOKEN}"), "gozen_database_up") == 1


def serve_unmigrated(cfg: Config, engine: Engine) -> AbstractContextManager[str]:
    """The app on an engine whose database cannot be opened (tests.web.served would migrate it first)."""
    return serve_asgi(create_app(cfg, engine), cfg.web.port)


def test_with_the_database_away_it_says_so_and_nothing_else(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    away = make_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'gozen.sqlite'}")
    with serve_unmigrated(cfg, away) as url:
        got = scrape(url)
    assert value(got, "gozen_database_up") == 0
    assert {name for name, _ in got} == {"gozen_database_up", "gozen_metrics_scrape_duration_seconds"}


def test_a_scrape_makes_as_many_queries_with_a_hundred_exposures_as_with_one(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    readout, writer = Readout(cfg, engine, 0, "daq1"), Writer(cfg, engine, 0, "daq1")
    writer.attach(timeout_s=WAIT_S)
    expose(cfg, engine, readout, writer, catalog.ExposureRequest("F1", 2, 20.0))
    with served(cfg, engine) as url:
        scrape(url)
        statements.clear()
        scrape(url)
        one = len(statements)
        exp_ids = catalog.request_exposures(engine, catalog.ExposureRequest("F2", 2, 20.0), 100)
        with engine.begin() as conn:
            conn.execute(daq_files.insert(), [_file_row(exp_id, det) for exp_id in exp_ids for det in CHIPS])
        statements.clear()
        fresh = scrape(url)
        assert len(statements) == one < 30  # one per family, whatever the rows
        # All of them closed an hour ago: the next scrape keeps their sums in memory, the one after reads none.
        with engine.begin() as conn:
            conn.execute(exposures.update().values(state="done", start_at=datetime.now(UTC) - timedelta(hours=1)))
        settling = scrape(url)
        statements.clear()
        settled = scrape(url)
        assert len(statements) == one
    for got in (fresh, settling, settled):
        assert value(got, "gozen_daq_files_written_total", chip="111", host="daq1") == 101
        assert value(got, "gozen_daq_frames_read_total", chip="111", host="daq1") == 2  # F1's readout report
    assert value(settled, "gozen_daq_exposures", state="done") == 101


def _file_row(exp_id: int, det: int) -> dict[str, Any]:
    name = f"TMQ120260101{exp_id:08d}{det % 100:02d}.fits"
    return {"exp_id": exp_id, "det_id": det, "state": "written", "path": f"/x/{name}", "filename": name,
            "daq_host": "daq1", "daq_volume": "vol1", "size_bytes": 1000, "frames_expected": 2,
            "frames_written": 2, "frames_missing": 0, "frames_damaged": 0, "naxis1": W, "naxis2": H,
            "naxis3": 2, "writer": "daq:writer-01", "created_at": datetime.now(UTC)}  # fmt: skip


def test_copies_and_the_archive_move_the_backlog_the_copy_counter_and_the_lag(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, {"archive": {"dest": str(tmp_path / "archive")}})
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    rows = [_catalog_row(f"TMQ12026010100000001{c:02d}.fits", 1000 * c) for c in (11, 12)]
    assert transfer.register(engine, rows, 1) == 2
    with served(cfg, engine) as url:
        before = scrape(url)
        for _ in rows:
            job = transfer.claim(engine, "test-agent", timedelta(minutes=5))
            assert job is not None and transfer.place(engine, job, "node1", f"/n/{job.filename}")
            transfer.verified(engine, job, "node1", f"/n/{job.filename}")
        with engine.begin() as conn:  # the archive took the first file
            first = conn.execute(select(files.c.id).order_by(files.c.id)).scalars().first()
            conn.execute(exports.insert().values(file_id=first, state="acknowledged", packaged_at=datetime.now(UTC)))
        after = scrape(url)
    assert value(before, "gozen_transfer_backlog_files", node="", state="queued") == 2
    assert value(before, "gozen_transfer_backlog_bytes", node="", state="queued") == 23_000
    assert (value(before, "gozen_transfer_oldest_unreplicated_age_seconds") or 0) > 0
    assert value(before, "gozen_transfer_copied_bytes_total", node="node1") is None
    assert (value(before, "gozen_archive_lag_seconds") or 0) > 0
    assert value(after, "gozen_transfer_backlog_files", node="", state="queued") is None
    assert value(after, "gozen_transfer_oldest_unreplicated_age_seconds") == 0
    assert value(after, "gozen_transfer_copied_files_total", node="node1") == 2
    assert value(after, "gozen_transfer_copied_bytes_total", node="node1") == 23_000
    assert value(after, "gozen_archive_files", state="acknowledged") == 1
    assert 0 < (value(after, "gozen_archive_lag_seconds") or 0) < WAIT_S  # the second file waits


def _catalog_row(name: str, size: int) -> dict[str, Any]:
    return {"filename": name, "exp_id": 1, "det_id": 111, "size_bytes": size, "checksum_xxh3": "0" * 16,
            "daq_host": "daq1", "daq_volume": "vol1", "daq_path": f"/d/{name}"}  # fmt: skip


# -- the documentation and the dashboard -------------------------------------------------------


def documented_names() -> set[str]:
    return set(re.findall(r"^\| `(gozen_[a-z_]+)`", (ROOT / "docs/metrics.md").read_text(), re.M))


def test_every_exported_family_is_documented_and_every_documented_one_exported(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, {"archive": {"dest": str(tmp_path / "archive")}})
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    seed_board(engine)
    every_key = [Reading(f"weather.{k}", 1.0, "", 60) for k in WEATHER]
    every_key += [Reading(k, 1.0, "", 60) for k in SINGLE] + [Reading(f"df.vol1.{k}", 0.5, "", 60) for k in DISK]
    publish(engine, "test", every_key)
    with served(cfg, engine) as url:
        text = httpx.get(f"{url}/metrics", timeout=WAIT_S).text
    exported = {m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", text, re.M)}
    assert exported == documented_names()


def test_the_grafana_dashboard_uses_only_documented_metrics() -> None:
    board = json.loads((ROOT / "docs/grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert board["schemaVersion"] >= 36 and len(exprs) >= 11
    used = {name for e in exprs for name in re.findall(r"\b(gozen_[a-z_]+)", e)}
    assert used and used - documented_names() == set()
