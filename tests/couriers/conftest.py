"""The Slack stand-in and the feed server the courier tests talk to (real HTTP servers on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.couriers.test_couriers import FeedHandler, Server, SlackHandler


@pytest.fixture
def slack() -> Iterator[Server]:
    s = Server(SlackHandler)
    s.received, s.script = [], []  # type: ignore[attr-defined]
    yield s
    s.close()


@pytest.fixture
def feeds() -> Iterator[Server]:
    s = Server(FeedHandler)
    s.requests, s.override = [], {}  # type: ignore[attr-defined]
    yield s
    s.close()
