"""Fixtures for the outage tests: a private PostgreSQL cluster that may be stopped, and a SQLite
file that can be made unwritable for real (as root).

The shared server on 127.0.0.1:5432 is used by every other test and session: it is never
stopped. These tests stop only a cluster of their own, made with initdb in a temporary folder.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.couriers.test_couriers import FeedHandler, Server, SlackHandler
from tests.outage.observatory import Services
from tests.private_pg import PrivatePostgres, private_cluster

__all__ = ["PrivatePostgres", "private_pg", "services"]  # PrivatePostgres: imported from here by the tests


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster for one test module, removed afterwards whatever happened."""
    with private_cluster() as pg:
        yield pg


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    """The feed server the couriers read and the Slack they post to, on 127.0.0.1."""
    slack, feeds = Server(SlackHandler), Server(FeedHandler)
    slack.received, slack.script = [], []  # type: ignore[attr-defined]
    feeds.requests, feeds.override = [], {}  # type: ignore[attr-defined]
    yield Services(slack, feeds)
    slack.close()
    feeds.close()


# -- SQLite: a database file root cannot write ---------------------------------------------------
#
# chmod does not stop root, and a read-only bind mount cannot be made while the programs hold the
# file open for writing (the remount fails with EBUSY). The immutable attribute (chattr +i) does
# stop root, and ext4 enforces it on files that are already open: a write gets EPERM, which
# SQLite reports as "disk I/O error". The -shm file stays writable: it is memory-mapped, and a
# write fault on an immutable page would kill its process with SIGBUS (that is not an outage).


def sqlite_files(db: Path) -> list[Path]:
    """The database file and its write-ahead log: the files a write goes to."""
    return [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]


def set_immutable(paths: list[Path], on: bool) -> None:
    subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], check=True, capture_output=True, timeout=30)
