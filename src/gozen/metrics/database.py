"""Metrics from the database: the DAQ per chip, the transfer backlog and copies, the archive, the queue,
the outbox, the alert feeds and the programs' restarts; one query per family.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client.core import Metric
from sqlalchemy import Engine, func, select

from gozen.config import FEEDS, Config
from gozen.couriers.store import feed_states
from gozen.db.states import ReplicaState
from gozen.db.tables import (
    alerts,
    daq_files,
    events,
    files,
    outbox,
    recipes,
    replicas,
)
from gozen.db.types import utcnow
from gozen.metrics.family import counter, gauge
from gozen.metrics.settled import (
    FILE_SUMS,
    REPORT_SUMS,
    ArchiveMark,
    SettledCopies,
    SettledDaq,
)
from gozen.queue.recipe import PRIORITY_OF_RANK
from gozen.queue.store import queue_status

WRITE_WINDOW = timedelta(seconds=60)  # gozen_daq_write_bytes_per_second: bytes of the files of the last minute


BACKLOG = (ReplicaState.QUEUED, ReplicaState.COPYING, ReplicaState.COPIED, ReplicaState.FAILED)


def daq_metrics(cfg: Config, engine: Engine, settled: SettledDaq) -> list[Metric]:
    """Per chip counters and exposures by state (settled sums + the rows since), the write rate."""
    file_sums, report_sums, by_state = settled.totals(engine)
    since = utcnow() - WRITE_WINDOW
    with engine.connect() as conn:
        recent = dict(
            conn.execute(
                select(daq_files.c.daq_host, func.sum(daq_files.c.size_bytes))
                .where(daq_files.c.created_at >= since)
                .group_by(daq_files.c.daq_host)
            ).all()
        )
    out: list[Metric] = []
    for sums, columns in ((file_sums, FILE_SUMS), (report_sums, REPORT_SUMS)):
        for column, (name, doc) in columns.items():
            fam = counter(name, doc, ["chip", "host"])
            for (chip, host), d in sorted(sums.items()):
                fam.add_metric([chip, host], d.get(column, 0))
            out.append(fam)
    exp = gauge("gozen_daq_exposures", "Exposures by state (queued, armed, done, incomplete, failed).", ["state"])
    for state, n in sorted(by_state.items()):
        exp.add_metric([state], n)
    rate = gauge("gozen_daq_write_bytes_per_second", "Bytes of FITS files written over the last minute.", ["host"])
    hosts = {h.name for h in cfg.daq_hosts()} | set(recent)
    for host in sorted(hosts):
        rate.add_metric([host], int(recent.get(host) or 0) / WRITE_WINDOW.total_seconds())
    return [*out, exp, rate]


def transfer_metrics(engine: Engine) -> list[Metric]:
    """Copies not yet verified per node and state, with their bytes, and the oldest such file's age."""
    r = replicas.c
    q = (
        select(r.node, r.state, func.count(), func.sum(files.c.size_bytes), func.min(files.c.registered_at))
        .join(files, files.c.id == r.file_id)
        .where(r.state.in_(BACKLOG))
        .group_by(r.node, r.state)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    labels = ["node", "state"]
    n_files = gauge("gozen_transfer_backlog_files", "Copies to storage nodes not yet verified.", labels)
    n_bytes = gauge("gozen_transfer_backlog_bytes", "Bytes of the copies not yet verified.", labels)
    oldest: datetime | None = None
    for node, state, n, size, first in sorted(rows, key=lambda row: (row[0] or "", row[1])):
        n_files.add_metric([node or "", str(state)], n)
        n_bytes.add_metric([node or "", str(state)], int(size or 0))
        oldest = first if oldest is None or (first is not None and first < oldest) else oldest
    age = gauge("gozen_transfer_oldest_unreplicated_age_seconds", "Age of the oldest file short of copies (0: none).")
    age.add_metric([], (utcnow() - oldest).total_seconds() if oldest else 0.0)
    return [n_files, n_bytes, age]


def copied_metrics(engine: Engine, settled: SettledCopies) -> list[Metric]:
    """Copies verified on each storage node, ever (those retention expired since included)."""
    sums = settled.totals(engine)
    n = counter("gozen_transfer_copied_files", "Copies verified on the node (retention's expired included).", ["node"])
    b = counter("gozen_transfer_copied_bytes", "Bytes of those copies: rate() is the copy rate.", ["node"])
    for node, (count, size) in sorted(sums.items()):
        n.add_metric([node], count)
        b.add_metric([node], size)
    return [n, b]


def archive_metrics(engine: Engine, mark: ArchiveMark) -> list[Metric]:
    oldest = mark.oldest_untaken(engine)
    fam = gauge("gozen_archive_files", "Files by export state (packaged, exported, acknowledged, ...).", ["state"])
    for state, n in sorted(mark.counts(engine).items()):
        fam.add_metric([state], n)
    lag = gauge("gozen_archive_lag_seconds", "Age of the oldest catalogued file the archive has not taken (0: none).")
    lag.add_metric([], (utcnow() - oldest).total_seconds() if oldest else 0.0)
    return [fam, lag]


def queue_metrics(engine: Engine) -> list[Metric]:
    status = queue_status(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            # the rank, not the name: the (state, priority_rank, ...) index answers without reading the rows
            select(recipes.c.state, recipes.c.priority_rank, func.count()).group_by(
                recipes.c.state, recipes.c.priority_rank
            )
        ).all()
    mode = gauge("gozen_queue_mode", "1 for the queue's mode (normal, maintenance).", ["mode"])
    mode.add_metric([str(status.mode)], 1.0)
    paused = gauge("gozen_queue_paused", "1 while the queue is paused.")
    paused.add_metric([], float(status.paused))
    server = gauge("gozen_queue_server_up", "1 while a queue server runs.")
    server.add_metric([], float(status.server is not None))
    fam = gauge("gozen_queue_recipes", "Recipes by state and priority.", ["state", "priority"])
    for state, rank, n in sorted(rows):
        fam.add_metric([str(state), PRIORITY_OF_RANK.get(rank, str(rank))], n)
    return [mode, paused, server, fam]


def outbox_metrics(engine: Engine) -> list[Metric]:
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state)).all()
    fam = gauge("gozen_outbox_depth", "Messages to Slack and others by state (pending, sent, failed, ...).", ["state"])
    for state, n in sorted(rows):
        fam.add_metric([str(state)], n)
    return [fam]


def restart_metrics(engine: Engine) -> list[Metric]:
    q = (
        select(events.c.host, events.c.subject, func.count())
        .where(events.c.kind == "process_exited")
        .group_by(events.c.host, events.c.subject)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    fam = counter("gozen_program_restarts", "Unexpected exits (supervisord restarts it).", ["host", "program"])
    for host, program, n in sorted(rows):
        fam.add_metric([host, program], n)
    return [fam]


def feed_metrics(engine: Engine) -> list[Metric]:
    """Each alert feed's last read, and the alerts it brought."""
    states = feed_states(engine)
    with engine.connect() as conn:
        seen = {f: int(n) for f, n in conn.execute(select(alerts.c.feed, func.count()).group_by(alerts.c.feed))}
    ok = gauge("gozen_feed_read_ok", "1 when the feed's last read worked (new items or not modified).", ["feed"])
    age = gauge("gozen_feed_last_read_age_seconds", "Since a courier last read the feed.", ["feed"])
    n = counter("gozen_alerts", "Alerts read from the feed, each once.", ["feed"])
    now = utcnow()
    for feed in FEEDS:
        if (st := states.get(feed)) is not None:
            ok.add_metric([feed], float(st.status.startswith("ok") or st.status == "not modified"))
            age.add_metric([feed], (now - st.checked_at).total_seconds())
        n.add_metric([feed], seen.get(feed, 0))
    return [ok, age, n]
