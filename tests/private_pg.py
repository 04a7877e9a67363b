"""A PostgreSQL cluster of a test's own (initdb as user postgres, its own port and folder), which the
test may stop and start: the shared server on 127.0.0.1:5432, used by every other test and session,
is never stopped. Used by the database-outage tests (tests/outage) and the fleet tests (tests/fleet).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from tests.conftest import WAIT_S, free_port, tail

# The newest PostgreSQL installed (Debian keeps each major version in a folder of its own).
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
PG_START_S = 120.0  # pg_ctl's own wait for the postmaster, on a busy machine


class PrivatePostgres:
    """A PostgreSQL cluster of our own on 127.0.0.1:`port` (trust auth, run as user postgres)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.bin = PG_BINS[-1].parent

    @property
    def url(self) -> str:
        """The database gozen uses (created by `init`)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/gozen"

    def run(self, tool: str, *args: str) -> None:
        cmd = ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=PG_START_S + 30)
        if r.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} exited {r.returncode}: {r.stderr}\n{tail(self.log)}")

    def init(self) -> None:
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "300",  # ~26 programs, each with its own pool
            "fsync": "off",  # the machine does not crash in these tests: a stop is always clean
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with (self.data / "postgresql.conf").open("a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self.start()
        with psycopg.connect(self.admin_url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE gozen")

    def admin_url(self, db: str = "gozen") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        """Start the cluster and return once it answers a query over TCP."""
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(PG_START_S)), "start")
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                with psycopg.connect(self.admin_url("postgres"), connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the cluster as `pg_ctl -m fast stop` does (SIGINT to the postmaster: every session
        ends at once), but now: sent from here, not after starting runuser and pg_ctl."""
        postmaster = psutil.Process(int((self.data / "postmaster.pid").read_text().split()[0]))
        postmaster.send_signal(signal.SIGINT)
        try:
            postmaster.wait(timeout=PG_START_S)
        except psutil.TimeoutExpired:
            raise AssertionError(f"PostgreSQL did not stop:\n{tail(self.log)}") from None

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser in the gozen database; its rows (none for DDL)."""
        with psycopg.connect(self.admin_url(), autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(sql, params or None)
            return cur.fetchall() if cur.description else []


@contextmanager
def private_cluster() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster, removed afterwards whatever happened (skips without server binaries)."""
    if not PG_BINS:
        pytest.skip("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
    root = Path(tempfile.mkdtemp(prefix="gozen-pg-"))
    shutil.chown(root, "postgres", "postgres")
    pg = PrivatePostgres(root)
    try:
        pg.init()
        yield pg
    finally:
        if pg.running:
            try:
                pg.run("pg_ctl", "-D", str(pg.data), "-m", "immediate", "-w", "stop")
            except AssertionError:
                pass  # nothing more to do than remove its folder
        shutil.rmtree(root, ignore_errors=True)
