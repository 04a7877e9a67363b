"""Fixtures of the fleet tests: the README's 4-host example under `gozen up`, each host in its own
mount namespace on its own loopback address (tests/fleet/harness.py), a private PostgreSQL cluster
the tests stop and start, and a fake Slack."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet.harness import Fleet, Slack, remove_cuts
from tests.private_pg import PrivatePostgres, private_cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every fleet test starts supervisord hosts: `live`; and `fleet`, so CI runs them once only
    (not again under the CPU hog: see .ci/run)."""
    for item in items:
        if "tests/fleet/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.live)
            item.add_marker(pytest.mark.fleet)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fleet: the 4-host fleet tests (tests/fleet), run once by .ci/run")


def needs_root_tools() -> None:
    import os

    missing = [t for t in ("unshare", "nft", "rsync", "mount") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail(
            "the fleet tests need root (mount namespaces, tmpfs, nftables) and "
            f"{', '.join(missing) or 'these tools'}: run them as CI does (./dev test installs nftables and rsync)"
        )


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def slack() -> Iterator[Slack]:
    s = Slack()
    yield s
    s.close()


def started_fleet(tmp: Path, pg: PrivatePostgres, slack: Slack, **changes: object) -> Iterator[Fleet]:
    needs_root_tools()
    remove_cuts()
    fleet = Fleet(tmp, pg, slack, changes=dict(changes))
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()
        remove_cuts()
