"""A transfer program whose database connection dies mid-pass reconnects and finishes its work without exiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, select

from gozen.config import Config, parse_config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import downgrade, upgrade
from gozen.db.tables import exports
from gozen.service import Context, Service, run_service
from gozen.transfer.agents import CopyAgent, push_once
from gozen.transfer.export import Exporter, receive_once
from tests.conftest import WAIT_S, wait_until
from tests.daq.test_writer import run_exposure
from tests.transfer import test_archive
from tests.transfer.test_transfer import audit, drain, replica_rows


class BackendKiller:
    """Terminates the PostgreSQL backends of one engine (by the application_name it connects with) just
    before a chosen statement runs, `times` times: the statement fails as on a dropped connection."""

    def __init__(self, pg_url: str, engine: Engine, app: str, when: Callable[[str, Any], bool], times: int) -> None:
        self.pg_url, self.app, self.when, self.times = pg_url, app, when, times
        self.killed = 0
        event.listen(engine, "before_cursor_execute", self.before)

    def before(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if self.killed < self.times and self.when(statement, parameters):
            self.killed += 1
            self.terminate()

    def terminate(self) -> None:
        """pg_terminate_backend of this engine's connections only, and wait until they are gone."""
        find = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        with psycopg.connect(self.pg_url, autocommit=True) as admin:
            pids = [pid for (pid,) in admin.execute(find, (self.app,))]
            assert pids, f"no backend has application_name {self.app}"
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + WAIT_S
            while admin.execute(find, (self.app,)).fetchall() and time.monotonic() < deadline:
                time.sleep(0.02)


def sets_state(table: str, state: str) -> Callable[[str, Any], bool]:
    """The UPDATE that moves a row of `table` to `state`."""
    return lambda sql, params: (
        sql.lstrip().upper().startswith(f"UPDATE {table.upper()}")
        and isinstance(params, dict)
        and params.get("state") == state
    )


class Running:
    """A Service run by run_service in a thread, as `gozen run` runs it."""

    def __init__(self, service: Service) -> None:
        self.service, self.exit_codes = service, list[int]()
        self.thread = threading.Thread(target=lambda: self.exit_codes.append(run_service(service)), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.service.ctx.stop.set()
        self.thread.join(WAIT_S)

    def alive(self) -> None:
        assert self.thread.is_alive() and not self.exit_codes, f"the service exited by itself: {self.exit_codes}"


@pytest.fixture
def pg_config(tmp_path: Path, pg_url: str) -> Iterator[Config]:
    """test_archive's config on the scratch PostgreSQL database, with four DAQ files catalogued."""
    cfg = test_archive.config(tmp_path)
    cfg = cfg.model_copy(update={"database": parse_config({"database": {"url": pg_url}}).database})
    engine = make_engine(pg_url)
    upgrade(engine)
    try:
        run_exposure(cfg)
        push_once(cfg, engine, "localhost", scan=False)
        yield cfg
    finally:
        downgrade(engine, "base")
        engine.dispose()


def service_engine(pg_url: str, app: str) -> Engine:
    return make_engine(pg_url, connect_args={"application_name": app})


def outage_events(engine: Engine, source: str) -> tuple[int, int]:
    def count(kind: str) -> int:
        return len([e for e in recent_events(engine, 100, kind=kind) if e.source == source])

    return count("database_unavailable"), count("database_back")


def test_a_copy_agent_whose_connection_dies_mid_pass_reconnects_and_copies_everything(
    pg_config: Config, pg_url: str
) -> None:
    app = f"gozen-test-pop-{id(pg_config)}"
    engine = service_engine(pg_url, app)
    killer = BackendKiller(pg_url, engine, app, sets_state("replicas", "verified"), times=2)
    agent = CopyAgent(Context(pg_config, "localhost", engine, "transfer:pop-01"))
    check = make_engine(pg_url)
    with Running(agent) as running:
        wait_until(
            lambda: [r.state for r in replica_rows(check)] == ["verified"] * 4,
            WAIT_S,
            0.1,
            "every copy verified after its connection was killed twice",
            lambda: str([(r.state, r.last_error) for r in replica_rows(check)]),
        )
        running.alive()
    assert running.exit_codes == [0]  # stopped when asked, not before
    assert killer.killed == 2
    assert sum(r.attempts for r in replica_rows(check)) == 4 + 2  # each killed pass's copy was tried again, once
    down, back = outage_events(check, "transfer:pop-01")
    assert down == back >= 1
    audit(check, 1)  # whole, matching copies, one per file
    on_disk = sorted(str(p) for p in (pg_config.data_dir / "storage").rglob("TMQ*.fits"))
    assert on_disk == sorted(r.path for r in replica_rows(check))  # no copy left behind under another name
    check.dispose()


def test_an_exporter_whose_connection_dies_mid_pass_reconnects_and_gets_everything_acknowledged(
    pg_config: Config, pg_url: str
) -> None:
    check = make_engine(pg_url)
    drain(pg_config, check)
    app = f"gozen-test-export-{id(pg_config)}"
    engine = service_engine(pg_url, app)
    killer = BackendKiller(pg_url, engine, app, sets_state("exports", "exported"), times=1)
    assert pg_config.archive is not None
    cfg = pg_config.model_copy(update={"archive": pg_config.archive.model_copy(update={"every_s": 0.2})})
    exporter = Exporter(Context(cfg, "localhost", engine, "transfer:export"))
    archive = cfg.archive_local_dir()
    assert archive is not None

    def acknowledged() -> bool:
        receive_once(archive)  # the archive answers each manifest sent
        with check.connect() as conn:
            return list(conn.execute(select(exports.c.state)).scalars()) == ["acknowledged"] * 4

    with Running(exporter) as running:
        wait_until(acknowledged, WAIT_S, 0.2, "every file acknowledged after the connection was killed", lambda: "")
        running.alive()
    assert running.exit_codes == [0] and killer.killed == 1
    down, back = outage_events(check, "transfer:export")
    assert down == back == 1
    assert not recent_events(check, 10, kind="archive_export_failing")  # the archive never failed: the database did
    check.dispose()
