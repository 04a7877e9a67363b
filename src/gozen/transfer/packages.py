"""Export packages (the exports table): every query on it for transfer:export, and nowhere else.

Which files go into a package, and the package's life: packaged, exported (sent and proven at
the archive), acknowledged by the archive's receipt, or refused and packaged again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gozen.db.states import ExportState, ReplicaState
from gozen.db.tables import exports, files, replicas
from gozen.db.types import utcnow


def _read(engine: Engine, q: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(q).all())


def _write(engine: Engine, statement: Any) -> int:
    with engine.begin() as conn:
        return int(conn.execute(statement).rowcount)


# -- exports to the archive ----------------------------------------------------------
def export_candidates(engine: Engine, nodes: list[str], registered_before: datetime, limit: int = 5000) -> list[Any]:
    """Files registered before the cutoff, with a verified replica on one of `nodes`, never packaged:
    (id, filename, size_bytes, checksum_xxh3, path), one replica per file."""
    q = (
        select(files.c.id, files.c.filename, files.c.size_bytes, files.c.checksum_xxh3, replicas.c.path)
        .join(replicas, replicas.c.file_id == files.c.id)
        .where(
            replicas.c.state == ReplicaState.VERIFIED,
            replicas.c.node.in_(nodes),
            files.c.registered_at <= registered_before,
        )
        .where(~select(exports.c.file_id).where(exports.c.file_id == files.c.id).exists())
        .order_by(files.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return list({r.id: r for r in rows}.values())


def _claim(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert export rows, skipping files another exporter claimed first (no duplicate key, no error)."""
    if not rows:
        return 0
    stmt = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(exports)
    claim = stmt.on_conflict_do_nothing(index_elements=[exports.c.file_id]).returning(exports.c.file_id)
    return len(conn.execute(claim, rows).all())


def _ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in file order: every exporter claims (locks) files in one order, so two never deadlock."""
    return sorted(rows, key=lambda r: int(r["file_id"]))


def record_packages(
    engine: Engine, host: str, by_night: dict[str, list[dict[str, Any]]], not_selected: list[dict[str, Any]]
) -> tuple[int, int]:
    """Claim files for export, in one transaction: those the archive does not take, and per night one new
    package `NIGHT-HOST-NNN` holding exactly the files this call claimed. A file another exporter claimed
    meanwhile is left to it. Returns (files packaged, files not selected) by this call.

    Exporters of one host take turns naming packages (a transaction lock on PostgreSQL; SQLite's one writer),
    so two never pick the same name; each package is first written under a name no other exporter can
    use, then renamed. Files are claimed in one order (not selected first, then by night, by file id), the
    same in every exporter: one waits for another, they never deadlock."""
    packaged = 0
    with engine.begin() as conn:
        skipped = _claim(
            conn, [{**r, "state": ExportState.NOT_SELECTED, "manifest": None} for r in _ordered(not_selected)]
        )
        for night, rows in sorted(by_night.items()):
            prefix = f"{night}-{host}-"
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:p))"), {"p": f"gozen-export-{prefix}"})
            mine = f"~{uuid.uuid4().hex}"  # this transaction's own, until the package has its name
            n = _claim(conn, [{**r, "state": ExportState.PACKAGED, "package": mine} for r in _ordered(rows)])
            if n == 0:
                continue
            names = conn.execute(
                select(exports.c.package).where(exports.c.package.startswith(prefix, autoescape=True)).distinct()
            ).scalars()
            last = max((int(p[len(prefix) :]) for p in names if p[len(prefix) :].isdigit()), default=0)
            conn.execute(update(exports).where(exports.c.package == mine).values(package=f"{prefix}{last + 1:03d}"))
            packaged += n
    return packaged, skipped


def _of_host(package: str, host: str) -> bool:
    """Is `package` (NIGHT-HOST-NNN) one of `host`'s?"""
    night, _, rest = package.partition("-")
    name, _, number = rest.rpartition("-")
    return name == host and len(night) == 8 and number.isdigit()


def packages_to_send(engine: Engine, host: str) -> list[str]:
    """`host`'s packages made and not yet sent, in name order (another host's files are not readable here)."""
    q = select(exports.c.package).where(exports.c.state == ExportState.PACKAGED).distinct().order_by(exports.c.package)
    with engine.connect() as conn:
        return [p for p in conn.execute(q).scalars() if _of_host(p, host)]


def package_failed(engine: Engine, package: str, why: str) -> None:
    """Note why a package could not be sent (it is sent again next pass)."""
    _write(
        engine,
        update(exports)
        .where(exports.c.package == package, exports.c.state == ExportState.PACKAGED)
        .values(last_error=why[:2000]),
    )


def package_files(engine: Engine, package: str) -> list[Any]:
    """(file_id, night, source_path, manifest) of each file of a package waiting to be sent."""
    q = select(exports.c.file_id, exports.c.night, exports.c.source_path, exports.c.manifest).where(
        exports.c.package == package, exports.c.state == ExportState.PACKAGED
    )
    return _read(engine, q)


def package_exported(engine: Engine, package: str) -> int:
    """A package's files and manifest are proven at the archive; how many files."""
    return _write(
        engine,
        update(exports)
        .where(exports.c.package == package, exports.c.state == ExportState.PACKAGED)
        .values(state=ExportState.EXPORTED, exported_at=utcnow(), last_error=None),
    )


def awaiting_receipt(engine: Engine, host: str) -> list[tuple[str, str]]:
    """(package, night) of every package of `host` sent whose receipt has not been read."""
    q = select(exports.c.package, exports.c.night).where(exports.c.state == ExportState.EXPORTED).distinct()
    with engine.connect() as conn:
        return [(p, n) for p, n in conn.execute(q) if _of_host(p, host)]


def settle_package(
    engine: Engine, package: str, accepted: set[str], refused: dict[str, str]
) -> tuple[int, list[tuple[str, str]]]:
    """Apply an archive's receipt: named files acknowledged, the others forgotten (packaged again next pass).
    Returns (files acknowledged, (file, why) of each refused)."""
    acknowledged, refusals, now = 0, [], utcnow()
    with engine.begin() as conn:
        rows = conn.execute(
            select(exports.c.file_id, files.c.filename)
            .join(files, files.c.id == exports.c.file_id)
            .where(exports.c.package == package, exports.c.state == ExportState.EXPORTED)
        ).all()
        for file_id, name in rows:
            if name in accepted:
                conn.execute(
                    update(exports)
                    .where(exports.c.file_id == file_id)
                    .values(state=ExportState.ACKNOWLEDGED, acknowledged_at=now)
                )
                acknowledged += 1
            else:
                conn.execute(delete(exports).where(exports.c.file_id == file_id))
                refusals.append((name, refused.get(name, "not named in the archive's receipt")))
    return acknowledged, refusals
