"""The catalog's queries: register files, queue, claim and settle replica jobs, what is safe to delete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from gozen.db.tables import daq_files, exports, files, replicas
from gozen.db.types import utcnow


@dataclass(frozen=True)
class Job:
    replica_id: int
    file_id: int
    filename: str
    size_bytes: int
    checksum_xxh3: str
    daq_path: str
    attempts: int
    nodes_taken: frozenset[str]  # nodes that already hold (or are getting) a copy of this file
    previous_path: str | None = None  # where an agent that died was copying it to
    agent: str = ""  # who holds the claim: settling is refused to anyone else (a lease that ran out)
    daq_state: str = "present"  # present: the DAQ copy is a source; otherwise replicas or the archive are


def register(engine: Engine, rows: list[dict[str, Any]], replication: int) -> int:
    """Catalogue files (once each, by name) and queue `replication` copies of each; how many were new."""
    new = 0
    now = utcnow()
    for row in rows:
        try:
            with engine.begin() as conn:
                fid = conn.execute(
                    insert(files).values(daq_state="present", registered_at=now, **row)
                ).inserted_primary_key[0]  # type: ignore[index]
                conn.execute(
                    insert(replicas),
                    [{"file_id": fid, "state": "queued", "attempts": 0, "queued_at": now}] * replication,
                )
            new += 1
        except IntegrityError:
            pass  # already catalogued (by the other path, or another push)
    return new


def unregistered_daq_files(engine: Engine, limit: int = 1000) -> list[dict[str, Any]]:
    """Rows of daq_files written but not yet in the catalog."""
    q = (
        select(daq_files)
        .where(daq_files.c.state == "written")
        .where(~select(files.c.id).where(files.c.filename == daq_files.c.filename).exists())
        .order_by(daq_files.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def known_filenames(engine: Engine, names: list[str]) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(files.c.filename).where(files.c.filename.in_(names))).scalars())


def claim(engine: Engine, agent: str, lease: timedelta) -> Job | None:
    """Take the oldest copy job that is due, or one whose agent's lease ran out; None if there is none.

    On PostgreSQL the candidate row is locked with FOR UPDATE SKIP LOCKED, so agents on
    several hosts never take the same job; on SQLite the UPDATE itself holds the one write
    lock, and its WHERE re-checks the state, which gives the same guarantee.
    """
    now = utcnow()
    due = or_(
        and_(replicas.c.state == "queued", or_(replicas.c.next_try_at.is_(None), replicas.c.next_try_at <= now)),
        and_(replicas.c.state == "copying", replicas.c.claimed_at < now - lease),
    )
    pick = select(replicas.c.id).where(due).order_by(replicas.c.id).limit(1).with_for_update(skip_locked=True)
    with engine.begin() as conn:
        rid = conn.execute(pick).scalar()
        if rid is None:
            return None
        previous = conn.execute(select(replicas.c.path).where(replicas.c.id == rid)).scalar()
        got = conn.execute(
            update(replicas)
            .where(replicas.c.id == rid, due)
            .values(state="copying", claimed_by=agent, claimed_at=now, attempts=replicas.c.attempts + 1)
        ).rowcount
        if got != 1:
            return None
        r = conn.execute(
            select(
                replicas.c.file_id,
                replicas.c.attempts,
                files.c.filename,
                files.c.size_bytes,
                files.c.checksum_xxh3,
                files.c.daq_path,
                files.c.daq_state,
            )
            .join(files, files.c.id == replicas.c.file_id)
            .where(replicas.c.id == rid)
        ).one()
        taken = conn.execute(
            select(replicas.c.node).where(
                replicas.c.file_id == r.file_id,
                replicas.c.id != rid,
                replicas.c.node.is_not(None),
                replicas.c.state.in_(("copying", "verified")),
            )
        ).scalars()
        return Job(
            rid,
            r.file_id,
            r.filename,
            r.size_bytes,
            r.checksum_xxh3,
            r.daq_path,
            r.attempts,
            frozenset(taken),
            previous,
            agent,
            r.daq_state,
        )


def _mine(job: Job) -> Any:
    """The job's row, while this agent still holds the claim (another may have taken it over)."""
    return and_(replicas.c.id == job.replica_id, replicas.c.claimed_by == job.agent, replicas.c.state == "copying")


class _OverQuota(Exception):
    pass


def place(engine: Engine, job: Job, node: str, path: str, quota: int | None = None) -> bool:
    """Put the copy on a node; False if another copy of the file took that node first (unique file+node),
    or if the node's quota (max_bytes) would be passed: agents in other processes place too, so the
    quota is checked here, in the transaction that places, after taking the node's lock."""
    try:
        with engine.begin() as conn:
            if quota is not None and conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": f"gozen-node-{node}"})
            n = conn.execute(update(replicas).where(_mine(job)).values(node=node, path=path)).rowcount
            if n == 1 and quota is not None:  # on SQLite the UPDATE above holds the one write lock
                held = conn.execute(
                    select(func.coalesce(func.sum(files.c.size_bytes), 0))
                    .join(replicas, replicas.c.file_id == files.c.id)
                    .where(replicas.c.node == node, replicas.c.state.in_(("verified", "copying")))
                ).scalar_one()
                if held > quota:
                    raise _OverQuota
        return n == 1
    except (IntegrityError, _OverQuota):
        return False


def verified(engine: Engine, job: Job, node: str, path: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(replicas)
            .where(_mine(job))
            .values(state="verified", node=node, path=path, verified_at=utcnow(), last_error=None)
        )


def failed(engine: Engine, job: Job, error: str, retry_in: timedelta | None) -> None:
    """Back to the queue after retry_in, or failed for good when retry_in is None."""
    values: dict[str, Any] = {"last_error": error[:2000], "claimed_by": None, "node": None, "path": None}
    if retry_in is None:
        values["state"] = "failed"
    else:
        values.update(state="queued", next_try_at=utcnow() + retry_in)
    with engine.begin() as conn:
        conn.execute(update(replicas).where(_mine(job)).values(**values))


def archived(file_id: Any = files.c.id) -> Any:
    """True where the archive has acknowledged the file."""
    return select(exports.c.file_id).where(exports.c.file_id == file_id, exports.c.state == "acknowledged").exists()


def deletable_from_daq(
    engine: Engine, volume: str, host: str, replication: int, require_archive: bool = False, limit: int = 500
) -> list[dict[str, Any]]:
    """DAQ copies on a volume with `replication` verified replicas elsewhere, or archived; oldest first.

    With require_archive, only files the archive has acknowledged.
    """
    n_verified = (
        select(func.count())
        .select_from(replicas)
        .where(replicas.c.file_id == files.c.id, replicas.c.state == "verified")
        .scalar_subquery()
    )
    safe = archived() if require_archive else or_(n_verified >= replication, archived())
    q = (
        select(
            files.c.id,
            files.c.daq_path,
            files.c.size_bytes,
            files.c.filename,
            n_verified.label("verified"),
            archived().label("archived"),
        )
        .where(files.c.daq_state == "present", files.c.daq_volume == volume, files.c.daq_host == host)
        .where(safe)
        .order_by(files.c.registered_at, files.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def verified_replicas(engine: Engine, file_id: int) -> list[dict[str, Any]]:
    q = select(replicas.c.node, replicas.c.path).where(replicas.c.file_id == file_id, replicas.c.state == "verified")
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def is_archived(engine: Engine, file_id: int) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(select(archived(file_id))).scalar())


def daq_bytes(engine: Engine, volume: str, host: str) -> int:
    """Catalogued bytes still on a DAQ volume."""
    q = select(func.coalesce(func.sum(files.c.size_bytes), 0)).where(
        files.c.daq_state == "present", files.c.daq_volume == volume, files.c.daq_host == host
    )
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def mark_daq_deleted(engine: Engine, file_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(files).where(files.c.id == file_id).values(daq_state="deleted", daq_deleted_at=utcnow()))


def mark_daq_present(engine: Engine, file_id: int) -> None:
    """Undo mark_daq_deleted: the file could not be deleted after all."""
    with engine.begin() as conn:
        conn.execute(update(files).where(files.c.id == file_id).values(daq_state="present", daq_deleted_at=None))


@dataclass(frozen=True)
class NodeBacklog:
    node: str
    queued: int
    copying: int
    verified: int
    failed: int
    verified_bytes: int
    expired: int = 0
    recent_bytes: int = 0  # verified within RATE_WINDOW

    @property
    def rate_mb_s(self) -> float:
        return self.recent_bytes / RATE_WINDOW.total_seconds() / 1e6


RATE_WINDOW = timedelta(minutes=10)


def backlog(engine: Engine) -> tuple[list[NodeBacklog], int, datetime | None, int]:
    """(per node counts and rates, unplaced queued jobs, registration time of the oldest unreplicated file, files)."""
    since = utcnow() - RATE_WINDOW
    with engine.connect() as conn:
        recent = dict(
            conn.execute(
                select(replicas.c.node, func.coalesce(func.sum(files.c.size_bytes), 0))
                .join(files, files.c.id == replicas.c.file_id)
                .where(replicas.c.verified_at >= since, replicas.c.state.in_(("verified", "expired")))
                .group_by(replicas.c.node)
            ).all()
        )
        rows = conn.execute(
            select(replicas.c.node, replicas.c.state, func.count(), func.coalesce(func.sum(files.c.size_bytes), 0))
            .join(files, files.c.id == replicas.c.file_id)
            .group_by(replicas.c.node, replicas.c.state)
        ).all()
        oldest = conn.execute(
            select(func.min(files.c.registered_at))
            .join(replicas, replicas.c.file_id == files.c.id)
            .where(replicas.c.state.in_(("queued", "copying", "failed")))
        ).scalar()
        n_files = conn.execute(select(func.count()).select_from(files)).scalar_one()
    by_node: dict[str, dict[str, int]] = {}
    unplaced = 0
    for node, state, n, size in rows:
        if node is None:
            unplaced += n if state in ("queued", "copying") else 0  # failed ones are counted by failed_copies
            continue
        d = by_node.setdefault(
            node, {"queued": 0, "copying": 0, "verified": 0, "failed": 0, "expired": 0, "verified_bytes": 0}
        )
        d[state] = d.get(state, 0) + n
        if state == "verified":
            d["verified_bytes"] += int(size)
    out = [
        NodeBacklog(
            n,
            d["queued"],
            d["copying"],
            d["verified"],
            d["failed"],
            d["verified_bytes"],
            d["expired"],
            int(recent.get(n, 0)),
        )
        for n, d in sorted(by_node.items())
    ]
    return out, unplaced, oldest, int(n_files)


def failed_copies(engine: Engine, limit: int = 5) -> tuple[int, list[tuple[str, str]]]:
    """Copies given up for good (no source left anywhere): how many, and (file, why) for the first few."""
    q = (
        select(files.c.filename, replicas.c.last_error)
        .join(files, files.c.id == replicas.c.file_id)
        .where(replicas.c.state == "failed")
        .order_by(replicas.c.id)
    )
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(replicas).where(replicas.c.state == "failed")).scalar_one()
        some = [(name, why or "") for name, why in conn.execute(q.limit(limit))]
    return int(n), some


def export_counts(engine: Engine) -> dict[str, int]:
    """Files per export state (not_selected, packaged, exported, acknowledged)."""
    with engine.connect() as conn:
        return {s: int(n) for s, n in conn.execute(select(exports.c.state, func.count()).group_by(exports.c.state))}
