"""courier:watch over real fleet events: a host, daemon or database that stops answering is one failure
message, its return one recovery message; a program killed with kill -9 is told, and so is its restart."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gozen.config import Config, parse_config
from gozen.db.engine import make_engine
from gozen.db.events import recent_events, record_event
from gozen.db.migrate import upgrade
from gozen.db.types import utcnow
from tests.conftest import START_S, WAIT_S, free_port, scratch_pg_database, start_fleet, ticker, wait_until
from tests.couriers.test_couriers import Server, make_sender, make_watcher
from tests.supervise.test_fleet import Supervisord, events_of, host, passes_until, running, watcher


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a database of its own on the local PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gozen.db'}"
        return
    with scratch_pg_database("gozen_w") as url:
        yield url


def slack_config(tmp: Path, slack: Server, hosts: list[dict[str, object]], db_url: str) -> Config:
    return parse_config(
        {
            "data_dir": str(tmp / "var"),
            "hosts": hosts,
            "database": {"url": db_url},
            "notifiers": [{"name": "tomoe-slack", "kind": "slack", "url": f"{slack.url}/services/T0/B0/x"}],
        }
    )


def posted(cfg: Config, engine: Engine, slack: Server) -> list[str]:
    make_sender(cfg, engine).send_due()
    return [p["text"] for p in slack.received]  # type: ignore[attr-defined]


def test_a_host_down_and_back_is_one_failure_and_one_recovery_message(
    tmp_path: Path, slack: Server, db_url: str
) -> None:
    port = free_port()
    cfg = slack_config(tmp_path, slack, [host("store2", port)], db_url)
    engine = make_engine(db_url)
    upgrade(engine)
    courier = make_watcher(cfg, engine)
    courier.pass_once()  # starts from now
    fleet = watcher(cfg, engine)
    passes_until(fleet, lambda: events_of(engine, "host_unreachable"), "store2 told unreachable")
    for _ in range(2):
        fleet.run_once()
    courier.pass_once()
    courier.pass_once()
    [down] = posted(cfg, engine, slack)
    assert down.startswith(":rotating_light: head · host_unreachable · store2: store2's supervisord at ")
    assert f"127.0.0.1:{port} has not answered for" in down and "connection refused" in down

    store2 = Supervisord(tmp_path, "store2", port, "pw-store2")
    store2.start()
    try:
        wait_until(lambda: running(cfg, "store2"), START_S, what="store2's supervisord")
        passes_until(fleet, lambda: events_of(engine, "host_back"), "store2 told back")
        fleet.run_once()
        restarted = make_watcher(cfg, engine)  # a courier restarted meanwhile still knows what is open
        restarted.pass_once()
        restarted.pass_once()
        texts = posted(cfg, engine, slack)
        assert len(texts) == 2, texts
        assert texts[1].startswith(":white_check_mark: head · host_back · store2: store2's supervisord at ")
        assert "answers again after" in texts[1] and "unreachable since" in texts[1]
    finally:
        store2.stop()
    passes_until(fleet, lambda: len(events_of(engine, "host_unreachable")) == 2, "the second outage told")
    for _ in range(2):
        fleet.run_once()
        restarted.pass_once()
    texts = posted(cfg, engine, slack)
    assert len(texts) == 3 and texts[2].startswith(":rotating_light: head · host_unreachable · store2: ")  # once


def test_a_recovery_written_before_its_spooled_failure_is_still_told_after_it(tmp_path: Path, slack: Server) -> None:
    cfg = slack_config(tmp_path, slack, [host("head", free_port())], f"sqlite:///{tmp_path / 'g.db'}")
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    courier = make_watcher(cfg, engine)
    courier.pass_once()
    t0 = utcnow()
    common = {"host": "head", "source": "fleet:watch", "subject": "database"}
    record_event(engine, kind="database_back", message="back", time=t0 + timedelta(seconds=40), **common)
    record_event(engine, kind="database_unreachable", message="away", severity="error", time=t0, **common)
    courier.pass_once()
    assert posted(cfg, engine, slack) == [
        ":rotating_light: head · database_unreachable · database: away",
        ":white_check_mark: head · database_back · database: back",
    ]


def test_a_recovery_without_a_told_failure_is_not_told(tmp_path: Path, slack: Server) -> None:
    cfg = slack_config(tmp_path, slack, [host("head", free_port())], f"sqlite:///{tmp_path / 'g.db'}")
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    courier = make_watcher(cfg, engine)
    courier.pass_once()
    # every program tells its own database_back after an outage: only the fleet watcher's failure is told
    record_event(engine, host="head", source="queue:server", kind="database_back", subject="database", message="x")
    record_event(engine, host="head", source="supervisord", kind="process_state", subject="a:b", message="running",
                 data={"event": "PROCESS_STATE_RUNNING"})  # fmt: skip
    courier.pass_once()
    assert posted(cfg, engine, slack) == []


def test_a_program_killed_with_kill_9_is_told_and_so_is_its_restart(tmp_path: Path, slack: Server) -> None:
    port = free_port()
    work = [{"group": "work", "name": "ticker", "command": ticker("ticker")}]
    hosts = [
        {
            "name": "daq1",
            "address": "127.0.0.1",
            "roles": [],
            "supervisor": {"port": port, "username": "gozen", "password": "pw-daq1"},
            "programs": work,
        }
    ]
    notifiers = [{"name": "tomoe-slack", "kind": "slack", "url": f"{slack.url}/services/T0/B0/x"}]
    fleet = start_fleet(tmp_path, hosts, down=[], extra={"notifiers": notifiers})
    try:
        engine = make_engine(fleet.cfg.database_url)
        courier = make_watcher(fleet.cfg, engine)
        courier.pass_once()
        [old] = [p for p in fleet.client("daq1").status().processes if p.full_name == "work:ticker"]
        assert old.pid
        os.kill(old.pid, signal.SIGKILL)

        def restarted() -> bool:
            return any(
                e.subject == "work:ticker" and e.id > 0 and (e.data or {}).get("pid") not in (None, str(old.pid))
                for e in recent_events(engine, 50, kind="process_state")
                if (e.data or {}).get("event") == "PROCESS_STATE_RUNNING"
            )

        wait_until(restarted, WAIT_S, what="work:ticker running again", dump=fleet.dump)
        courier.pass_once()
        courier.pass_once()
        [exited] = [e for e in recent_events(engine, 50, kind="process_exited") if e.subject == "work:ticker"]
        assert exited.severity == "error"
        texts = posted(fleet.cfg, engine, slack)
        assert texts[0] == f":rotating_light: daq1 · process_exited · work:ticker: {exited.message}"
        assert f"pid {old.pid}" in texts[0] and "exited unexpectedly" in texts[0]
        assert len(texts) == 2, texts
        [new] = [p for p in fleet.client("daq1").status().processes if p.full_name == "work:ticker"]
        assert texts[1] == (
            f":white_check_mark: daq1 · process_running · work:ticker: work:ticker is running again (pid {new.pid}) "
            f"after it exited unexpectedly at {exited.time:%H:%M:%S} UTC"
        )
    finally:
        fleet.stop()
