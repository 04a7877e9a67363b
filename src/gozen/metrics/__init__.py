"""Prometheus metrics: a collector that reads the status board and the database at each scrape.

Every gozen program already publishes what it does to the board and the database, so reading them
per scrape is multiprocess-safe by construction: any web worker, on any host, answers the same.
A scrape makes one query per family (no per-row queries). What can no longer change (the rows of
exposures closed 10 minutes ago, copies out of the copy queue, files the archive took) is summed once
and kept in memory, so a scrape reads only recent rows. The names, units and labels are documented
in docs/metrics.md.
"""

from gozen.metrics.board import DISK, SINGLE, WEATHER
from gozen.metrics.collector import GozenCollector

__all__ = ["DISK", "SINGLE", "WEATHER", "GozenCollector"]
