"""DAQ tests leave no shared-memory rings behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gozen.daq.layout import SHM_DIR


@pytest.fixture(autouse=True, scope="session")
def remove_new_rings() -> Iterator[None]:
    before = set(SHM_DIR.glob("gozen-*.ring"))
    yield
    for ring in set(SHM_DIR.glob("gozen-*.ring")) - before:
        ring.unlink(missing_ok=True)
