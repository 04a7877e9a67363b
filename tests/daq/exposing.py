"""One exposure through a readout and a writer in the test's own process (real rings, files and rows)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Engine, select

from gozen.config import Config
from gozen.daq import catalog
from gozen.daq.control import arm_next
from gozen.daq.readout import Readout
from gozen.daq.writer import Writer
from gozen.db.tables import daq_files


def expose(
    cfg: Config, engine: Engine, readout: Readout, writer: Writer, request: catalog.ExposureRequest
) -> tuple[dict[int, Counter[str]], dict[int, dict[str, Any]]]:
    """Arm the request, read every frame, write every file: the readout's counts and the file rows, per chip."""
    [exp_id] = catalog.request_exposures(engine, request, 1)
    assert arm_next(cfg, engine, readout.host) == exp_id
    exp = catalog.armed_after(engine, exp_id - 1)[0]
    counts = readout.read_exposure(exp)
    readout.report(exp, counts)
    while writer.poll():
        pass
    writer.flusher.wait()
    writer.poll()
    with engine.connect() as conn:
        rows = conn.execute(select(daq_files).where(daq_files.c.exp_id == exp_id)).all()
    return counts, {r.det_id: dict(r._mapping) for r in rows}
