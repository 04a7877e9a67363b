"""The README's 5-host example with no archive (`archive: null`): the DAQ volumes are freed by the
janitor on the strength of the storage hosts' proofs alone (nothing is ever acknowledged)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet.conftest import started_fleet
from tests.fleet.harness import Fleet, Slack
from tests.fleet.test_fleet import audit_everywhere, crashes, expose, no_fatal, resume
from tests.private_pg import PrivatePostgres


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, pg: PrivatePostgres, slack: Slack) -> Iterator[Fleet]:
    yield from started_fleet(tmp_path_factory.mktemp("fleet4-no-archive"), pg, slack, archive=None)


def test_without_an_archive_the_daq_volumes_are_freed_by_proofs_alone(fleet: Fleet) -> None:
    progs = {name: set(fleet.programs(name)) for name in fleet.hosts}
    assert not any("transfer:export" in p or "archive:simulator" in p for p in progs.values()), progs
    resume(fleet)
    expose(fleet, "NOARCHIVE", count=3)
    audits = audit_everywhere(fleet)  # every file: 2 proven replicas, its DAQ copy freed; audits clean
    assert fleet.query("SELECT count(*) FROM exports WHERE state <> 'not_selected'")[0][0] == 0
    deleted = fleet.query("SELECT subject, message FROM events WHERE kind = 'daq_file_deleted'")
    files = fleet.query("SELECT count(*) FROM files")[0][0]
    assert len({s for s, _ in deleted}) == files, f"{len(deleted)} deletions told for {files} files"
    assert not any("archived" in m for _, m in deleted), deleted
    assert not (fleet.hosts["head"].disk / "archive").exists() or not any(
        (fleet.hosts["head"].disk / "archive").rglob("*.fits")
    )
    assert not crashes(fleet), crashes(fleet)
    no_fatal(fleet)
    print("audits:", audits)
