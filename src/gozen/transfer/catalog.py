"""The transfer catalog (files, replicas, exports): every query on those tables, and nowhere else.

Register files and queue their copies; claim and settle copy jobs; what is safe to delete from a
DAQ volume or a storage node; what the audit reads and repairs; export packages and receipts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, text, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from gozen.db.states import DaqCopyState, DaqFileState, ExportState, ReplicaState
from gozen.db.tables import daq_files, exports, files, replicas
from gozen.db.types import utcnow

# A replica holding (or getting) room on its node: being copied, copied and waiting for its proof, or verified.
ON_NODE = (ReplicaState.COPYING, ReplicaState.COPIED, ReplicaState.VERIFIED)


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
    previous_path: str | None = None  # where a pass that died (or an agent that died) was copying it to
    agent: str = ""  # who holds the claim: settling is refused to anyone else (a lease that ran out)
    daq_state: str = DaqCopyState.PRESENT  # present: the DAQ copy is a source; otherwise replicas or the archive are
    previous_node: str | None = None  # the node of previous_path
    daq_host: str = ""
    daq_volume: str = ""


@dataclass(frozen=True)
class Reach:
    """The sources a copy agent can read, so that it claims only copies it can make.

    daq_hosts: hosts whose DAQ copies are on this machine (None: every host's, a one-host setup);
    daq_volumes: DAQ volumes it pulls from their host's rsync daemon; nodes: storage nodes whose
    verified replicas it can read; archive: whether it can read the archive's copies.
    """

    daq_hosts: frozenset[str] | None = None
    daq_volumes: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()
    archive: bool = False

    def where(self) -> Any:
        """The files this agent can copy, as a WHERE clause on files."""
        present = files.c.daq_state == DaqCopyState.PRESENT
        if self.daq_hosts is None:
            daq = present
        else:
            daq = and_(present, or_(files.c.daq_host.in_(self.daq_hosts), files.c.daq_volume.in_(self.daq_volumes)))
        other = aliased(replicas)
        a_replica = (
            select(other.c.id)
            .where(other.c.file_id == files.c.id, other.c.state == ReplicaState.VERIFIED, other.c.node.in_(self.nodes))
            .exists()
        )
        elsewhere = or_(a_replica, archived()) if self.archive else a_replica
        # With no source left anywhere, any agent takes the copy: to try again, and in the end give it up.
        any_replica = select(other.c.id).where(other.c.file_id == files.c.id, other.c.state == ReplicaState.VERIFIED)
        nowhere = and_(~any_replica.exists(), ~archived())
        return or_(daq, and_(~present, or_(elsewhere, nowhere)))


def _read(engine: Engine, q: Any) -> list[Any]:
    """The rows of one query."""
    with engine.connect() as conn:
        return list(conn.execute(q).all())


def _write(engine: Engine, statement: Any) -> int:
    """One statement in its own transaction; how many rows it changed."""
    with engine.begin() as conn:
        return int(conn.execute(statement).rowcount)


def register(engine: Engine, rows: list[dict[str, Any]], replication: int) -> int:
    """Catalogue files (once each, by name) and queue `replication` copies of each; how many were new."""
    new = 0
    now = utcnow()
    for row in rows:
        try:
            with engine.begin() as conn:
                fid = conn.execute(
                    insert(files).values(daq_state=DaqCopyState.PRESENT, registered_at=now, **row)
                ).inserted_primary_key[0]  # type: ignore[index]
                _queue_copies(conn, fid, replication)
            new += 1
        except IntegrityError:
            pass  # already catalogued (by the other path, or another push)
    return new


def _queue_copies(conn: Connection, file_id: int, n: int) -> None:
    row = {"file_id": file_id, "state": ReplicaState.QUEUED, "attempts": 0, "queued_at": utcnow()}
    conn.execute(insert(replicas), [row] * n)


def add_copies(engine: Engine, file_id: int, n: int) -> int:
    """Queue n more copies of a file (replication was raised since it was catalogued)."""
    with engine.begin() as conn:
        _queue_copies(conn, file_id, n)
    return n


def unregistered_daq_files(engine: Engine, limit: int = 1000) -> list[dict[str, Any]]:
    """Rows of daq_files written but not yet in the catalog."""
    q = (
        select(daq_files)
        .where(daq_files.c.state == DaqFileState.WRITTEN)
        .where(~select(files.c.id).where(files.c.filename == daq_files.c.filename).exists())
        .order_by(daq_files.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def known_filenames(engine: Engine, names: list[str]) -> set[str]:
    """Those of `names` already catalogued."""
    with engine.connect() as conn:
        return set(conn.execute(select(files.c.filename).where(files.c.filename.in_(names))).scalars())


def _due(now: datetime, lease: timedelta) -> Any:
    """Copy jobs to take: queued and due, or copying under an agent whose lease ran out."""
    return or_(
        and_(
            replicas.c.state == ReplicaState.QUEUED,
            or_(replicas.c.next_try_at.is_(None), replicas.c.next_try_at <= now),
        ),
        and_(replicas.c.state == ReplicaState.COPYING, replicas.c.claimed_at < now - lease),
    )


def claim(engine: Engine, agent: str, lease: timedelta, reach: Reach | None = None) -> Job | None:
    """Take the oldest copy job that is due, or one whose agent's lease ran out, among the files this
    agent can read (`reach`; None: any); None if there is none.

    On PostgreSQL the candidate row is locked with FOR UPDATE SKIP LOCKED, so agents on
    several hosts never take the same job; on SQLite the UPDATE itself holds the one write
    lock, and its WHERE re-checks the state, which gives the same guarantee.
    """
    now = utcnow()
    due = _due(now, lease)
    pick = select(replicas.c.id).join(files, files.c.id == replicas.c.file_id).where(due)
    if reach is not None:
        pick = pick.where(reach.where())
    pick = pick.order_by(replicas.c.id).limit(1).with_for_update(skip_locked=True, of=replicas)
    with engine.begin() as conn:
        rid = conn.execute(pick).scalar()
        if rid is None or not _take(conn, [rid], due, agent, now):
            return None
        return _job(conn, rid, agent)


def claim_batch(
    engine: Engine,
    agent: str,
    lease: timedelta,
    daq_hosts: frozenset[str] | None,
    node: str,
    night: str,
    limit: int,
    max_bytes: int,
) -> list[Job]:
    """More due copy jobs to go with one already placed on `node`, to be sent in the same run: files of
    the same night whose DAQ copy is on this machine (`daq_hosts`, None: any), with no copy on `node` yet,
    one copy of each file, oldest first, together at most `limit` files and `max_bytes`."""
    now = utcnow()
    due = _due(now, lease)
    on_node = aliased(replicas)
    pick = (
        select(replicas.c.id, replicas.c.file_id, files.c.size_bytes)
        .join(files, files.c.id == replicas.c.file_id)
        .where(due, files.c.daq_state == DaqCopyState.PRESENT, func.substr(files.c.filename, 5, 8) == night)
        .where(
            ~select(on_node.c.id)
            .where(on_node.c.file_id == replicas.c.file_id, on_node.c.node == node, on_node.c.state.in_(ON_NODE))
            .exists()
        )
        .order_by(replicas.c.id)
        .limit(limit * 4)
        .with_for_update(skip_locked=True, of=replicas)
    )
    if daq_hosts is not None:
        pick = pick.where(files.c.daq_host.in_(daq_hosts))
    with engine.begin() as conn:
        chosen: list[int] = []
        seen: set[int] = set()
        size = 0
        for rid, fid, nbytes in conn.execute(pick).all():
            if fid in seen or len(chosen) >= limit or size + nbytes > max_bytes:
                continue
            chosen.append(rid)
            seen.add(fid)
            size += nbytes
        if not chosen:
            return []
        _take(conn, chosen, due, agent, now)
        got = conn.execute(select(replicas.c.id).where(replicas.c.id.in_(chosen), replicas.c.claimed_by == agent))
        return [_job(conn, rid, agent) for rid in sorted(got.scalars())]


def _take(conn: Connection, ids: list[int], due: Any, agent: str, now: datetime) -> int:
    """Claim the rows that are still due (the WHERE re-checks it: on SQLite the UPDATE holds the lock)."""
    return int(
        conn.execute(
            update(replicas)
            .where(replicas.c.id.in_(ids), due)
            .values(state=ReplicaState.COPYING, claimed_by=agent, claimed_at=now, attempts=replicas.c.attempts + 1)
        ).rowcount
    )


def _job(conn: Connection, rid: int, agent: str) -> Job:
    """The claimed job of replica `rid`, with the nodes that hold (or are getting) the file's other copies."""
    r = conn.execute(
        select(
            replicas.c.file_id,
            replicas.c.attempts,
            replicas.c.node,
            replicas.c.path,
            files.c.filename,
            files.c.size_bytes,
            files.c.checksum_xxh3,
            files.c.daq_path,
            files.c.daq_state,
            files.c.daq_host,
            files.c.daq_volume,
        )
        .join(files, files.c.id == replicas.c.file_id)
        .where(replicas.c.id == rid)
    ).one()
    taken = conn.execute(
        select(replicas.c.node).where(
            replicas.c.file_id == r.file_id,
            replicas.c.id != rid,
            replicas.c.node.is_not(None),
            replicas.c.state.in_(ON_NODE),
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
        r.path,
        agent,
        r.daq_state,
        r.node,
        r.daq_host or "",
        r.daq_volume or "",
    )


def _mine(job: Job) -> Any:
    """The job's row, while this agent still holds the claim (another may have taken it over)."""
    return and_(
        replicas.c.id == job.replica_id, replicas.c.claimed_by == job.agent, replicas.c.state == ReplicaState.COPYING
    )


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
                    .where(replicas.c.node == node, replicas.c.state.in_(ON_NODE))
                ).scalar_one()
                if held > quota:
                    raise _OverQuota
        return n == 1
    except (IntegrityError, _OverQuota):
        return False


def verified(engine: Engine, job: Job, node: str, path: str) -> None:
    """The copy landed whole on the node and was just proven (read back from the node's disk, or an rsync
    checksum pass): the replica counts."""
    now = utcnow()
    _write(
        engine,
        update(replicas)
        .where(_mine(job))
        .values(state=ReplicaState.VERIFIED, node=node, path=path, verified_at=now, proved_at=now, last_error=None),
    )


def copied(engine: Engine, job: Job, node: str, path: str) -> None:
    """The copy is on the node and fsynced there: it waits for its proof by the node's own host."""
    _write(
        engine,
        update(replicas)
        .where(_mine(job))
        .values(state=ReplicaState.COPIED, node=node, path=path, claimed_by=None, claimed_at=None, last_error=None),
    )


def unclaim(engine: Engine, job: Job) -> None:
    """Give a job back untried (it could not go with its batch): due again at once, the try not counted."""
    _write(
        engine,
        update(replicas)
        .where(_mine(job))
        .values(state=ReplicaState.QUEUED, claimed_by=None, node=None, path=None, attempts=replicas.c.attempts - 1),
    )


# -- proofs on the node's own host (storage:prover) ----------------------------------
@dataclass(frozen=True)
class Copied:
    """A copied replica claimed by a prover, to be read back from its node's disk."""

    replica_id: int
    filename: str
    node: str
    path: str
    size_bytes: int
    checksum_xxh3: str


def claim_copied(engine: Engine, prover: str, nodes: list[str], lease: timedelta, limit: int) -> list[Copied]:
    """Take up to `limit` copied replicas on `nodes` to prove (or ones whose prover's lease ran out),
    oldest first; FOR UPDATE SKIP LOCKED on PostgreSQL, so provers never read the same copy twice."""
    now = utcnow()
    due = and_(
        replicas.c.state == ReplicaState.COPIED,
        replicas.c.node.in_(nodes),
        or_(replicas.c.claimed_by.is_(None), replicas.c.claimed_at < now - lease),
    )
    pick = select(replicas.c.id).where(due).order_by(replicas.c.id).limit(limit).with_for_update(skip_locked=True)
    with engine.begin() as conn:
        ids = list(conn.execute(pick).scalars())
        if not ids:
            return []
        conn.execute(update(replicas).where(replicas.c.id.in_(ids), due).values(claimed_by=prover, claimed_at=now))
        rows = conn.execute(
            select(replicas.c.id, files.c.filename, replicas.c.node, replicas.c.path, files.c.size_bytes)
            .add_columns(files.c.checksum_xxh3)
            .join(files, files.c.id == replicas.c.file_id)
            .where(replicas.c.id.in_(ids), replicas.c.claimed_by == prover)
            .order_by(replicas.c.id)
        ).all()
    return [Copied(*r) for r in rows]


def _proving(c: Copied, prover: str) -> Any:
    return and_(replicas.c.id == c.replica_id, replicas.c.claimed_by == prover, replicas.c.state == ReplicaState.COPIED)


def proven(engine: Engine, c: Copied, prover: str) -> bool:
    """Read back whole from the node's disk: verified, proved now. False if the claim was lost meanwhile."""
    now = utcnow()
    done = update(replicas).where(_proving(c, prover))
    done = done.values(state=ReplicaState.VERIFIED, verified_at=now, proved_at=now, claimed_by=None, last_error=None)
    return _write(engine, done) == 1


def disproven(engine: Engine, c: Copied, prover: str, why: str) -> bool:
    """Missing or damaged on the node: back in the queue, to be copied again anywhere, at once."""
    again = update(replicas).where(_proving(c, prover))
    again = again.values(
        state=ReplicaState.QUEUED, node=None, path=None, claimed_by=None, next_try_at=None, last_error=why[:2000]
    )
    return _write(engine, again) == 1


def old_proofs(engine: Engine, nodes: list[str], proved_before: datetime, limit: int) -> list[Copied]:
    """Verified replicas on `nodes` last proven before `proved_before` (or never), oldest proof first."""
    q = (
        select(replicas.c.id, files.c.filename, replicas.c.node, replicas.c.path, files.c.size_bytes)
        .add_columns(files.c.checksum_xxh3)
        .join(files, files.c.id == replicas.c.file_id)
        .where(replicas.c.state == ReplicaState.VERIFIED, replicas.c.node.in_(nodes), replicas.c.path.is_not(None))
        .where(or_(replicas.c.proved_at.is_(None), replicas.c.proved_at < proved_before))
        .order_by(replicas.c.proved_at.is_not(None), replicas.c.proved_at, replicas.c.id)
        .limit(limit)
    )
    return [Copied(*r) for r in _read(engine, q)]


def failed(engine: Engine, job: Job, error: str, retry_in: timedelta | None) -> None:
    """Back to the queue after retry_in, or failed for good when retry_in is None."""
    values: dict[str, Any] = {"last_error": error[:2000], "claimed_by": None, "node": None, "path": None}
    if retry_in is None:
        values["state"] = ReplicaState.FAILED
    else:
        values.update(state=ReplicaState.QUEUED, next_try_at=utcnow() + retry_in)
    _write(engine, update(replicas).where(_mine(job)).values(**values))


def release(engine: Engine, job: Job, why: str, retry_in: timedelta) -> None:
    """Back to the queue after retry_in, still naming where it was going: a copy may be whole there already."""
    _write(
        engine,
        update(replicas)
        .where(_mine(job))
        .values(state=ReplicaState.QUEUED, claimed_by=None, last_error=why[:2000], next_try_at=utcnow() + retry_in),
    )


def archived(file_id: Any = files.c.id) -> Any:
    """True where the archive has acknowledged the file."""
    return (
        select(exports.c.file_id)
        .where(exports.c.file_id == file_id, exports.c.state == ExportState.ACKNOWLEDGED)
        .exists()
    )


def deletable_from_daq(
    engine: Engine,
    volume: str,
    host: str,
    replication: int,
    proved_after: datetime,
    require_archive: bool = False,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """DAQ copies on a volume with `replication` proven replicas (verified, and proved_at not before
    `proved_after`), or archived; oldest first. With require_archive, only files the archive has acknowledged.
    `proven` counts the proofs (the caller still leaves out a "replica" that is the DAQ copy itself)."""
    n_proven = (
        select(func.count())
        .select_from(replicas)
        .where(
            replicas.c.file_id == files.c.id,
            replicas.c.state == ReplicaState.VERIFIED,
            replicas.c.proved_at >= proved_after,
        )
        .scalar_subquery()
    )
    safe = archived() if require_archive else or_(n_proven >= replication, archived())
    q = (
        select(
            files.c.id,
            files.c.daq_path,
            files.c.size_bytes,
            files.c.filename,
            n_proven.label("proven"),
            archived().label("archived"),
        )
        .where(files.c.daq_state == DaqCopyState.PRESENT, files.c.daq_volume == volume, files.c.daq_host == host)
        .where(safe)
        .order_by(files.c.registered_at, files.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def verified_replicas(engine: Engine, file_id: int) -> list[dict[str, Any]]:
    """Node and path of each verified replica of a file."""
    q = select(replicas.c.node, replicas.c.path).where(
        replicas.c.file_id == file_id, replicas.c.state == ReplicaState.VERIFIED
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def is_archived(engine: Engine, file_id: int) -> bool:
    """Has the archive acknowledged the file?"""
    with engine.connect() as conn:
        return bool(conn.execute(select(archived(file_id))).scalar())


def daq_bytes(engine: Engine, volume: str, host: str) -> int:
    """Catalogued bytes still on a DAQ volume."""
    q = select(func.coalesce(func.sum(files.c.size_bytes), 0)).where(
        files.c.daq_state == DaqCopyState.PRESENT, files.c.daq_volume == volume, files.c.daq_host == host
    )
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def daq_bytes_by_volume(engine: Engine) -> dict[str, int]:
    """Catalogued bytes still on each DAQ volume (every host's)."""
    q = (
        select(files.c.daq_volume, func.coalesce(func.sum(files.c.size_bytes), 0))
        .where(files.c.daq_state == DaqCopyState.PRESENT)
        .group_by(files.c.daq_volume)
    )
    with engine.connect() as conn:
        return {str(v): int(n) for v, n in conn.execute(q)}


def bytes_on_nodes(engine: Engine) -> dict[str, int]:
    """Catalogued bytes each node holds or is receiving (verified and copying replicas)."""
    q = (
        select(replicas.c.node, func.coalesce(func.sum(files.c.size_bytes), 0))
        .join(files, files.c.id == replicas.c.file_id)
        .where(replicas.c.state.in_(ON_NODE), replicas.c.node.is_not(None))
        .group_by(replicas.c.node)
    )
    with engine.connect() as conn:
        return {node: int(n) for node, n in conn.execute(q)}


def mark_daq_deleted(engine: Engine, file_id: int) -> None:
    """The janitor is deleting the DAQ copy (recorded before the file goes)."""
    _write(
        engine,
        update(files).where(files.c.id == file_id).values(daq_state=DaqCopyState.DELETED, daq_deleted_at=utcnow()),
    )


def mark_daq_present(engine: Engine, file_id: int) -> None:
    """Undo mark_daq_deleted: the file could not be deleted after all."""
    _write(
        engine, update(files).where(files.c.id == file_id).values(daq_state=DaqCopyState.PRESENT, daq_deleted_at=None)
    )


def mark_daq_missing(engine: Engine, file_id: int) -> None:
    """The DAQ copy is gone without the janitor (found by audit): copies come from elsewhere from now on."""
    _write(
        engine,
        update(files)
        .where(files.c.id == file_id, files.c.daq_state == DaqCopyState.PRESENT)
        .values(daq_state=DaqCopyState.MISSING, daq_deleted_at=utcnow()),
    )


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
    proving: int = 0  # of `copying`: on the node and fsynced, waiting for the proof read on the node's host

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
                .where(
                    replicas.c.verified_at >= since,
                    replicas.c.state.in_((ReplicaState.VERIFIED, ReplicaState.EXPIRED)),
                )
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
            .where(
                replicas.c.state.in_(
                    (ReplicaState.QUEUED, ReplicaState.COPYING, ReplicaState.COPIED, ReplicaState.FAILED)
                )
            )
        ).scalar()
        n_files = conn.execute(select(func.count()).select_from(files)).scalar_one()
    by_node: dict[str, dict[str, int]] = {}
    unplaced = 0
    for node, state, n, size in rows:
        if node is None:
            unplaced += n if state in (ReplicaState.QUEUED, ReplicaState.COPYING) else 0  # failed: failed_copies
            continue
        d = by_node.setdefault(node, dict.fromkeys([*ReplicaState, "verified_bytes"], 0))
        d[state] = d.get(state, 0) + n
        if state == ReplicaState.VERIFIED:
            d["verified_bytes"] += int(size)
    out = [
        NodeBacklog(
            n,
            d[ReplicaState.QUEUED],
            d[ReplicaState.COPYING] + d[ReplicaState.COPIED],  # copied: still in hand until proven
            d[ReplicaState.VERIFIED],
            d[ReplicaState.FAILED],
            d["verified_bytes"],
            d[ReplicaState.EXPIRED],
            int(recent.get(n, 0)),
            d[ReplicaState.COPIED],
        )
        for n, d in sorted(by_node.items())
    ]
    return out, unplaced, oldest, int(n_files)


def waiting_copies(engine: Engine, limit: int = 5) -> tuple[int, list[tuple[str, str, float]]]:
    """Copies waiting to be tried again after an error: how many, and (file, why, retry in s) for the
    first few, soonest first."""
    now = utcnow()
    waiting = and_(replicas.c.state == ReplicaState.QUEUED, replicas.c.next_try_at > now)
    q = (
        select(files.c.filename, replicas.c.last_error, replicas.c.next_try_at)
        .join(files, files.c.id == replicas.c.file_id)
        .where(waiting)
        .order_by(replicas.c.next_try_at, replicas.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(replicas).where(waiting)).scalar_one()
        some = [(name, why or "", max((at - now).total_seconds(), 0.0)) for name, why, at in conn.execute(q)]
    return int(n), some


def failed_copies(engine: Engine, limit: int = 5) -> tuple[int, list[tuple[str, str]]]:
    """Copies given up for good (no source left anywhere): how many, and (file, why) for the first few."""
    q = (
        select(files.c.filename, replicas.c.last_error)
        .join(files, files.c.id == replicas.c.file_id)
        .where(replicas.c.state == ReplicaState.FAILED)
        .order_by(replicas.c.id)
    )
    with engine.connect() as conn:
        n = conn.execute(
            select(func.count()).select_from(replicas).where(replicas.c.state == ReplicaState.FAILED)
        ).scalar_one()
        some = [(name, why or "") for name, why in conn.execute(q.limit(limit))]
    return int(n), some


def export_counts(engine: Engine) -> dict[str, int]:
    """Files per export state (not_selected, packaged, exported, acknowledged)."""
    with engine.connect() as conn:
        return {s: int(n) for s, n in conn.execute(select(exports.c.state, func.count()).group_by(exports.c.state))}


# -- retention: replicas on a storage node -----------------------------------------
def node_replicas(engine: Engine, node: str, has_archive: bool, proved_after: datetime | None = None) -> list[Any]:
    """Verified replicas on a node, oldest first: id, path, verified_at, size_bytes, filename, and `safe`
    to remove (see removable: archived, or another verified replica proven since proved_after)."""
    safe = removable(node, has_archive, proved_after)
    q = (
        select(
            replicas.c.id,
            replicas.c.path,
            replicas.c.verified_at,
            files.c.size_bytes,
            files.c.filename,
            safe.label("safe"),
        )
        .join(files, files.c.id == replicas.c.file_id)
        .where(replicas.c.node == node, replicas.c.state == ReplicaState.VERIFIED)
        .order_by(replicas.c.verified_at, replicas.c.id)
    )
    return _read(engine, q)


def expire(engine: Engine, replica_id: int) -> bool:
    """A verified replica is being removed by its node's retention; False if it is no longer verified."""
    going = (
        update(replicas)
        .where(replicas.c.id == replica_id, replicas.c.state == ReplicaState.VERIFIED)
        .values(state=ReplicaState.EXPIRED, expired_at=utcnow())
    )
    return _write(engine, going) == 1


# -- audit: the catalog as it is, and its repairs ----------------------------------------
def audit_snapshot(engine: Engine) -> tuple[list[Any], list[Any]]:
    """(every file row, every verified replica row), read together."""
    with engine.connect() as conn:
        cat = list(conn.execute(select(files)).all())
        reps = list(conn.execute(select(replicas).where(replicas.c.state == ReplicaState.VERIFIED)).all())
    return cat, reps


def daq_copy_now(engine: Engine, file_id: int) -> Any:
    """(daq_state, daq_path) of a file as it is now; None if the row is gone."""
    with engine.connect() as conn:
        return conn.execute(select(files.c.daq_state, files.c.daq_path).where(files.c.id == file_id)).first()


def replica_now(engine: Engine, replica_id: int) -> Any:
    """(state, path) of a replica as it is now; None if the row is gone."""
    with engine.connect() as conn:
        return conn.execute(select(replicas.c.state, replicas.c.path).where(replicas.c.id == replica_id)).first()


def requeue_damaged(engine: Engine, replica_id: int, why: str) -> None:
    """A verified replica found missing or damaged: to be copied again, anywhere, from a good source."""
    _write(
        engine,
        update(replicas)
        .where(replicas.c.id == replica_id, replicas.c.state == ReplicaState.VERIFIED)
        .values(
            state=ReplicaState.QUEUED,
            node=None,
            path=None,
            attempts=0,
            last_error=why,
            next_try_at=None,
            verified_at=None,
        ),
    )


def requeue_stuck(engine: Engine, ids: list[int]) -> int:
    """Copies given up, or waiting after errors: back in the queue, to be tried now."""
    if not ids:
        return 0
    return _write(
        engine,
        update(replicas)
        .where(replicas.c.id.in_(ids), replicas.c.state.in_((ReplicaState.FAILED, ReplicaState.QUEUED)))
        .values(state=ReplicaState.QUEUED, attempts=0, next_try_at=None, claimed_by=None),
    )


def copies_now(engine: Engine) -> tuple[dict[int, Any], list[Any], set[int]]:
    """(file id -> (id, daq_state, daq_host), every replica row, ids of files the archive acknowledged).

    Read in the order copies come and go, so a file moving on meanwhile is never seen without a copy:
    a DAQ copy is deleted only after its replicas are verified, a replica expired only after the archive
    acknowledged the file. (Each statement is its own snapshot on SQLite.)
    """
    with engine.connect() as conn:
        daq = {r.id: r for r in conn.execute(select(files.c.id, files.c.daq_state, files.c.daq_host)).all()}
        rows = list(conn.execute(select(replicas)).all())
        acked = set(
            conn.execute(select(exports.c.file_id).where(exports.c.state == ExportState.ACKNOWLEDGED)).scalars()
        )
    return daq, rows, acked


def node_contents(engine: Engine) -> tuple[set[str], list[Any], set[str]]:
    """What the nodes should hold: (paths of replicas not expired, (filename, node, path, state) of verified
    and expired replicas, filenames the archive acknowledged)."""
    with engine.connect() as conn:
        known = set(
            conn.execute(
                select(replicas.c.path).where(replicas.c.path.is_not(None), replicas.c.state != ReplicaState.EXPIRED)
            ).scalars()
        )
        kept = list(
            conn.execute(
                select(files.c.filename, replicas.c.node, replicas.c.path, replicas.c.state)
                .join(replicas, replicas.c.file_id == files.c.id)
                .where(replicas.c.state.in_((ReplicaState.VERIFIED, ReplicaState.EXPIRED)))
            ).all()
        )
        acked = set(
            conn.execute(
                select(files.c.filename)
                .join(exports, exports.c.file_id == files.c.id)
                .where(exports.c.state == ExportState.ACKNOWLEDGED)
            ).scalars()
        )
    return known, kept, acked


# -- janitor and audit proofs ------------------------------------------------------
def proven_replicas(engine: Engine, file_id: int, proved_after: datetime) -> list[Any]:
    """(node, path, proved_at) of each verified replica of a file proven at or after `proved_after`."""
    q = select(replicas.c.node, replicas.c.path, replicas.c.proved_at).where(
        replicas.c.file_id == file_id,
        replicas.c.state == ReplicaState.VERIFIED,
        replicas.c.proved_at >= proved_after,
    )
    return _read(engine, q)


def unproven_on_daq(
    engine: Engine, volume: str, host: str, replication: int, proved_after: datetime, limit: int = 20
) -> list[Any]:
    """DAQ copies on a volume, not archived, whose file has `replication` verified replicas but fewer proven
    since `proved_after`, oldest first: (id, filename, verified, proven, last_proof)."""
    is_verified = and_(replicas.c.file_id == files.c.id, replicas.c.state == ReplicaState.VERIFIED)
    n_verified = select(func.count()).select_from(replicas).where(is_verified).scalar_subquery()
    n_proven = (
        select(func.count()).select_from(replicas).where(is_verified, replicas.c.proved_at >= proved_after)
    ).scalar_subquery()
    last_proof = select(func.max(replicas.c.proved_at)).where(is_verified).scalar_subquery()
    q = (
        select(
            files.c.id,
            files.c.filename,
            n_verified.label("verified"),
            n_proven.label("proven"),
            last_proof.label("last_proof"),
        )
        .where(files.c.daq_state == DaqCopyState.PRESENT, files.c.daq_volume == volume, files.c.daq_host == host)
        .where(n_verified >= replication, n_proven < replication, ~archived())
        .order_by(files.c.registered_at, files.c.id)
        .limit(limit)
    )
    return _read(engine, q)


def prove(engine: Engine, replica_id: int, path: str, when: datetime) -> bool:
    """A verified replica read back whole (read from its node's disk, or an rsync checksum pass) at `when`:
    its proof is renewed. False if the replica is no longer verified at that path."""
    renewed = (
        update(replicas)
        .where(replicas.c.id == replica_id, replicas.c.state == ReplicaState.VERIFIED, replicas.c.path == path)
        .values(proved_at=when)
    )
    return _write(engine, renewed) == 1


def stale_proofs(engine: Engine, proved_after: datetime) -> int:
    """Verified replicas with no proof since `proved_after` (the janitor does not count them)."""
    q = (
        select(func.count())
        .select_from(replicas)
        .where(
            replicas.c.state == ReplicaState.VERIFIED,
            or_(replicas.c.proved_at.is_(None), replicas.c.proved_at < proved_after),
        )
    )
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def removable(node: str, has_archive: bool, proved_after: datetime | None) -> Any:
    """True where a replica on `node` may go: the archive acknowledged its file (with an archive), else
    another verified replica on another node, proven since proved_after (when given)."""
    if has_archive:
        return archived(replicas.c.file_id)
    other = aliased(replicas)
    proven = other.c.proved_at >= proved_after if proved_after is not None else true()
    return (
        select(other.c.id)
        .where(
            other.c.file_id == replicas.c.file_id,
            other.c.node != node,
            other.c.state == ReplicaState.VERIFIED,
            proven,
        )
        .exists()
    )


def expire_if_safe(engine: Engine, replica_id: int, node: str, has_archive: bool, proved_after: datetime) -> bool:
    """Retention removing a verified replica, only if it is still safe to (checked in the same transaction,
    the file's row locked on PostgreSQL: two hosts' retention never both remove each other's "other copy").
    False if it is no longer verified or no longer safe."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            fid = select(replicas.c.file_id).where(replicas.c.id == replica_id).scalar_subquery()
            conn.execute(select(files.c.id).where(files.c.id == fid).with_for_update())
        going = (
            update(replicas)
            .where(
                replicas.c.id == replica_id,
                replicas.c.state == ReplicaState.VERIFIED,
                removable(node, has_archive, proved_after),
            )
            .values(state=ReplicaState.EXPIRED, expired_at=utcnow())
        )
        return int(conn.execute(going).rowcount) == 1


def not_yet_archived(engine: Engine) -> tuple[int, datetime | None]:
    """Files the archive has not acknowledged (and that are meant for it), and the oldest one's registration."""
    done = select(exports.c.file_id).where(exports.c.state.in_((ExportState.ACKNOWLEDGED, ExportState.NOT_SELECTED)))
    with engine.connect() as conn:
        n, oldest = conn.execute(
            select(func.count(), func.min(files.c.registered_at)).where(files.c.id.not_in(done))
        ).one()
    return int(n), oldest
