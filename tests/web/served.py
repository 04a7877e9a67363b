"""The web app alone, on its own database, behind a real uvicorn on 127.0.0.1 (no supervisord, no programs)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from sqlalchemy import Engine

from gozen.config import Config
from gozen.db.engine import make_engine
from gozen.db.migrate import upgrade
from gozen.web.app import create_app
from tests.conftest import wait_until


@contextmanager
def served(cfg: Config, engine: Engine | None = None) -> Iterator[str]:
    """Serve create_app(cfg, engine) on 127.0.0.1:cfg.web.port in a thread (the database migrated
    first); its URL until the block ends."""
    upgrade(engine if engine is not None else make_engine(cfg.database_url))
    port = cfg.web.port
    app = create_app(cfg, engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 60, what="the web app to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)
