"""The simulated observatory under `gozen up` on a private PostgreSQL cluster: a connection killed
mid-pass, then the server stopped for 30 s while exposures, copies and couriers run.
Nothing exits, nothing is lost (issue 12's acceptance)."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import psycopg
import pytest
from sqlalchemy import func, select

from gozen.db.tables import replicas
from gozen.db.types import utcnow
from tests.conftest import WAIT_S, Fleet, wait_until
from tests.outage.conftest import PrivatePostgres
from tests.outage.observatory import (
    WHOLE,
    Checks,
    Services,
    count,
    engine_of,
    events_between,
    exited,
    expose,
    exposure_states,
    pids,
    silent_since,
    start_observatory,
    wait_flowing,
)
from tests.outage.scenario import Outage, survive

# Programs whose pass is caught in a query when their connection is killed: daq:control looks for
# queued exposures ten times a second, transfer:pop-01 claims copies every poll.
KILLED = {"daq:control": "exposures", "transfer:pop-01": "replicas"}


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory, private_pg: PrivatePostgres, services: Services) -> Iterator[Fleet]:
    fleet = start_observatory(tmp_path_factory.mktemp("pg-outage"), private_pg.url, services)
    yield fleet
    fleet.stop()


def test_the_private_cluster_stops_and_starts(private_pg: PrivatePostgres) -> None:
    assert private_pg.query("SELECT 1") == [(1,)]
    private_pg.stop()
    with pytest.raises(psycopg.OperationalError):
        private_pg.query("SELECT 1")
    private_pg.start()
    assert private_pg.query("SELECT 1") == [(1,)]


def backends(pg: PrivatePostgres, pid: int) -> list[tuple[int, str | None, str | None]]:
    """(backend pid, state, wait event type) of every connection a program holds to the cluster."""
    ports = [c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.raddr and c.raddr.port == pg.port]
    if not ports:
        return []
    rows = pg.query("SELECT pid, state, wait_event_type FROM pg_stat_activity WHERE client_port = ANY(%s)", ports)
    return [(int(p), s, w) for p, s, w in rows]


@pytest.mark.live
def test_a_connection_killed_mid_pass_is_reconnected(
    obs: Fleet,
    private_pg: PrivatePostgres,
    services: Services,
) -> None:
    wait_flowing(obs, services)
    before = pids(obs)
    engine = engine_of(obs)
    with psycopg.connect(private_pg.admin_url()) as locker:
        # Every pass that touches these tables now waits inside its query: killed there, it is mid-pass.
        locker.execute("SET lock_timeout = '30s'")
        locker.execute(f"LOCK TABLE {', '.join(KILLED.values())} IN ACCESS EXCLUSIVE MODE")

        def stuck() -> dict[str, list[int]] | None:
            found = {name: backends(private_pg, before[name]) for name in KILLED}
            if all(any(w == "Lock" for _, _, w in b) for b in found.values()):
                return {name: [p for p, _, _ in b] for name, b in found.items()}
            return None

        victims = wait_until(stuck, WAIT_S, 0.2, "daq:control and transfer:pop-01 waiting on the lock", obs.dump)
        killed_at = utcnow()
        for backend_pids in victims.values():
            private_pg.query("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", backend_pids)
        locker.rollback()
    ids = expose(obs, "AFTER-KILL", frames=4)
    checks = Checks()

    def armed_and_written() -> str | None:
        states = exposure_states(engine, ids)
        return None if all(s == WHOLE for s in states.values()) else f"{states}"

    def copied() -> str | None:
        n = count(engine, select(func.count()).select_from(replicas).where(replicas.c.verified_at > killed_at))
        return None if n else "no copy verified since"

    checks.add("daq:control arms exposures again (written by the writers)", armed_and_written)
    checks.add("transfer:pop-01 copies again", copied)
    checks.add("the killed programs say they are alive", lambda: silent_since(obs, killed_at, list(KILLED)))
    checks.wait(2 * WAIT_S, obs.dump)
    checks.final("the killed programs did not exit", lambda: "; ".join(exited(obs, before)) or None)
    checks.final(
        "the killed programs reconnected",
        lambda: "; ".join(f"{n}: no connection" for n in KILLED if not backends(private_pg, before[n])) or None,
    )
    told = [e for e in events_between(engine, killed_at, utcnow()) if e.source in KILLED]
    print(f"killed at {killed_at:%H:%M:%S.%f}: {victims}; then", [f"{e.source} {e.kind}: {e.message}" for e in told])
    checks.assert_none()


@pytest.mark.live
def test_postgresql_stopped_for_30_s_loses_nothing(
    obs: Fleet,
    private_pg: PrivatePostgres,
    services: Services,
) -> None:
    outage = Outage("PostgreSQL stopped", private_pg.stop, private_pg.start, reads_fail=True)
    survive(obs, services, outage).assert_none()
