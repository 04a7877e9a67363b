"""Export packages (the exports table): every query on it for transfer:export, and nowhere else.

Which files go into a package, and the package's life: packaged, exported (sent and proven at
the archive), acknowledged by the archive's receipt, or refused and packaged again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update

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


def record_packages(
    engine: Engine, host: str, by_night: dict[str, list[dict[str, Any]]], not_selected: list[dict[str, Any]]
) -> None:
    """Export rows: files the archive does not take, and per night one new package `NIGHT-HOST-NNN`."""
    with engine.begin() as conn:
        if not_selected:
            conn.execute(
                insert(exports), [{**r, "state": ExportState.NOT_SELECTED, "manifest": None} for r in not_selected]
            )
        for night, rows in sorted(by_night.items()):
            prefix = f"{night}-{host}-"
            n = conn.execute(
                select(func.count(func.distinct(exports.c.package))).where(exports.c.package.startswith(prefix))
            ).scalar_one()
            package = f"{prefix}{n + 1:03d}"
            conn.execute(insert(exports), [{**r, "state": ExportState.PACKAGED, "package": package} for r in rows])


def packages_to_send(engine: Engine) -> list[str]:
    """Packages made and not yet sent, in name order."""
    q = select(exports.c.package).where(exports.c.state == ExportState.PACKAGED).distinct().order_by(exports.c.package)
    with engine.connect() as conn:
        return list(conn.execute(q).scalars())


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


def awaiting_receipt(engine: Engine) -> list[tuple[str, str]]:
    """(package, night) of every package sent whose receipt has not been read."""
    q = select(exports.c.package, exports.c.night).where(exports.c.state == ExportState.EXPORTED).distinct()
    with engine.connect() as conn:
        return [(p, n) for p, n in conn.execute(q)]


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
