"""Fixtures of the fleet tests: the README's 5-host example under `gozen up`, each host in its own
mount namespace on its own loopback address (tests/fleet/harness.py), a private PostgreSQL cluster
the tests stop and start, and a fake Slack.

The modules that test the example as it is share one fleet (`readme_fleet`, started once: starting
five hosts takes about a minute); a module with a config of its own starts its own fleet, before the
shared one (one machine runs one fleet at a time: the same addresses and ports)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet.harness import Fleet, Slack, remove_cuts
from tests.private_pg import PrivatePostgres, private_cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every fleet test starts supervisord hosts: `live`; and `fleet`, so CI runs them once only
    (not again under the CPU hog: see .ci/run). The modules with a fleet of their own run first,
    then those sharing `readme_fleet`, in their order: the shared fleet is up from its first test
    to the end of the package."""
    slots = [i for i, item in enumerate(items) if "tests/fleet/" in str(item.path).replace("\\", "/")]
    for i in slots:
        items[i].add_marker(pytest.mark.live)
        items[i].add_marker(pytest.mark.fleet)
    ordered = sorted((items[i] for i in slots), key=lambda item: "readme_fleet" in item.fixturenames)
    for i, item in zip(slots, ordered, strict=True):
        items[i] = item


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fleet: the 5-host fleet tests (tests/fleet), run once by .ci/run")


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


@pytest.fixture(scope="package")
def fleet_pg() -> Iterator[PrivatePostgres]:
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="package")
def fleet_slack() -> Iterator[Slack]:
    s = Slack()
    yield s
    s.close()


@pytest.fixture(scope="package")
def readme_fleet(
    tmp_path_factory: pytest.TempPathFactory, fleet_pg: PrivatePostgres, fleet_slack: Slack
) -> Iterator[Fleet]:
    """The README's example as it is, shared by the modules that test it."""
    yield from started_fleet(tmp_path_factory.mktemp("fleet"), fleet_pg, fleet_slack)


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
