"""A migrated SQLite database for the monitor tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(e)
    return e
