"""One owner per table: SQL on gozen's tables lives only in the parts' store modules.

Web routes, the CLI, the exporter, retention, audit and the couriers call functions of these
modules; a query written anywhere else is how two parts come to disagree about a state.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gozen

SRC = Path(gozen.__file__).parent
STORES = {
    "db/events.py",  # events
    "db/migrate.py",  # alembic_version, the whole schema
    "db/engine.py",  # ping
    "db/docs.py",  # reads the table definitions to document them, runs no SQL
    "daq/catalog.py",  # exposures, daq_files, frames
    "daq/stats.py",  # read-only: what the DAQ did, per host and per chip
    "transfer/catalog.py",  # files, replicas (exports: export_counts, the archive flag)
    "transfer/packages.py",  # exports: the packages of transfer:export
    "queue/store.py",  # recipes, queue_state, queue history
    "couriers/store.py",  # alerts, outbox, feed_state
    "monitors/board.py",  # status, status_history (the status board)
    "db/views.py",  # the BI views (v_*), v_site_time, the read-only BI role
    "daq/quicklook.py",  # quicklook (daq:quicklook writes it; the pages read it)
    "report/store.py",  # nightly_reports
    "report/facts.py",  # read-only: what a night did, for its report
    "metrics.py",  # read-only: one query per metric family, per scrape
    "daq/browse.py",  # read-only: the exposures browser's pages
    "monitors/series.py",  # read-only: status_history thinned for the Monitors page's plots
}


def modules() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel not in STORES and not rel.startswith("db/migrations/"):
            out.append((rel, ast.parse(path.read_text(encoding="utf-8"), rel)))
    return out


def test_no_module_but_the_stores_opens_a_database_connection() -> None:
    found = []
    for rel, tree in modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("begin", "connect", "execute")
                and "engine" in ast.unparse(node.func.value).lower() + ("conn" if node.func.attr == "execute" else "")
            ):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert not found, "SQL outside the store modules:\n" + "\n".join(found)


def test_no_module_but_the_stores_imports_the_tables() -> None:
    found = []
    for rel, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "gozen.db.tables":
                found.append(f"{rel}:{node.lineno}: from gozen.db.tables import …")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "gozen.db"
                and "tables" in {a.name for a in node.names}
            ):
                found.append(f"{rel}:{node.lineno}: from gozen.db import tables")
    assert not found, "table definitions used outside the store modules:\n" + "\n".join(found)
