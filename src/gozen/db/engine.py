"""Engines for SQLite (WAL, busy timeout) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "handle_error", _sqlite_reopen_read_only)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def is_unavailable(err: BaseException) -> bool:
    """True when `err` means the database cannot be reached or written right now (refused, gone,
    restarting, a dropped connection, a read-only or locked SQLite file): wait and try again.
    False for errors in the statement or the data, which trying again will not fix."""
    if isinstance(err, exc.DBAPIError) and err.connection_invalidated:
        return True
    return isinstance(err, (exc.OperationalError, exc.InterfaceError))


def ping(engine: Engine) -> None:
    """Raise unless the database answers a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


# sqlite3 opens a file it cannot write read-only, and such a connection stays read-only after the
# file is writable again; SELECT 1 (the pool's pre-ping) does not notice. Treat these errors as a
# lost connection, so the pool drops it and the next checkout opens the file afresh.
SQLITE_REOPEN = ("attempt to write a readonly database", "disk i/o error")


def _sqlite_reopen_read_only(ctx: Any) -> None:
    err = ctx.original_exception
    if isinstance(err, sqlite3.OperationalError) and any(m in str(err).lower() for m in SQLITE_REOPEN):
        ctx.is_disconnect = True
