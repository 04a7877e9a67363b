"""A program whose log holds control characters (a bell, terminal colours) under a real supervisord.

supervisord copies log text into its XML-RPC answers verbatim, and XML 1.0 forbids most control
characters: the client must still read the answer, and the characters must not reach HTML or JSON.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gozen.supervise.client import ProcessInfo
from tests.conftest import Fleet, free_port, host_entry, start_fleet, wait_until

BELL_SCRIPT = r"""
import sys, time
while True:
    print("ding \x07 bell \x1b[31mred\x1b[0m done\r", flush=True)
    print("err \x07\x00\x0b line", file=sys.stderr, flush=True)
    time.sleep(0.5)
"""


@pytest.fixture(scope="module")
def bell_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("bell")
    script = tmp / "bell.py"
    script.write_text(BELL_SCRIPT)
    program = {"group": "work", "name": "bell", "command": f"{sys.executable} -u {script}"}
    fleet = start_fleet(tmp, [host_entry("bellhost", free_port(), ["web"], [program])], down=[], web_port=free_port())
    yield fleet
    fleet.stop()


def bell(fleet: Fleet) -> ProcessInfo:
    status = fleet.client("bellhost").status(tail_bytes=2000)
    assert status.reachable, status.error
    return next(p for p in status.processes if p.full_name == "work:bell")


def bell_after_its_first_line(fleet: Fleet) -> ProcessInfo:
    def logged() -> ProcessInfo | None:
        p = bell(fleet)
        return p if "done" in p.stdout_tail else None

    return wait_until(logged, 60, 0.5, "the bell's log")  # type: ignore[no-any-return]


def test_log_tail_with_a_bell_is_read_without_control_characters(bell_host: Fleet) -> None:
    p = bell_after_its_first_line(bell_host)
    assert "ding  bell [31mred[0m done\n" in p.stdout_tail
    assert "err  line" in p.stderr_tail
    for tail in (p.stdout_tail, p.stderr_tail):
        assert not any(ord(c) < 32 and c not in "\t\n" for c in tail), repr(tail[-200:])


def test_pages_answer_when_a_log_holds_control_characters(bell_host: Fleet) -> None:
    bell_after_its_first_line(bell_host)
    api = httpx.get(f"{bell_host.web_url}/api/processes", params={"tail": 2000}, timeout=60)
    assert api.status_code == 200, api.text[:300]
    [host] = api.json()["hosts"]
    tail = next(p for p in host["processes"] if p["full_name"] == "work:bell")["stdout_tail"]
    assert "ding  bell" in tail and "\x07" not in tail and "\x1b" not in tail
    page = httpx.get(f"{bell_host.web_url}/processes", timeout=60)
    assert page.status_code == 200 and "ding  bell" in page.text and "\x07" not in page.text


def test_printable_log_keeps_text_tabs_and_line_breaks() -> None:
    from gozen.supervise.client import printable_log

    assert printable_log("a\tb\r\nc\x07d\x1b[0m\x85é☄\n") == "a\tb\ncd[0mé☄\n"


def test_supervisord_log_file_really_holds_the_bell(bell_host: Fleet) -> None:
    # The premise: the raw bytes reach supervisord's log (and so its XML answers) unfiltered.
    bell_after_its_first_line(bell_host)
    logs = [f for f in Path(bell_host.config_file.parent).rglob("*bell*") if f.is_file() and f.suffix == ".log"]
    assert logs and any(b"\x07" in f.read_bytes() for f in logs), logs
