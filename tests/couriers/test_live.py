"""The couriers under real supervisord: a feed read and posted, a crash told, nothing twice after a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import WAIT_S, Fleet, free_port, run_gozen, start_fleet, ticker, wait_until
from tests.couriers.test_couriers import FeedHandler, Server, SlackHandler


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[Server, Server]]:
    slack, feeds = Server(SlackHandler), Server(FeedHandler)
    slack.received, slack.script = [], []  # type: ignore[attr-defined]
    feeds.requests, feeds.override = [], {}  # type: ignore[attr-defined]
    yield slack, feeds
    slack.close()
    feeds.close()


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory, services: tuple[Server, Server]) -> Iterator[Fleet]:
    slack, feeds = services
    tmp: Path = tmp_path_factory.mktemp("couriers")
    crasher = {
        "group": "work",
        "name": "crasher",
        "command": ticker("crasher", 1.0, 3),
        "autostart": False,
        "autorestart": False,
    }
    host = {"name": "gozen", "roles": ["couriers"], "supervisor": {"port": free_port()}, "programs": [crasher]}
    extra = {
        "notifiers": [{"name": "tomoe-slack", "kind": "slack", "url": f"{slack.url}/services/T0/B0/x"}],
        "couriers": {"cneos": {"url": f"{feeds.url}/cneos-cad.json", "every_s": 2}, "send_every_s": 0.5},
    }
    fleet = start_fleet(tmp, [host], down=[], extra=extra)
    for p in ("courier:cneos", "courier:watch", "courier:sender"):
        fleet.wait_state("gozen", p, "RUNNING")
    yield fleet
    fleet.stop()


def test_the_cneos_update_reaches_slack_and_a_crash_is_told(obs: Fleet, services: tuple[Server, Server]) -> None:
    slack, _ = services

    def texts() -> list[str]:
        return [p.get("text", "") for p in slack.received]  # type: ignore[attr-defined]

    def dump() -> str:
        return f"--- posted to Slack: {texts()}\n{obs.dump()}"

    wait_until(
        lambda: any(t.startswith("CNEOS Close Approaches daily updates") for t in texts()), WAIT_S, 0.2, "cneos", dump
    )
    assert run_gozen(obs, "start", "gozen:work:crasher").returncode in (0, 1)  # it exits with code 3 at once
    wait_until(lambda: any("process_exited · work:crasher" in t for t in texts()), WAIT_S, 0.2, "the crash told", dump)
    assert run_gozen(obs, "restart", "gozen:courier:cneos").returncode == 0
    wait_until(lambda: len(services[1].requests) >= 3, WAIT_S, 0.2, "the restarted courier reading again", dump)  # type: ignore[attr-defined]
    assert sum(t.startswith("CNEOS") for t in texts()) == 1  # read again, posted once
