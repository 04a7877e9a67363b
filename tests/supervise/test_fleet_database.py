"""fleet:watch and a PostgreSQL that stops: one database_unreachable (spooled while it is away,
written before its return) and one database_back; the hosts are still watched meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gozen.db.engine import make_engine
from gozen.db.events import spooled, use_spool
from gozen.db.migrate import upgrade
from gozen.supervise.fleet import last_seen
from tests.conftest import free_port
from tests.private_pg import PrivatePostgres, private_cluster
from tests.supervise.test_fleet import events_of, fleet_config, host, passes_until, watcher


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    with private_cluster() as pg:
        yield pg


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "spool"
    use_spool(d)
    yield d
    use_spool(None)


def test_a_database_that_stops_is_one_error_event_and_its_return_one_info_event(
    tmp_path: Path, private_pg: PrivatePostgres, spool: Path
) -> None:
    engine = make_engine(private_pg.url)
    upgrade(engine)
    port = free_port()  # a host whose supervisord never answers: still watched while the database is away
    cfg = fleet_config(tmp_path, [host("store1", port)], database={"url": private_pg.url})
    w = watcher(cfg, engine)
    w.run_once()
    assert last_seen(engine)["store1"].reachable is False
    private_pg.stop()
    try:

        def spooled_text() -> str:
            return "".join(p.read_text() for p in spooled(spool))

        passes_until(w, lambda: '"database_unreachable"' in spooled_text(), "the outage event spooled")
        lines = spooled_text()
        assert lines.count('"database_unreachable"') == 1 and '"host_unreachable"' in lines
        assert f"127.0.0.1:{private_pg.port}" in lines
    finally:
        private_pg.start()
    [back] = passes_until(w, lambda: events_of(engine, "database_back"), "the database told back")
    w.run_once()
    [down] = events_of(engine, "database_unreachable")
    assert len(events_of(engine, "database_back")) == 1
    assert down.id < back.id and down.time < back.time  # the outage is written before its return
    assert (down.subject, down.severity, back.severity) == ("database", "error", "info")
    assert "OperationalError" in down.message and "has not answered for" in down.message
    assert "***" in down.message or "postgres@" in down.message  # named, never with a password
    assert back.message.startswith("the database postgresql+psycopg://postgres@127.0.0.1:")
    assert "answers again after" in back.message
    assert not spooled(spool)
