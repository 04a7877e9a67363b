"""A file row the database refuses for its content is set aside with an event; the rows after it are recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from gozen.daq import catalog
from gozen.daq.writer import Writer
from gozen.db.events import recent_events
from gozen.db.tables import daq_files
from tests.daq.test_poison import HOST, setup


def file_row(exp_id: int, det_id: Any) -> dict[str, Any]:
    name = f"TMQ12026112500000{exp_id:03d}{det_id}.fits"
    return {
        "exp_id": exp_id, "det_id": det_id, "state": "written", "path": f"/daq/{name}", "filename": name,
        "daq_host": HOST, "daq_volume": "vol1", "size_bytes": 2880, "checksum_xxh3": "0" * 16,
        "frames_expected": 1, "frames_written": 1, "frames_missing": 0, "frames_damaged": 0,
        "naxis1": 1, "naxis2": 1, "naxis3": 1, "writer": "daq:writer-01",
    }  # fmt: skip


def test_a_refused_file_row_is_set_aside_with_an_event_and_the_others_are_recorded(tmp_path: Path) -> None:
    cfg, engine = setup(tmp_path)
    [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("F1", 1, 20.0), 1)
    writer = Writer(cfg, engine, 0, HOST)
    writer.record(file_row(exp_id, 111))
    writer.record(file_row(exp_id, None))  # NOT NULL det_id: refused for what it holds, not an outage
    writer.record(file_row(exp_id, 112))
    writer.record(file_row(exp_id, 111))  # a second report of a file: ignored, as before
    writer.flush_records()

    assert writer.unrecorded == []  # nothing held back to be retried for ever
    with engine.connect() as conn:
        recorded = sorted(conn.execute(select(daq_files.c.det_id).where(daq_files.c.exp_id == exp_id)).scalars())
    assert recorded == [111, 112]
    refused = [e for e in recent_events(engine, 20) if e.kind == "file_row_refused"]
    assert len(refused) == 1 and f"exp {exp_id} det None" == refused[0].subject
    assert "IntegrityError" in refused[0].message and "transfer:push" in refused[0].message
