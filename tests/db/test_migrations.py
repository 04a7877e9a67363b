"""Every migration, up and down, and a round trip on every table: SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    insert,
    inspect,
    select,
)
from sqlalchemy.sql.schema import Column, Table

from gozen.db.engine import make_engine
from gozen.db.migrate import all_revisions, current_revision, downgrade, head_revision, upgrade
from gozen.db.tables import metadata
from gozen.db.types import UtcDateTime
from tests.conftest import START_S


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gozen.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    eng = make_engine(url)
    downgrade_all(eng)
    yield eng
    downgrade_all(eng)
    eng.dispose()


def downgrade_all(eng: Engine) -> None:
    if current_revision(eng) is not None:
        downgrade(eng, "base")


def test_every_migration_goes_up_and_down_one_step_at_a_time(engine: Engine) -> None:
    revisions = all_revisions()
    assert revisions and revisions[-1] == head_revision()
    for rev in revisions:
        upgrade(engine, rev)
        assert current_revision(engine) == rev
    for rev in reversed(revisions[:-1]):
        downgrade(engine, rev)
        assert current_revision(engine) == rev
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}


def test_migrated_schema_matches_the_table_definitions(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def sample_value(col: Column[Any], i: int) -> Any:
    t = col.type
    if isinstance(t, UtcDateTime | DateTime):
        return datetime(2026, 11, 25, 12, 34, 56, 789012 + i, tzinfo=UTC)
    if isinstance(t, LargeBinary):
        return bytes([i % 256]) * 3 + b"\x00\xff"
    if isinstance(t, JSON):
        return {"n": i, "list": [1, 2.5, "three"], "nested": {"ok": True}}
    if isinstance(t, Boolean):
        return i % 2 == 0
    if isinstance(t, Float):
        return 1.25 + i
    if isinstance(t, Integer):
        return 1000 + i  # also what foreign keys point at: parents get the same keys
    if isinstance(t, Text):
        return f"text {i} — ünïcode ✓"
    if isinstance(t, String):
        return f"s{i}"[: t.length or 64]
    raise AssertionError(f"no sample for {col.table.name}.{col.name} of type {t!r}: extend sample_value")


def sample_rows(t: Table) -> list[dict[str, Any]]:
    return [{c.name: sample_value(c, i) for c in t.columns} for i in range(3)]


@pytest.mark.parametrize("table", sorted(metadata.tables))
def test_round_trip_on_every_table(engine: Engine, table: str) -> None:
    upgrade(engine)
    t = metadata.tables[table]
    with engine.begin() as conn:
        for parent in metadata.sorted_tables[: metadata.sorted_tables.index(t)]:
            conn.execute(insert(parent), sample_rows(parent))
        rows = sample_rows(t)
        conn.execute(insert(t), rows)
    with engine.connect() as conn:
        got = [dict(r._mapping) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
    assert got == rows


def test_postgresql_keeps_the_comments_for_bi_tools(pg_url: str) -> None:
    eng = make_engine(pg_url)
    upgrade(eng)
    insp = inspect(eng)
    for table in metadata.tables.values():
        assert insp.get_table_comment(table.name)["text"] == table.comment
        comments = {c["name"]: c.get("comment") for c in insp.get_columns(table.name)}
        assert comments == {c.name: c.comment for c in table.columns}
    eng.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'sub' / 'g.db'}")
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


def test_naive_datetimes_are_refused(tmp_path: Path) -> None:
    from gozen.db.events import record_event

    eng = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    upgrade(eng)
    with pytest.raises(Exception, match="naive datetime"):
        record_event(eng, host="h", source="s", kind="k", subject="x", message="m", time=datetime(2026, 1, 1))


def test_hosts_migrating_at_once_take_turns(tmp_path: Path) -> None:
    import subprocess
    import sys

    env_file = tmp_path / "gozen.yaml"
    env_file.write_text(f"data_dir: {tmp_path / 'var'}\n")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gozen", "--config", str(env_file), "db", "upgrade"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=START_S)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    assert current_revision(make_engine(f"sqlite:///{tmp_path / 'var' / 'gozen.db'}")) == head_revision()


def test_schema_docs_are_up_to_date() -> None:
    from gozen.db.docs import schema_markdown

    committed = Path(__file__).parents[2] / "docs" / "database.md"
    assert committed.read_text() == schema_markdown(), "run: gozen db docs -o docs/database.md"
