"""The collector behind /metrics: every family, read at each scrape."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gozen.config import Config
from gozen.metrics.board import board_metrics, fleet_metrics
from gozen.metrics.database import (
    archive_metrics,
    copied_metrics,
    daq_metrics,
    feed_metrics,
    outbox_metrics,
    queue_metrics,
    restart_metrics,
    transfer_metrics,
)
from gozen.metrics.family import gauge
from gozen.metrics.settled import ArchiveMark, SettledCopies, SettledDaq
from gozen.monitors.board import snapshot
from gozen.service import is_outage

log = logging.getLogger(__name__)


class GozenCollector(Collector):
    """The families of metrics/board.py and metrics/database.py, read at each scrape; with the database
    away, only `gozen_database_up 0`."""

    def __init__(self, cfg: Config, engine: Engine) -> None:
        self.cfg, self.engine = cfg, engine
        self.settled = SettledDaq()
        self.copies = SettledCopies()
        self.archive = ArchiveMark()
        self.lock = threading.Lock()  # scrapes run in a thread pool; the in-memory sums are shared

    def parts(self) -> list[Callable[[], list[Metric]]]:
        e = self.engine
        parts: list[Callable[[], list[Metric]]] = [
            lambda: board_metrics(self.cfg, snapshot(e)),
            lambda: fleet_metrics(e),
            lambda: daq_metrics(self.cfg, e, self.settled),
            lambda: transfer_metrics(e),
            lambda: copied_metrics(e, self.copies),
            lambda: queue_metrics(e),
            lambda: outbox_metrics(e),
            lambda: feed_metrics(e),
            lambda: restart_metrics(e),
        ]
        if self.cfg.archive is not None:
            parts.append(lambda: archive_metrics(e, self.archive))
        return parts

    def collect(self) -> Iterator[Metric]:
        t0 = time.perf_counter()
        out: list[Metric] = []
        up = 1.0
        with self.lock:
            try:
                for part in self.parts():
                    out += part()
            except SQLAlchemyError as err:
                if not is_outage(err):
                    raise
                log.warning("metrics: the database is away (%s): only gozen_database_up 0", type(err).__name__)
                out, up = [], 0.0
        db = gauge("gozen_database_up", "1 when the database answered this scrape (0: nothing else is exported).")
        db.add_metric([], up)
        took = gauge("gozen_metrics_scrape_duration_seconds", "How long gozen took to gather this scrape.")
        took.add_metric([], time.perf_counter() - t0)
        yield from [*out, db, took]
