"""`gozen daq stats` and the DAQ page's numbers: per DAQ host and per chip, from rows the DAQ's own
catalog functions wrote (SQLite and PostgreSQL), and the DAQ's values on the status board."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from typer.testing import CliRunner

from gozen.cli import app
from gozen.config import Config, tomoe_chip_ids
from gozen.daq import catalog
from gozen.daq.snapshot import StatusSnapshot
from gozen.daq.stats import ChipState, daq_overview, night_start, overview_json
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.monitors.board import Reading, heartbeat_key, publish
from tests.conftest import write_config

FRAMES = 12
CHIPS = [111, 112, 121, 211, 212, 221]  # daq0 reads Q1, daq1 Q2
DAQ_PROGRAMS = ("daq:readout-01", "daq:writer-01")  # per DAQ host (daq:control runs on daq-master head)
FILE_BYTES = 54_236_160


def config_data(tmp: Path, **extra: Any) -> dict[str, Any]:
    daq = {"roles": ["daq"]}
    return {
        "data_dir": str(tmp / "var"),
        "camera": {"chips": CHIPS, "readout": "full"},
        "daq": {"readouts": 1, "writers": 1},
        "hosts": [
            {"name": "head", "roles": ["web", "daq-master", "queue", "monitors"]},
            {"name": "daq0", "address": "127.0.0.2", "chips": ["Q1"], **daq},
            {"name": "daq1", "address": "127.0.0.3", "chips": ["Q2"], **daq},
        ],
        **extra,
    }


@dataclass(frozen=True)
class Seeded:
    cfg: Config
    engine: Engine
    starts: list[datetime]  # of the window's two exposures


def _file(exp_id: int, det: int, host: str, at: datetime, **row: Any) -> dict[str, Any]:
    name = f"TMQ{det // 100}20260101{exp_id:08d}{det % 100:02d}.fits"
    return {
        "exp_id": exp_id, "det_id": det, "state": "written", "path": f"/daq/{name}", "filename": name,
        "daq_host": host, "daq_volume": "vol1", "size_bytes": FILE_BYTES, "checksum_xxh3": "0" * 16,
        "frames_expected": FRAMES, "frames_written": FRAMES, "frames_missing": 0, "frames_damaged": 0,
        "naxis1": 2160, "naxis2": 1200, "naxis3": FRAMES, "writer": "daq:writer-01", "created_at": at,
        "overscan_median": 1000.0 + exp_id, "overscan_noise": 3.0,
    } | row  # fmt: skip


def _report(exp_id: int, det: int, host: str, **row: Any) -> dict[str, Any]:
    return {
        "exp_id": exp_id, "det_id": det, "readout": "daq:readout-01", "daq_host": host, "recognised": True,
        "frames_read": FRAMES, "frames_missed": 0, "frames_damaged": 0, "frames_dropped": 0,
    } | row  # fmt: skip


def _exposure(engine: Engine, start: datetime) -> int:
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("STATS", FRAMES, 2.0), 1)
    end = start + timedelta(seconds=FRAMES / 2)
    assert catalog.arm(engine, exp_id, start, end, CHIPS, StatusSnapshot(start.isoformat(), {}))
    return exp_id


def seed(cfg: Config, engine: Engine, now: datetime) -> Seeded:
    """Two exposures in the last hour with one fault of each kind, one two hours ago, and the board.

    111 ok · 112 frames missing · 121 dropped (ring full) · 211 damaged · 212 did not answer ·
    221 no data in the last hour (a file two hours ago) · 311 not configured, written by a host
    the config no longer names.
    """
    old = _exposure(engine, now - timedelta(hours=2))
    catalog.record_files(engine, [_file(old, 221, "daq1", now - timedelta(hours=2) + timedelta(seconds=8))])
    starts = [now - timedelta(minutes=10), now - timedelta(minutes=5)]
    for start in starts:
        exp = _exposure(engine, start)
        at = start + timedelta(seconds=8)
        files = [_file(exp, d, "daq0" if d < 200 else "daq1", at) for d in (111, 112, 121, 211)]
        files += [_file(exp, 311, "daq9", at)]
        reports = [_report(exp, d, "daq0" if d < 200 else "daq1") for d in (111, 112, 121, 211)]
        if start == starts[1]:
            files[1] |= {"frames_written": FRAMES - 2, "frames_missing": 2}
            files[2] |= {"frames_written": FRAMES - 1, "frames_missing": 1}
            reports[2] |= {"frames_read": FRAMES, "frames_dropped": 1}
            files[3] |= {"frames_damaged": 1}
        files.append(
            _file(exp, 212, "daq1", at, state="lost", path=None, size_bytes=0, frames_written=0,
                  frames_missing=FRAMES, overscan_median=None, overscan_noise=None)
        )  # fmt: skip
        reports.append(_report(exp, 212, "daq1", recognised=False, frames_read=0, frames_missed=FRAMES))
        assert catalog.record_files(engine, files) == []
        catalog.record_readout_reports(engine, reports)
    _board(engine, now)
    return Seeded(cfg, engine, starts)


def _board(engine: Engine, now: datetime) -> None:
    """daq0: two rings, two readouts, every heartbeat fresh; daq1: stale values, a silent writer."""
    fresh = [
        Reading("daq.daq0.ring.r01w01.fill_pct", 12.5, "%", 30),
        Reading("daq.daq0.ring.r01w02.fill_pct", 40.0, "%", 30),
        Reading("daq.daq0.readout-01.frames_per_s", 8.0, "1/s", 30),
        Reading("daq.daq0.readout-02.frames_per_s", 6.0, "1/s", 30),
    ]
    publish(engine, "daq:readout-01", fresh, now - timedelta(seconds=3))
    stale = [
        Reading("daq.daq1.ring.r01w01.fill_pct", 90.0, "%", 30),
        Reading("daq.daq1.readout-01.frames_per_s", 1.0, "1/s", 30),
    ]
    publish(engine, "daq:readout-01", stale, now - timedelta(minutes=5))
    beats = [Reading(heartbeat_key("daq0", p), now.isoformat(), "", 60) for p in DAQ_PROGRAMS]
    beats.append(Reading(heartbeat_key("daq1", "daq:readout-01"), now.isoformat(), "", 60))
    publish(engine, "test", beats, now, history=False)


@pytest.fixture
def engine(both_engines: Engine) -> Engine:
    return both_engines


def test_per_chip_states_numbers_and_last_file(tmp_path: Path, engine: Engine) -> None:
    cfg = write_config(tmp_path / "gozen.yaml", config_data(tmp_path))
    now = datetime.now(UTC)
    s = seed(cfg, engine, now)
    ov = daq_overview(cfg, engine, now - timedelta(hours=1), now)

    assert [c.det_id for c in ov.chips[:84]] == tomoe_chip_ids()
    states = {c.det_id: c.state for c in ov.chips if c.state != ChipState.NOT_CONFIGURED}
    assert states == {
        111: ChipState.OK, 112: ChipState.MISSING, 121: ChipState.DROPPED, 211: ChipState.DAMAGED,
        212: ChipState.NOT_RECOGNISED, 221: ChipState.NO_DATA,
    }  # fmt: skip
    c111 = ov.chip(111)
    assert c111 is not None and c111.host == "daq0" and c111.files == 2 and c111.frames_read == 2 * FRAMES
    assert c111.bytes == 2 * FILE_BYTES and c111.first_start == s.starts[0]
    assert c111.last_file == f"TMQ120260101{ov.chip(111) and _exp_of(c111.last_file):08d}11.fits"
    assert c111.last_file_at == s.starts[1] + timedelta(seconds=8)
    assert c111.overscan_median == 1000.0 + _exp_of(c111.last_file) and c111.overscan_noise == 3.0
    span_s = (c111.last_file_at - s.starts[0]).total_seconds()
    assert c111.mb_per_s == pytest.approx(2 * FILE_BYTES / 1e6 / span_s)
    c212 = ov.chip(212)
    assert c212 is not None and (c212.files, c212.files_lost, c212.unrecognised, c212.last_file) == (0, 2, 2, None)
    assert c212.frames_missing == 2 * FRAMES and c212.overscan_median is None
    c311 = ov.chip(311)
    assert c311 is not None and c311.host == "daq9" and c311.files == 2 and not c311.configured
    assert (ov.chip(121).frames_dropped, ov.chip(211).frames_damaged, ov.chip(112).frames_missing) == (1, 1, 2)  # type: ignore[union-attr]

    wider = daq_overview(cfg, engine, now - timedelta(hours=3), now).chip(221)
    assert wider is not None and wider.state == ChipState.OK and wider.files == 1


def _exp_of(filename: str | None) -> int:
    assert filename is not None
    return int(filename[12:20])


def test_per_host_totals_board_values_and_heartbeats(tmp_path: Path, engine: Engine) -> None:
    cfg = write_config(tmp_path / "gozen.yaml", config_data(tmp_path))
    now = datetime.now(UTC)
    seed(cfg, engine, now)
    ov = daq_overview(cfg, engine, now - timedelta(hours=1), now)
    hosts = {h.host: h for h in ov.hosts}
    assert list(hosts) == ["daq0", "daq1", "daq9"]
    d0, d1, d9 = hosts["daq0"], hosts["daq1"], hosts["daq9"]
    assert d0.chips == [111, 112, 121] and d1.chips == [211, 212, 221] and d9.chips == [] and not d9.configured
    assert (d0.files, d0.frames_missing, d0.frames_dropped, d0.frames_read) == (6, 3, 1, 6 * FRAMES)
    assert (d1.files, d1.files_lost, d1.frames_damaged, d1.unrecognised) == (2, 2, 1, 2)
    assert d0.mb_per_s == pytest.approx(3 * ov.chip(111).mb_per_s)  # type: ignore[union-attr]
    assert d0.last_file_at == ov.chip(111).last_file_at  # type: ignore[union-attr]

    assert d0.ring_fill_pct is not None and d0.ring_fill_pct.value == 40.0 and not d0.ring_fill_pct.stale
    assert d0.frames_per_s is not None and d0.frames_per_s.value == 14.0 and 2 <= d0.frames_per_s.age_s < 60
    assert d1.ring_fill_pct is not None and d1.ring_fill_pct.stale and d1.ring_fill_pct.age_s >= 300
    assert d0.up and set(d0.heartbeats) == set(DAQ_PROGRAMS) and d0.silent == []
    assert not d1.up and d1.silent == ["daq:writer-01"] and d1.heartbeats["daq:writer-01"] is None
    assert not d9.up and d9.heartbeats == {} and d9.frames_per_s is None

    doc = json.loads(json.dumps(overview_json(ov)))
    assert doc["totals"]["files"] == 10 and doc["hosts"][0]["up"] is True
    assert [c["state"] for c in doc["chips"] if c["det_id"] in (111, 212)] == ["ok", "not_recognised"]


def test_one_query_per_table_whatever_the_chips(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "gozen.yaml", config_data(tmp_path))
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    now = datetime.now(UTC)
    seed(cfg, engine, now)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    daq_overview(cfg, engine, now - timedelta(hours=1), now)
    assert len(statements) == 3, statements  # daq_files, readout_reports, the status board


def test_night_starts_at_local_noon() -> None:
    kiso = 137.625417  # UTC+9:10
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC) - timedelta(hours=kiso / 15)  # 02:49:30 UTC
    assert night_start(datetime(2026, 1, 1, 15, tzinfo=UTC), kiso) == noon
    assert night_start(datetime(2026, 1, 1, 2, 49, tzinfo=UTC), kiso) == noon - timedelta(days=1)


def table_rows(output: str) -> dict[str, list[str]]:
    """The rows of the command's tables by their first cell, cut where the header's columns start."""
    rows: dict[str, list[str]] = {}
    starts: list[int] = []
    for line in output.splitlines():
        words = line.split()
        if words[:2] in (["host", "up"], ["chip", "host"]):
            starts = [m.start() for m in re.finditer(r"(?<!\S)\S", line)]
            starts = [i for i in starts if i == starts[0] or line[i - 2 : i] == "  "]  # "ring fill" is one column
        elif starts and words:
            cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
            rows[cells[0]] = cells
    return rows


def test_cli_stats_tables_json_and_no_data(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "gozen.yaml", config_data(tmp_path))
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    runner = CliRunner()
    env = {"GOZEN_CONFIG": str(tmp_path / "gozen.yaml"), "COLUMNS": "240", "GOZEN_HOST": "head"}
    empty = runner.invoke(app, ["daq", "stats"], env=env)
    assert empty.exit_code == 0, empty.output
    assert "no exposure yet" in empty.output and "last 1 h: no DAQ data" in empty.output

    seed(cfg, engine, datetime.now(UTC))
    text = runner.invoke(app, ["daq", "stats"], env=env)
    assert text.exit_code == 0, text.output
    assert "per DAQ host" in text.output and "per chip" in text.output
    lines = table_rows(text.output)
    # The console's width is fixed when the CLI is imported: a narrow one wraps the ages onto a line of their own.
    assert lines["daq0"][1:3] == ["up", "3"] and lines["daq0"][3].startswith("14/s"), lines["daq0"]
    assert lines["daq1"][1].startswith("down: daq:writer-01") and lines["daq1"][4].startswith("90%"), lines["daq1"]
    assert "(stale)" in text.output and re.search(r"\d+ s ago", text.output)
    assert lines["121"][2:7] == ["frames dropped (ring full)", "24", "1", "0", "1"]
    assert lines["212"][2] == "did not answer at start" and lines["221"][2] == "no data yet"
    assert lines["111"][9] == f"{1000 + _exp_of(lines['111'][10].split()[0]):.1f} ± 3.00"
    doc = json.loads(runner.invoke(app, ["daq", "stats", "--json", "--hours", "3"], env=env).output)
    assert doc["tonight"]["files"] >= 11 and [c for c in doc["chips"] if c["det_id"] == 221][0]["state"] == "ok"
    bad = runner.invoke(app, ["daq", "stats", "--hours", "0"], env=env)
    assert bad.exit_code == 2 and "--hours" in bad.output
