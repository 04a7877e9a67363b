"""The BI views answer the same rows on SQLite and PostgreSQL after a simulated night, seeded through the
parts' own APIs (DAQ catalog, transfer catalog and packages, status board)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, inspect, text

from gozen.config import parse_config
from gozen.daq import catalog as daq
from gozen.daq.snapshot import StatusSnapshot
from gozen.db.engine import make_engine
from gozen.db.migrate import downgrade, upgrade
from gozen.db.tables import quicklook
from gozen.db.views import SITE_TIME, VIEWS, set_site_time, site_time, utc_offset_min
from gozen.monitors.board import Reading, publish
from gozen.report.night import night_of
from gozen.transfer import catalog as transfer
from gozen.transfer import packages
from gozen.transfer.agents import push_once


@pytest.fixture
def engine(both_engines: Engine) -> Engine:
    return both_engines


def t(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


# (exp, object, data type, n_frames, fps, start (UTC), chips); Asia/Tokyo: nights turn at 03:00 UTC
EXPOSURES = {
    "A": ("M42", "OBJECT", 10, 2.0, "2025-01-10 11:00:00", [1, 2]),  # 20:00 JST: night 2025-01-10
    "B": ("M42", "OBJECT", 10, 2.0, "2025-01-10 20:00:00", [1, 2]),  # 05:00 JST: still 2025-01-10
    "C": ("FLAT", "FLAT", 5, 1.0, "2025-01-11 02:30:00", [1]),  # 11:30 JST: still 2025-01-10
    "D": ("M1", "OBJECT", 10, 2.0, "2025-01-11 04:00:00", [1, 2]),  # 13:00 JST: night 2025-01-11
}
# (exp, chip) -> (size, written, missing, damaged, overscan median, overscan noise); chip B2 is lost
FILES = {
    ("A", 1): (1000, 10, 0, 0, 1000.0, 5.0),
    ("A", 2): (1100, 10, 0, 1, 1010.0, 6.0),
    ("B", 1): (900, 8, 2, 0, 1004.0, 5.5),
    ("C", 1): (500, 5, 0, 0, None, None),
    ("D", 1): (1000, 10, 0, 0, 990.0, 4.0),
    ("D", 2): (1000, 10, 0, 0, 995.0, 4.0),
}
# (exp, chip) -> sky, noise, stars, fwhm
LOOKS = {
    ("A", 1): (100.0, 10.0, 50, 3.0),
    ("A", 2): (110.0, 12.0, 40, 3.4),
    ("B", 1): (200.0, 20.0, 10, None),
    ("C", 1): (300.0, 30.0, 5, 2.0),
    ("D", 1): (90.0, 9.0, 60, 2.5),
    ("D", 2): (94.0, 9.5, 61, 2.7),
}


def filename(exp_id: int, chip: int) -> str:
    return f"TMQ{chip // 100}20250110{exp_id:08d}{chip % 100:02d}.fits"


def seed_night(engine: Engine) -> dict[str, Any]:
    """A night as the parts record it: exposures armed and closed, files written and one lost, quick looks,
    files catalogued and copied to two nodes (one copy failing), two exported, weather readings."""
    ids: dict[str, int] = {}
    for name, (obj, dtype, n, fps, start, chips) in EXPOSURES.items():
        req = daq.ExposureRequest(object=obj, n_frames=n, fps=fps, data_type=dtype, recipe_name=f"r-{name}")
        (ids[name],) = daq.request_exposures(engine, req, 1)
        at = t(start)
        assert daq.arm(engine, ids[name], at, at + timedelta(seconds=n / fps), chips, StatusSnapshot(start, {}))
    rows = []
    for (name, chip), (size, written, missing, damaged, osm, osn) in FILES.items():
        n = EXPOSURES[name][2]
        rows.append(
            {
                "exp_id": ids[name],
                "det_id": chip,
                "state": "written",
                "path": f"/daq/{filename(ids[name], chip)}",
                "filename": filename(ids[name], chip),
                "daq_host": "daq0",
                "daq_volume": "vol0",
                "size_bytes": size,
                "checksum_xxh3": f"{ids[name]:08x}{chip:08x}",
                "frames_expected": n,
                "frames_written": written,
                "frames_missing": missing,
                "frames_damaged": damaged,
                "naxis1": 64,
                "naxis2": 32,
                "naxis3": n,
                "writer": "daq:writer-1",
                "created_at": t(EXPOSURES[name][4]) + timedelta(seconds=30),
                "overscan_median": osm,
                "overscan_noise": osn,
            }
        )
    assert daq.record_files(engine, rows) == []

    def lost(o: daq.OverdueExposure, chip: int) -> dict[str, Any]:
        row = daq.lost_file_row(
            o.exp_id, chip, filename(o.exp_id, chip), "daq0", daq.CONTROL_WRITER, o.n_frames, (64, 32)
        )
        return {**row, "created_at": o.start_at + timedelta(minutes=2)}

    closed = daq.finish_exposures(engine, timedelta(seconds=1), lost_row=lost)
    assert {c.exp_id: str(c.state) for c in closed} == {
        ids["A"]: "done",
        ids["B"]: "incomplete",
        ids["C"]: "done",
        ids["D"]: "done",
    }
    (ids["E"],) = daq.request_exposures(engine, daq.ExposureRequest(object="M1", n_frames=3, fps=1.0), 1)
    assert daq.stop_exposure(engine, ids["E"], "unsafe: humidity")
    assert [s.exp_id for s in daq.end_stopped(engine)] == [ids["E"]]

    with engine.begin() as conn:  # daq:quicklook's rows (its store is being built alongside these views)
        for (name, chip), (sky, noise, stars, fwhm) in LOOKS.items():
            conn.execute(
                insert(quicklook).values(
                    exp_id=ids[name],
                    det_id=chip,
                    daq_host="daq0",
                    made_at=t(EXPOSURES[name][4]) + timedelta(minutes=1),
                    binning=8,
                    width=8,
                    height=4,
                    z1=0.0,
                    z2=1.0,
                    png=b"\x89PNG",
                    sky_adu=sky,
                    noise_adu=noise,
                    n_stars=stars,
                    fwhm_px=fwhm,
                )
            )

    cfg = parse_config(
        {"transfer": {"replication": 2}, "storage_nodes": [{"name": n, "path": f"/{n}"} for n in ("node0", "node1")]}
    )
    assert push_once(cfg, engine, "daq0", scan=False) == 6
    a2, night1 = filename(ids["A"], 2), {filename(ids[n], c) for n, c in FILES if n in "ABC"}
    for _ in range(8):  # night 2025-01-10's copies; night 2025-01-11's stay queued
        job = transfer.claim(engine, "agent:1", timedelta(minutes=5))
        assert job is not None and job.filename in night1
        node = "node1" if "node0" in job.nodes_taken else "node0"
        if job.filename == a2 and node == "node1":
            transfer.failed(engine, job, "checksum mismatch on node1", None)
            continue
        assert transfer.place(engine, job, node, f"/{node}/{job.filename}")
        transfer.verified(engine, job, node, f"/{node}/{job.filename}")
    file_ids = {r.filename: r.id for r in transfer.audit_snapshot(engine)[0]}
    c1 = filename(ids["C"], 1)
    transfer.mark_daq_deleted(engine, file_ids[c1])

    def export_row(name: str) -> dict[str, Any]:
        fid = file_ids[name]
        return {"file_id": fid, "night": "20250110", "manifest": {}, "packaged_at": t("2025-01-11 05:00:00")}

    a1, b1 = filename(ids["A"], 1), filename(ids["B"], 1)
    assert packages.record_packages(engine, "daq0", {"20250110": [export_row(a1)]}, [export_row(c1)]) == (1, 1)
    assert packages.package_exported(engine, "20250110-daq0-001") == 1
    assert packages.settle_package(engine, "20250110-daq0-001", {a1}, {}) == (1, [])
    assert packages.record_packages(engine, "daq0", {"20250110": [export_row(b1)]}, []) == (1, 0)
    assert packages.package_exported(engine, "20250110-daq0-002") == 1

    weather = [
        ("2025-01-10 12:00:00", 1.0, True),
        ("2025-01-10 12:20:00", 2.0, True),
        ("2025-01-10 12:40:00", 4.5, False),
        ("2025-01-10 13:10:00", -1.0, False),
        ("2025-01-11 03:30:00", 0.5, True),  # 12:30 JST: night 2025-01-11
    ]
    for when, temp, safe in weather:
        readings = [
            Reading("weather.temperature_c", temp, "degC", 60),
            Reading("weather.safe", safe, "", 60),
            Reading("weather.summary", "clear", "", 60),  # text: not aggregated
            Reading("df.node0.used_pct", 50.0, "%", 60),  # not weather
        ]
        publish(engine, "weather:station", readings, t(when))
    return ids


def norm(v: Any) -> Any:
    """One spelling of a value on both databases: times as aware datetimes, numbers as floats or ints."""
    if isinstance(v, datetime):
        return v.astimezone(UTC)
    if isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[10] == " ":
        return datetime.fromisoformat(v).replace(tzinfo=UTC)
    if isinstance(v, Decimal | float):
        return round(float(v), 9)
    return v


def rows(engine: Engine, view: str, order: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        got = conn.execute(text(f"SELECT * FROM {view} ORDER BY {order}")).mappings().all()
    return [{k: norm(v) for k, v in r.items()} for r in got]


def test_nightly_summary_counts_each_night(engine: Engine) -> None:
    ids = seed_night(engine)
    with engine.connect() as conn:
        requested = conn.execute(text(f"SELECT requested_at FROM exposures WHERE exp_id = {ids['E']}")).scalar_one()
    tonight = night_of(norm(requested), parse_config({}).local_tz)
    zero = dict.fromkeys(
        ("frames_expected", "frames_written", "frames_missing", "frames_damaged", "files_written", "files_lost"), 0
    )
    assert rows(engine, "v_nightly_summary", "night") == [
        {
            "night": "2025-01-10",
            "exposures": 3,
            "exposures_done": 2,
            "exposures_incomplete": 1,
            "exposures_failed": 0,
            "exposures_pending": 0,
            "frames_expected": 45,
            "frames_written": 33,
            "frames_missing": 12,
            "frames_damaged": 1,
            "files_written": 4,
            "files_lost": 1,
            "bytes": 3500,
            "first_start_at": t("2025-01-10 11:00:00"),
            "last_start_at": t("2025-01-11 02:30:00"),
            "replicas_verified": 7,
            "files_exported": 2,
        },
        {
            "night": "2025-01-11",
            "exposures": 1,
            "exposures_done": 1,
            "exposures_incomplete": 0,
            "exposures_failed": 0,
            "exposures_pending": 0,
            "frames_expected": 20,
            "frames_written": 20,
            "frames_missing": 0,
            "frames_damaged": 0,
            "files_written": 2,
            "files_lost": 0,
            "bytes": 2000,
            "first_start_at": t("2025-01-11 04:00:00"),
            "last_start_at": t("2025-01-11 04:00:00"),
            "replicas_verified": 0,
            "files_exported": 0,
        },
        {
            "night": tonight,
            "exposures": 1,
            "exposures_done": 0,
            "exposures_incomplete": 0,
            "exposures_failed": 1,
            "exposures_pending": 0,
            **zero,
            "bytes": 0,
            "first_start_at": None,
            "last_start_at": None,
            "replicas_verified": 0,
            "files_exported": 0,
        },
    ]


def test_exposures_carry_files_frames_and_quicklook_medians(engine: Engine) -> None:
    ids = seed_night(engine)
    got = {r["exp_id"]: r for r in rows(engine, "v_exposures", "exp_id")}
    cols = (
        "night",
        "state",
        "object",
        "data_type",
        "recipe_name",
        "exptime_s",
        "start_at",
        "chips",
        "files_written",
        "files_lost",
        "bytes",
        "frames_expected",
        "frames_written",
        "frames_missing",
        "frames_damaged",
        "quicklook_chips",
        "sky_adu_median",
        "noise_adu_median",
        "n_stars_median",
        "fwhm_px_median",
    )
    want = {
        "A": ("2025-01-10", "done", "M42", "OBJECT", "r-A", 5.0, t("2025-01-10 11:00:00"), 2, 2, 0, 2100)
        + (20, 20, 0, 1, 2, 105.0, 11.0, 45.0, 3.2),
        "B": ("2025-01-10", "incomplete", "M42", "OBJECT", "r-B", 5.0, t("2025-01-10 20:00:00"), 2, 1, 1, 900)
        + (20, 8, 12, 0, 1, 200.0, 20.0, 10.0, None),
        "C": ("2025-01-10", "done", "FLAT", "FLAT", "r-C", 5.0, t("2025-01-11 02:30:00"), 1, 1, 0, 500)
        + (5, 5, 0, 0, 1, 300.0, 30.0, 5.0, 2.0),
        "D": ("2025-01-11", "done", "M1", "OBJECT", "r-D", 5.0, t("2025-01-11 04:00:00"), 2, 2, 0, 2000)
        + (20, 20, 0, 0, 2, 92.0, 9.25, 60.5, 2.6),
    }
    for name, values in want.items():
        assert {c: got[ids[name]][c] for c in cols} == dict(zip(cols, values, strict=True)), name
    e = got[ids["E"]]
    assert (e["state"], e["start_at"], e["chips"], e["files_written"], e["sky_adu_median"]) == (
        "failed",
        None,
        None,
        0,
        None,
    )
    assert e["stop_reason"] == "unsafe: humidity"


def test_file_lineage_follows_each_file_to_where_it_is_now(engine: Engine) -> None:
    ids = seed_night(engine)
    cols = (
        "filename",
        "night",
        "daq_file_state",
        "checksums_agree",
        "daq_copy",
        "replicas_verified",
        "verified_nodes",
        "replicas_pending",
        "replicas_failed",
        "export_state",
        "export_package",
        "where_now",
    )
    got = [tuple(r[c] for c in cols) for r in rows(engine, "v_file_lineage", "exp_id, det_id")]
    n1, n2 = "2025-01-10", "2025-01-11"
    assert got == [
        (filename(ids["A"], 1), n1, "written", 1, "present", 2, "node0 node1", 0, 0)
        + ("acknowledged", "20250110-daq0-001", "daq node0 node1 archive"),
        (filename(ids["A"], 2), n1, "written", 1, "present", 1, "node0", 0, 1, None, None, "daq node0"),
        (filename(ids["B"], 1), n1, "written", 1, "present", 2, "node0 node1", 0, 0)
        + ("exported", "20250110-daq0-002", "daq node0 node1 archive"),
        (filename(ids["B"], 2), n1, "lost", None, None, 0, None, 0, 0, None, None, "nowhere"),
        (filename(ids["C"], 1), n1, "written", 1, "deleted", 2, "node0 node1", 0, 0)
        + ("not_selected", None, "node0 node1"),
        (filename(ids["D"], 1), n2, "written", 1, "present", 0, None, 2, 0, None, None, "daq"),
        (filename(ids["D"], 2), n2, "written", 1, "present", 0, None, 2, 0, None, None, "daq"),
    ]
    a1 = rows(engine, "v_file_lineage", "daq_file_id")[0]
    assert a1["checksum_xxh3"] == a1["catalog_checksum_xxh3"] == f"{ids['A']:08x}{1:08x}"
    assert a1["file_id"] is not None and a1["last_verified_at"] is not None and a1["acknowledged_at"] is not None


def test_chip_health_per_chip_per_night(engine: Engine) -> None:
    seed_night(engine)
    assert rows(engine, "v_chip_health", "night, det_id") == [
        {
            "night": "2025-01-10",
            "det_id": 1,
            "exposures": 3,
            "files_written": 3,
            "files_lost": 0,
            "frames_expected": 25,
            "frames_written": 23,
            "frames_missing": 2,
            "frames_damaged": 0,
            "loss_ratio": 0.08,
            "overscan_median": 1002.0,
            "overscan_noise": 5.25,
            "sky_adu_median": 200.0,  # odd count: the middle one
            "noise_adu_median": 20.0,
            "n_stars_median": 10.0,
            "fwhm_px_median": 2.5,  # B has none: the mean of the two others
        },
        {
            "night": "2025-01-10",
            "det_id": 2,
            "exposures": 2,
            "files_written": 1,
            "files_lost": 1,
            "frames_expected": 20,
            "frames_written": 10,
            "frames_missing": 10,
            "frames_damaged": 1,
            "loss_ratio": 0.5,
            "overscan_median": 1010.0,
            "overscan_noise": 6.0,
            "sky_adu_median": 110.0,
            "noise_adu_median": 12.0,
            "n_stars_median": 40.0,
            "fwhm_px_median": 3.4,
        },
        {
            "night": "2025-01-11",
            "det_id": 1,
            "exposures": 1,
            "files_written": 1,
            "files_lost": 0,
            "frames_expected": 10,
            "frames_written": 10,
            "frames_missing": 0,
            "frames_damaged": 0,
            "loss_ratio": 0.0,
            "overscan_median": 990.0,
            "overscan_noise": 4.0,
            "sky_adu_median": 90.0,
            "noise_adu_median": 9.0,
            "n_stars_median": 60.0,
            "fwhm_px_median": 2.5,
        },
        {
            "night": "2025-01-11",
            "det_id": 2,
            "exposures": 1,
            "files_written": 1,
            "files_lost": 0,
            "frames_expected": 10,
            "frames_written": 10,
            "frames_missing": 0,
            "frames_damaged": 0,
            "loss_ratio": 0.0,
            "overscan_median": 995.0,
            "overscan_noise": 4.0,
            "sky_adu_median": 94.0,
            "noise_adu_median": 9.5,
            "n_stars_median": 61.0,
            "fwhm_px_median": 2.7,
        },
    ]


def test_weather_hourly_aggregates_numbers_and_booleans(engine: Engine) -> None:
    seed_night(engine)
    cols = ("hour_utc", "night", "key", "unit", "samples", "avg_value", "min_value", "max_value")
    got = [tuple(r[c] for c in cols) for r in rows(engine, "v_weather_hourly", "hour_utc, key")]
    assert got == [
        (t("2025-01-10 12:00:00"), "2025-01-10", "weather.safe", "", 3, round(2 / 3, 9), 0.0, 1.0),
        (t("2025-01-10 12:00:00"), "2025-01-10", "weather.temperature_c", "degC", 3, 2.5, 1.0, 4.5),
        (t("2025-01-10 13:00:00"), "2025-01-10", "weather.safe", "", 1, 0.0, 0.0, 0.0),
        (t("2025-01-10 13:00:00"), "2025-01-10", "weather.temperature_c", "degC", 1, -1.0, -1.0, -1.0),
        (t("2025-01-11 03:00:00"), "2025-01-11", "weather.safe", "", 1, 1.0, 1.0, 1.0),
        (t("2025-01-11 03:00:00"), "2025-01-11", "weather.temperature_c", "degC", 1, 0.5, 0.5, 0.5),
    ]


def test_views_have_the_documented_columns(engine: Engine) -> None:
    insp = inspect(engine)
    assert {v.name for v in VIEWS} | {SITE_TIME} <= set(insp.get_view_names())
    for v in VIEWS:
        assert [c["name"] for c in insp.get_columns(v.name)] == [c for c, _ in v.columns], v.name
        if engine.dialect.name == "postgresql":  # for Metabase and Grafana, as the tables' comments
            assert insp.get_table_comment(v.name)["text"] == v.comment
            assert [c.get("comment") for c in insp.get_columns(v.name)] == [m for _, m in v.columns]


def test_site_time_moves_the_night_boundary(engine: Engine) -> None:
    seed_night(engine)
    assert site_time(engine) == ("Asia/Tokyo", 540)
    assert set_site_time(engine, "UTC")
    assert not set_site_time(engine, "UTC")  # unchanged: nothing written
    assert site_time(engine) == ("UTC", 0)
    nights = [r["night"] for r in rows(engine, "v_exposures", "exp_id")][:4]
    # at UTC noon to noon: A (11:00 UTC) falls to the night before, D (04:00 UTC next day) to A's and B's
    assert nights == ["2025-01-09", "2025-01-10", "2025-01-10", "2025-01-10"]


def test_downgrade_drops_the_views(engine: Engine) -> None:
    downgrade(engine, "0014")
    assert inspect(engine).get_view_names() == []
    upgrade(engine)
    assert len(inspect(engine).get_view_names()) == len(VIEWS) + 1


def test_db_upgrade_points_the_views_at_the_configured_site(tmp_path: Path) -> None:
    import yaml

    from tests.test_cli import gozen

    cfg = tmp_path / "gozen.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "var"), "site": {"timezone": "America/Santiago"}}))
    r = gozen("--config", str(cfg), "db", "upgrade")
    assert r.exit_code == 0, r.output
    eng = make_engine(f"sqlite:///{tmp_path / 'var' / 'gozen.db'}")
    try:
        tz, offset = site_time(eng) or ("", 0)
        assert (tz, offset) == ("America/Santiago", utc_offset_min("America/Santiago"))
        assert offset in (-240, -180)
    finally:
        eng.dispose()


def test_revision_0015_keeps_producing_the_same_views() -> None:
    """Migration 0015 creates VIEWS_0015: changing a view is a new revision with its own constants."""
    import hashlib
    import json

    from gozen.db.views import VIEWS_0015

    text = json.dumps([(v.name, v.sql, v.comment, v.columns) for v in VIEWS_0015])
    frozen = "7972fe6b4be839f0b7ab242eb60a7797473e0e89bc579590bd7fb0f3a8609b97"
    assert hashlib.sha256(text.encode()).hexdigest() == frozen, "VIEWS_0015 changed: add a revision instead"
