"""supervisord's refusals are told in an operator's words, by supervisor's own fault codes."""

from __future__ import annotations

import threading
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xmlrpc.server import SimpleXMLRPCServer

import pytest
from supervisor.xmlrpc import Faults

from gozen.config import parse_config
from gozen.supervise.client import ProcessActionError, SupervisorClient, fault_text
from tests.conftest import free_port


def test_fault_80_is_success_not_a_failure_to_start() -> None:
    assert Faults.SUCCESS == 80
    assert fault_text(Faults.SUCCESS) == "SUCCESS"
    assert fault_text(Faults.ABNORMAL_TERMINATION) == "exited before it was running (see its log)"
    assert fault_text(Faults.SHUTDOWN_STATE) == "cannot be changed: supervisord is shutting down"
    assert fault_text(Faults.CANT_REREAD) == "CANT_REREAD"


def start_process(name: Any, wait: Any) -> Any:
    """supervisord's answer when the program exits within startsecs."""
    raise xmlrpc.client.Fault(Faults.ABNORMAL_TERMINATION, f"ABNORMAL_TERMINATION: {name}")


def start_process_group(name: Any, wait: Any) -> Any:
    """supervisord's answer for a group: one status per program, SUCCESS or a fault code."""
    return [
        {"group": name, "name": "a", "status": Faults.SUCCESS, "description": "OK"},
        {"group": name, "name": "b", "status": Faults.SPAWN_ERROR, "description": "SPAWN_ERROR: work:b"},
    ]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[SupervisorClient]:
    port = free_port()
    server = SimpleXMLRPCServer(("127.0.0.1", port), logRequests=False, allow_none=True)
    server.register_function(start_process, "supervisor.startProcess")  # a real XML-RPC server on loopback
    server.register_function(start_process_group, "supervisor.startProcessGroup")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    cfg = parse_config(
        {"data_dir": str(tmp_path), "hosts": [{"name": "h", "supervisor": {"port": port, "password": "pw-0123456789"}}]}
    )
    try:
        yield SupervisorClient(cfg.hosts[0], timeout_s=5)
    finally:
        server.shutdown()
        server.server_close()


def test_a_program_that_exits_while_starting_is_told_so(client: SupervisorClient) -> None:
    with pytest.raises(ProcessActionError) as err:
        client.act("start", "work:crasher")
    assert str(err.value) == (
        "h:work:crasher: exited before it was running (see its log) (ABNORMAL_TERMINATION: work:crasher)"
    )


def test_a_group_start_names_the_programs_that_failed_and_only_those(client: SupervisorClient) -> None:
    with pytest.raises(ProcessActionError) as err:
        client.act("start", "work:*")
    assert str(err.value) == "h:work:*: work:b could not be spawned (SPAWN_ERROR: work:b)"
