"""The simulated observatory under `gozen up` on its SQLite file, made unwritable (for root too)
for 30 s while exposures, copies and couriers run: nothing exits, nothing is lost."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.engine import make_url

from gozen.db.engine import is_unavailable, make_engine
from tests.conftest import Fleet
from tests.outage.conftest import set_immutable, sqlite_files
from tests.outage.observatory import Services, start_observatory
from tests.outage.scenario import Outage, survive


def _database_file(fleet: Fleet) -> Path:
    return Path(str(make_url(fleet.cfg.database_url).database))


def test_an_immutable_database_file_refuses_writes_even_to_root(tmp_path: Path) -> None:
    """The mechanism the outage uses: a connection already open gets "disk I/O error", and
    writes work again once the attribute is cleared."""
    db = tmp_path / "t.db"
    conn = sqlite3.connect(db, timeout=1)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    try:
        set_immutable(sqlite_files(db), True)
    except subprocess.CalledProcessError as err:
        pytest.skip(f"chattr +i does not work here: {err.stderr}")
    try:
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error|readonly"):
            conn.execute("INSERT INTO t VALUES (1)")
            conn.commit()
        conn.rollback()
    finally:
        set_immutable(sqlite_files(db), False)
    conn.execute("INSERT INTO t VALUES (2)")
    conn.commit()
    assert conn.execute("SELECT x FROM t").fetchall() == [(2,)]


def test_a_connection_opened_while_the_file_was_unwritable_writes_once_it_is_back(tmp_path: Path) -> None:
    """SQLite opens a file it cannot write read-only, and such a connection never writes again:
    the engine must not keep it once the database is back (found under `gozen up`: daq:readout-01
    failed "attempt to write a readonly database" minutes after the outage)."""
    db = tmp_path / "gozen.db"
    engine = make_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    engine.dispose()  # the next connection is opened during the outage
    try:
        set_immutable(sqlite_files(db), True)
    except subprocess.CalledProcessError as err:
        pytest.skip(f"chattr +i does not work here: {err.stderr}")
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError) as away, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert is_unavailable(away.value)
    finally:
        set_immutable(sqlite_files(db), False)
    with engine.begin() as conn:  # the first pass after the outage writes
        conn.execute(text("INSERT INTO t VALUES (2)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalars().all() == [2]


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory, services: Services) -> Iterator[Fleet]:
    fleet = start_observatory(tmp_path_factory.mktemp("sqlite-outage"), None, services)
    yield fleet
    fleet.stop()
    set_immutable(sqlite_files(_database_file(fleet)), False)  # whatever happened: the folder must go


@pytest.mark.live
def test_sqlite_file_unwritable_for_30_s_loses_nothing(obs: Fleet, services: Services) -> None:
    db = _database_file(obs)
    held: list[Path] = []

    def begin() -> None:
        held[:] = sqlite_files(db)
        set_immutable(held, True)

    def end() -> None:
        set_immutable(held, False)

    outage = Outage("the SQLite file unwritable", begin, end, reads_fail=False)
    survive(obs, services, outage).assert_none()
