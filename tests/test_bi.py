"""BI access: `gozen bi` serves the SQLite database read-only with Datasette; `gozen db bi-role` makes a
PostgreSQL role that reads every table and view and writes nothing."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from tests.conftest import PG_ADMIN_URL, free_port, wait_until
from tests.db.test_views import seed_night
from tests.test_cli import gozen


def write_config(tmp_path: Path, data: dict[str, Any]) -> str:
    f = tmp_path / "gozen.yaml"
    f.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "var"), **data}))
    return str(f)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def seeded_sqlite(tmp_path: Path) -> Path:
    """The demo database after a simulated night, every connection closed (its WAL folded in)."""
    db = tmp_path / "var" / "gozen.db"
    eng = make_engine(f"sqlite:///{db}")
    upgrade(eng)
    seed_night(eng)
    eng.dispose()
    return db


def test_bi_serves_the_views_read_only_and_refuses_writes(tmp_path: Path, seeded_sqlite: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, {"bi": {"port": port}})
    before = digest(seeded_sqlite)
    log = (tmp_path / "bi.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "gozen", "--config", cfg, "bi"], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}/gozen"
    try:

        def summary() -> Any:
            r = httpx.get(f"{base}/v_nightly_summary.json?_shape=array&_sort=night", timeout=10)
            return r.json() if r.status_code == 200 else None

        rows = wait_until(summary, what="Datasette answering", dump=lambda: (tmp_path / "bi.log").read_text())
        assert [(r["night"], r["exposures"], r["bytes"]) for r in rows[:2]] == [
            ("2025-01-10", 3, 3500),
            ("2025-01-11", 1, 2000),
        ]
        page = httpx.get(f"{base}/v_file_lineage", timeout=10).text
        assert "Each DAQ file, its catalogue entry" in page  # the view's description, from views.py

        r = httpx.get(base + ".json", params={"sql": "DELETE FROM exposures", "_shape": "array"}, timeout=10)
        assert r.status_code == 400 and "Statement must be a SELECT" in r.text
        r = httpx.get(
            base + ".json",
            params={"sql": "SELECT 1 FROM exposures; UPDATE exposures SET object = 'x'", "_shape": "array"},
            timeout=10,
        )
        assert r.status_code == 400
        for path in ("", "/-/create"):  # Datasette 0.65 has no write API, and no plugin that writes is installed
            r = httpx.post(base + path, json={"table": "mine", "row": {"object": "x"}}, timeout=10)
            assert r.status_code == 405, (path, r.status_code)
        r = httpx.get(base + ".json", params={"sql": "SELECT COUNT(*) AS n FROM exposures", "_shape": "array"})
        assert r.json() == [{"n": 5}]
    finally:
        proc.terminate()  # uvicorn shuts down, then dies of the SIGTERM it caught, as a server should
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), (tmp_path / "bi.log").read_text()
        log.close()
    assert digest(seeded_sqlite) == before  # not a byte written


def test_bi_on_postgresql_points_to_the_role_and_metabase(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"database": {"url": "postgresql://gozen@127.0.0.1:5432/gozen"}})
    r = gozen("--config", cfg, "bi")
    assert r.exit_code == 1
    assert "gozen db bi-role" in r.output and "Metabase" in r.output


def test_bi_without_a_database_says_so(tmp_path: Path) -> None:
    r = gozen("--config", write_config(tmp_path, {}), "bi")
    assert r.exit_code == 1 and "no database at" in r.output


# -- gozen db bi-role ----------------------------------------------------------------------------------------


def as_user(url: str, user: str) -> str:
    return make_url(url).set(username=user, password=None).render_as_string(hide_password=False)


def psycopg_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def bi_role(pg_engine: Engine) -> Iterator[str]:
    """A role name no other test uses (roles are the whole server's), dropped afterwards."""
    name = f"gozen_bi_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(psycopg_url(pg_engine.url.render_as_string(hide_password=False)), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            conn.execute(f'DROP OWNED BY "{name}"')
            conn.execute(f'DROP ROLE "{name}"')


def test_bi_role_reads_every_view_and_writes_nothing(tmp_path: Path, pg_engine: Engine, bi_role: str) -> None:
    seed_night(pg_engine)
    url = pg_engine.url.render_as_string(hide_password=False)
    cfg = write_config(tmp_path, {"database": {"url": url}})
    secret = tmp_path / "bi-password"
    secret.write_text("s3cret'quote\n")
    r = gozen("--config", cfg, "db", "bi-role", "--name", bi_role, "--password-file", str(secret))
    assert r.exit_code == 0, r.output
    assert f"role {bi_role} created" in r.output
    r = gozen("--config", cfg, "db", "bi-role", "--name", bi_role)  # again: brought up to date, no error
    assert r.exit_code == 0 and f"role {bi_role} updated" in r.output, r.output
    with pg_engine.begin() as conn:  # a table made later by gozen's user is readable too
        conn.execute(text("CREATE TABLE later_table (x integer)"))
    try:
        with psycopg.connect(psycopg_url(as_user(url, bi_role)), autocommit=True) as conn:
            for view in ("v_nightly_summary", "v_exposures", "v_file_lineage", "v_chip_health", "v_weather_hourly"):
                assert conn.execute(f"SELECT COUNT(*) FROM {view}").fetchone()[0] > 0, view  # type: ignore[index]
            assert conn.execute("SELECT COUNT(*) FROM later_table").fetchone() == (0,)
            writes = [
                "INSERT INTO events (time, host, source, kind, subject, severity, message) "
                "VALUES (now(), 'h', 's', 'k', 'x', 'info', 'm')",
                "UPDATE exposures SET object = 'x'",
                "DELETE FROM status_history",
                "CREATE TABLE mine (x integer)",
                "CREATE VIEW mine AS SELECT 1",
            ]
            for stmt in writes:
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                    conn.execute(stmt)  # refused by its read-only default first
                with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                    conn.execute("SET TRANSACTION READ WRITE")  # and without it, by its privileges
                    conn.execute(stmt)
    finally:
        with pg_engine.begin() as conn:
            conn.execute(text("DROP TABLE later_table"))
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM exposures WHERE object = 'x'")).scalar() == 0


def test_bi_role_refuses_sqlite(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {})
    assert gozen("--config", cfg, "db", "upgrade").exit_code == 0
    r = gozen("--config", cfg, "db", "bi-role")
    assert r.exit_code == 1
    assert "SQLite" in r.output and "gozen bi" in r.output


def test_bi_role_needs_a_user_who_may_create_roles(tmp_path: Path, pg_engine: Engine, bi_role: str) -> None:
    weak = f"{bi_role}_weak"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{weak}" LOGIN')
    try:
        url = as_user(pg_engine.url.render_as_string(hide_password=False), weak)
        r = gozen("--config", write_config(tmp_path, {"database": {"url": url}}), "db", "bi-role", "--name", bi_role)
        assert r.exit_code == 1
        assert f"user '{weak}' may not create roles" in r.output
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP ROLE "{weak}"')


def test_bi_role_refuses_a_bad_name(tmp_path: Path, pg_engine: Engine) -> None:
    url = pg_engine.url.render_as_string(hide_password=False)
    r = gozen("--config", write_config(tmp_path, {"database": {"url": url}}), "db", "bi-role", "--name", "Bad-Name")
    assert r.exit_code == 1 and "role 'Bad-Name'" in r.output


@pytest.mark.parametrize("reads_tables", [False, True])
def test_bi_role_refuses_to_leave_a_role_that_cannot_read(
    tmp_path: Path, pg_engine: Engine, bi_role: str, reads_tables: bool
) -> None:
    """A user who may create roles but does not own gozen's tables: its GRANTs fail (or, where it holds some
    right without the grant option, only warn: the command checks what the role can read); it says why and
    leaves no role behind."""
    stranger = f"{bi_role}_cr"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{stranger}" LOGIN CREATEROLE')
    if reads_tables:
        with pg_engine.begin() as c:
            c.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{stranger}"'))
    try:
        url = as_user(pg_engine.url.render_as_string(hide_password=False), stranger)
        r = gozen("--config", write_config(tmp_path, {"database": {"url": url}}), "db", "bi-role", "--name", bi_role)
        assert r.exit_code == 1, r.output
        if reads_tables:  # its GRANTs only warned: the check after them found the role reads nothing
            assert f"role '{bi_role}' cannot read" in r.output and f"user '{stranger}' does not own" in r.output
        else:
            assert f"user '{stranger}' may not grant this (permission denied for table" in r.output
        assert "run `gozen db bi-role` as the user gozen's tables belong to" in r.output
        with psycopg.connect(PG_ADMIN_URL) as conn:
            assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (bi_role,)).fetchone() is None
    finally:
        with pg_engine.begin() as c:
            c.execute(text(f'DROP OWNED BY "{stranger}"'))
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP ROLE "{stranger}"')
