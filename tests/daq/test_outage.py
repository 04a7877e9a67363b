"""The DAQ while the database is away: nothing stops, nothing is lost, nothing is counted twice.

Each program under test gets an engine of its own that an `Outage` makes fail (connections and
statements, as a stopped PostgreSQL does); the rest of the observatory (the test) still reaches
the SQLite file. Readout, writer and control run their real code in this process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, exc, func, select, update

from gozen.config import Config
from gozen.daq import catalog
from gozen.daq.backlog import spool_path
from gozen.daq.control import RESUME_LEAD_S, Control, arm_next
from gozen.daq.readout import Readout
from gozen.daq.ring import BEGIN
from gozen.daq.writer import Writer
from gozen.db.events import recent_events, use_spool
from gozen.db.states import ExposureState
from gozen.db.tables import daq_files, exposures, readout_reports
from gozen.db.types import utcnow
from gozen.monitors import board
from gozen.service import Context, make_context, run_service
from tests.conftest import WAIT_S, wait_until
from tests.daq.test_poison import CHIPS, FRAMES, HOST, audit_written, drain, files, queue_exposure, read, setup
from tests.test_service import Outage


@pytest.fixture
def daq(tmp_path: Path) -> Iterator[tuple[Config, Engine]]:
    cfg, engine = setup(tmp_path)
    yield cfg, engine
    use_spool(None)  # make_context set this process's event spool


def program(cfg: Config, name: str, index: int = 0) -> tuple[Context, Outage]:
    """A program's context with its own engine, and the switch that takes its database away."""
    ctx = make_context(cfg, name, {"index": index}, host=HOST)
    return ctx, Outage(ctx.engine)


def go_away(ctx: Context, outage: Outage) -> None:
    ctx.engine.dispose()  # pooled connections too: a stopped server drops them
    outage.on = True


def state(engine: Engine, exp_id: int) -> str | None:
    return catalog.exposure_outcome(engine, exp_id).state


def file_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(daq_files)).scalar_one())


def told(engine: Engine, source: str, kind: str) -> int:
    return sum(1 for e in recent_events(engine, 200, kind=kind) if e.source == source)


def writer_away(cfg: Config, engine: Engine) -> tuple[Context, Outage, Readout, Writer, int]:
    """A readout, and a writer that loses its database as an exposure is armed (it has never asked about it)."""
    ctx, outage = program(cfg, "daq:writer-01")
    readout, writer = Readout(cfg, engine, 0, HOST), Writer(cfg, ctx.engine, 0, HOST, ctx=ctx)
    writer.attach(timeout_s=5)
    exp_id = queue_exposure(cfg, engine)
    go_away(ctx, outage)
    return ctx, outage, readout, writer, exp_id


def test_a_writer_writes_what_the_ring_announces_while_the_database_is_away_and_records_every_file_once(
    daq: tuple[Config, Engine],
) -> None:
    cfg, engine = daq
    ctx, outage, readout, writer, first = writer_away(cfg, engine)
    read(readout, engine, first)
    second = queue_exposure(cfg, engine)  # armed while the writer cannot ask about it
    read(readout, engine, second)
    drain(writer)
    volume = cfg.under_data_dir(cfg.daq_volumes[0].path)
    assert len(list(volume.rglob("*.fits"))) == 2 * len(CHIPS)  # both written: the ring told what they are
    assert file_rows(engine) == 0 and spool_path(ctx, "files").exists()  # their rows wait on disk
    assert readout.rings[0].peek() is None and writer.quarantined == 0

    outage.on = False
    assert wait_until(
        lambda: drain(writer) or len(files(engine, second)) == len(CHIPS), WAIT_S, what="the files recorded"
    )
    audit_written(engine, first, CHIPS)
    audit_written(engine, second, CHIPS)
    assert file_rows(engine) == 2 * len(CHIPS)  # each file exactly once
    assert not spool_path(ctx, "files").exists()
    control = Control(make_context(cfg, "daq:control", host=HOST))
    control.run_once()
    assert state(engine, first) == state(engine, second) == ExposureState.DONE
    assert told(engine, "daq:writer-01", "database_unavailable") == 1
    assert told(engine, "daq:writer-01", "database_back") == 1


def test_a_writer_that_missed_the_announcement_keeps_the_frames_in_the_ring_until_the_database_answers(
    daq: tuple[Config, Engine],
) -> None:
    cfg, engine = daq
    ctx, outage, readout, writer, exp_id = writer_away(cfg, engine)
    read(readout, engine, exp_id)
    ring = writer.rings[0]
    announcement = ring.peek()
    assert announcement is not None and announcement.kind == BEGIN
    ring.release()  # taken by a writer that stopped before its frames: this one restarts after it
    for _ in range(3):
        drain(writer)
    assert writer.db_away and ring.peek() is not None  # the frames wait for the database, none lost
    assert not list(cfg.under_data_dir(cfg.daq_volumes[0].path).rglob("*.fits"))

    outage.on = False
    assert wait_until(
        lambda: drain(writer) or len(files(engine, exp_id)) == len(CHIPS), WAIT_S, what="the files written"
    )
    audit_written(engine, exp_id, CHIPS)
    assert writer.quarantined == 0 and ring.peek() is None
    assert told(engine, "daq:writer-01", "database_unavailable") == 1


def test_rows_spooled_by_a_writer_stopped_during_an_outage_are_recorded_once_by_the_next(
    daq: tuple[Config, Engine],
) -> None:
    cfg, engine = daq
    ctx, outage, readout, writer, exp_id = writer_away(cfg, engine)
    read(readout, engine, exp_id)
    drain(writer)
    writer.stop_cleanly()  # supervisord's SIGTERM while the database is away
    spool = spool_path(ctx, "files")
    spooled = spool.read_text()
    assert spooled.count("\n") == len(CHIPS)

    outage.on = False
    restarted = Writer(cfg, ctx.engine, 0, HOST, ctx=ctx)
    restarted.flush_records()
    audit_written(engine, exp_id, CHIPS)
    spool.write_text(spooled)  # as if it had died between writing the rows and removing the spool
    Writer(cfg, ctx.engine, 0, HOST, ctx=ctx).flush_records()  # its next start
    assert file_rows(engine) == len(CHIPS) and not spool.exists()


def test_a_readout_reads_while_the_database_is_away_and_reports_once_it_returns(
    daq: tuple[Config, Engine],
) -> None:
    cfg, engine = daq
    ctx, outage = program(cfg, "daq:readout-01")
    readout, writer = Readout(cfg, ctx.engine, 0, HOST, ctx=ctx), Writer(cfg, engine, 0, HOST)
    writer.attach(timeout_s=5)
    first = queue_exposure(cfg, engine)
    thread = threading.Thread(target=readout.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: reports(engine, first) == len(CHIPS), WAIT_S, what="the first exposure read")
        # Armed now, read while the readout's database is away: its look-out knew it already.
        second = queue_exposure(cfg, engine)
        assert wait_until(lambda: readout_knows(readout, second), WAIT_S, what="the readout to see it")
        go_away(ctx, outage)
        assert wait_until(lambda: spool_path(ctx, "reports").exists(), WAIT_S, what="its report spooled")
        assert reports(engine, second) == 0
        outage.on = False
        assert wait_until(lambda: reports(engine, second) == len(CHIPS), WAIT_S, what="the report written")
    finally:
        ctx.stop.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    drain(writer)
    audit_written(engine, second, CHIPS)
    assert not spool_path(ctx, "reports").exists()
    assert told(engine, "daq:readout-01", "database_unavailable") == 1
    assert told(engine, "daq:readout-01", "frames_lost") == 0
    assert board.snapshot(engine, "service.").get(board.heartbeat_key(HOST, "daq:readout-01")) is not None


def test_an_exposure_requested_while_the_database_was_away_is_armed_when_it_returns(
    daq: tuple[Config, Engine],
) -> None:
    cfg, engine = daq
    ctx, outage = program(cfg, "daq:control")
    control = threading.Thread(target=run_service, args=(Control(ctx),), daemon=True)
    control.start()
    try:
        go_away(ctx, outage)
        # The queue server's request reaches the database; daq:control cannot see it.
        [exp_id] = catalog.request_exposures(engine, catalog.ExposureRequest("F1", FRAMES, 20.0), 1)
        time.sleep(1.5)  # daq:control's passes fail meanwhile
        assert state(engine, exp_id) == ExposureState.QUEUED
        back = utcnow()
        outage.on = False
        assert wait_until(lambda: state(engine, exp_id) == ExposureState.ARMED, WAIT_S, what="armed")
    finally:
        ctx.stop.set()
        control.join(WAIT_S)
    start = catalog.exposure_info(engine, exp_id).start_at
    # Later than usual: the readouts and writers, backing off from the outage, see it before it starts.
    assert start >= back + timedelta(seconds=cfg.daq.start_delay_s + RESUME_LEAD_S) - timedelta(milliseconds=50)
    readout, writer = Readout(cfg, engine, 0, HOST), Writer(cfg, engine, 0, HOST)
    writer.attach(timeout_s=5)
    read(readout, engine, exp_id)  # in time: it starts after the database came back
    drain(writer)
    audit_written(engine, exp_id, CHIPS)


def reports(engine: Engine, exp_id: int) -> int:
    with engine.connect() as conn:
        q = select(func.count()).select_from(readout_reports).where(readout_reports.c.exp_id == exp_id)
        return int(conn.execute(q).scalar_one())


def readout_knows(readout: Readout, exp_id: int) -> bool:
    """The readout's look-out has taken the exposure (it is read from there, database or not)."""
    return readout.feed is not None and (readout.feed.last or 0) >= exp_id


def test_an_exposure_armed_as_the_database_went_is_armed_anew_not_lost(daq: tuple[Config, Engine]) -> None:
    cfg, engine = daq
    ctx, outage = program(cfg, "daq:readout-01")
    readout, writer = Readout(cfg, ctx.engine, 0, HOST, ctx=ctx), Writer(cfg, engine, 0, HOST)
    writer.attach(timeout_s=5)
    thread = threading.Thread(target=readout.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: readout.feed is not None and readout.feed.last is not None, WAIT_S, what="look-out")
        go_away(ctx, outage)
        assert wait_until(lambda: readout.db.away, WAIT_S, what="the readout to miss its database")
        exp_id = queue_exposure(cfg, engine)  # armed just as the database went: no readout saw it
        end = catalog.exposure_info(engine, exp_id).start_at + timedelta(seconds=FRAMES / cfg.camera.fps)
        assert wait_until(lambda: utcnow() > end + timedelta(seconds=0.5), WAIT_S, what="the exposure over")
        outage.on = False
        # daq:control arms it anew once the readout has queued it again (with time to see it this time).
        assert wait_until(lambda: arm_next(cfg, engine, HOST, lead_s=2.0) == exp_id, WAIT_S, what="armed anew")
        assert wait_until(lambda: reports(engine, exp_id) == len(CHIPS), WAIT_S, what="read and reported")
    finally:
        ctx.stop.set()
        thread.join(WAIT_S)
    drain(writer)
    audit_written(engine, exp_id, CHIPS)
    assert catalog.exposure_info(engine, exp_id).start_at > end  # read at its new start
    assert told(engine, "daq:readout-01", "exposure_requeued") == 1
    assert told(engine, "daq:readout-01", "frames_lost") == 0


class WritesRefused:
    """The database answers reads but refuses writes while `on` (a SQLite file made read-only)."""

    def __init__(self, engine: Engine) -> None:
        self.on = False
        event.listen(engine, "before_cursor_execute", self._refuse)

    def _refuse(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self.on and not statement.lstrip().upper().startswith("SELECT"):
            raise exc.OperationalError(statement, {}, Exception("attempt to write a readonly database (test)"))


def test_a_database_that_refuses_writes_is_away_until_a_write_succeeds_told_once(daq: tuple[Config, Engine]) -> None:
    cfg, engine = daq
    ctx = make_context(cfg, "daq:writer-01", {"index": 0}, host=HOST)
    refused = WritesRefused(ctx.engine)
    readout, writer = Readout(cfg, engine, 0, HOST), Writer(cfg, ctx.engine, 0, HOST, ctx=ctx)
    writer.attach(timeout_s=5)
    refused.on = True
    exp_id = queue_exposure(cfg, engine)
    read(readout, engine, exp_id)  # announced in the ring: the writer writes it, reads or not
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # reads succeed and writes fail, again and again
        drain(writer)
        writer.db.heartbeat(1.0)
        time.sleep(0.1)
    assert file_rows(engine) == 0 and writer.db.away
    refused.on = False
    assert wait_until(lambda: drain(writer) or file_rows(engine) == len(CHIPS), WAIT_S, what="rows recorded")
    audit_written(engine, exp_id, CHIPS)
    assert told(engine, "daq:writer-01", "database_unavailable") == 1
    assert told(engine, "daq:writer-01", "database_back") == 1


def test_after_an_outage_control_waits_its_grace_again_before_closing_an_exposure_incomplete(
    daq: tuple[Config, Engine],
) -> None:
    cfg, engine = daq
    exp_id = queue_exposure(cfg, engine)
    with engine.begin() as conn:  # long over: its files would be given up on, were it not for the outage
        conn.execute(update(exposures).where(exposures.c.exp_id == exp_id).values(end_at=utcnow() - timedelta(hours=1)))
    control = Control(make_context(cfg, "daq:control", host=HOST))
    control.run_once()
    control.last_pass = time.monotonic() - 60  # a minute without a pass: the database was away
    control.next_books = 0.0
    control.run_once()
    assert state(engine, exp_id) == ExposureState.ARMED  # the writers' spooled rows may be on their way
    control.give_up_from = control.next_books = 0.0  # the grace has passed
    control.run_once()
    assert state(engine, exp_id) == ExposureState.INCOMPLETE
