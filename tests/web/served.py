"""The web app alone, on its own database, behind a real uvicorn on 127.0.0.1 (no supervisord, no programs)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from sqlalchemy import Engine

from gozen.config import Config
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.web.app import create_app
from tests.conftest import wait_until


@contextmanager
def serve_asgi(app: Any, port: int, what: str = "the web app") -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1:port with a real uvicorn in a thread; its URL until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 60, what=f"{what} to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


@contextmanager
def served(cfg: Config, engine: Engine | None = None) -> Iterator[str]:
    """Serve create_app(cfg, engine) on 127.0.0.1:cfg.web.port in a thread (the database migrated
    first); its URL until the block ends."""
    upgrade(engine if engine is not None else make_engine(cfg.database_url))
    with serve_asgi(create_app(cfg, engine), cfg.web.port) as url:
        yield url
