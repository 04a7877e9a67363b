"""Device servers for tests: the simulators served on 127.0.0.1 in a thread of the test."""

from __future__ import annotations

import socket
import threading

import httpx
import uvicorn

from gozen.config import Config
from gozen.devices.simulators.alpaca import create_app
from tests.conftest import WAIT_S, free_port, wait_until


class AlpacaServer:
    """The Alpaca simulator served by uvicorn in a thread: stop() and it stops answering."""

    def __init__(self, cfg: Config, port: int | None = None) -> None:
        self.cfg, self.port = cfg, port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None

    def start(self) -> None:
        config = uvicorn.Config(create_app(self.cfg), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        threading.Thread(target=self.server.run, daemon=True).start()
        wait_until(lambda: self.server is not None and self.server.started, WAIT_S, 0.02, "the Alpaca server")

    def stop(self) -> None:
        if self.server:
            self.server.should_exit = True
            wait_until(lambda: not _answers(self.port), WAIT_S, 0.02, "the Alpaca server to stop")
            self.server = None

    def put(self, path: str, body: dict[str, object]) -> None:
        httpx.put(f"http://{self.address}{path}", json=body, timeout=30).raise_for_status()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
