"""What `gozen run COMPONENT` starts: the entry point of every supervisord program."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable

from gozen.config import Config

log = logging.getLogger(__name__)


def run_dashboard(cfg: Config) -> None:
    import uvicorn

    from gozen.web.app import create_app

    uvicorn.run(
        create_app(cfg), host=cfg.web.bind, port=cfg.web.port, log_level="info", proxy_headers=False, access_log=False
    )


def run_event_listener(cfg: Config) -> None:
    from gozen.db.engine import make_engine
    from gozen.supervise.listener import run_listener
    from gozen.supervise.render import HOST_ENV

    # stdout is supervisord's protocol channel: logging must go to stderr (basicConfig's default).
    host = os.environ.get(HOST_ENV) or socket.gethostname()
    try:
        run_listener(make_engine(cfg.database_url), host)
    except KeyboardInterrupt:
        pass  # Ctrl-C at `gozen up` reaches the whole process group: stop quietly


def _daq(cfg: Config, which: str) -> None:
    from gozen.db.engine import make_engine
    from gozen.supervise.render import HOST_ENV

    host = os.environ.get(HOST_ENV) or socket.gethostname()
    engine = make_engine(cfg.database_url)
    try:
        if which == "control":
            from gozen.daq.control import run_control

            run_control(cfg, engine, host)
        kind, _, number = which.partition("-")
        if kind == "readout":
            from gozen.daq.readout import run_readout

            run_readout(cfg, engine, int(number) - 1, host)
        elif kind == "writer":
            from gozen.daq.writer import run_writer

            run_writer(cfg, engine, int(number) - 1, host)
    except KeyboardInterrupt:
        pass


def _transfer(cfg: Config, which: str) -> None:
    from gozen.db.engine import make_engine
    from gozen.supervise.render import HOST_ENV
    from gozen.transfer.agents import CopyAgent, run_push
    from gozen.transfer.janitor import run_janitor

    host = os.environ.get(HOST_ENV) or socket.gethostname()
    engine = make_engine(cfg.database_url)
    try:
        if which == "push":
            run_push(cfg, engine, host)
        elif which == "janitor":
            run_janitor(cfg, engine, host)
        else:
            CopyAgent(cfg, engine, host, f"transfer:{which}").run()
    except KeyboardInterrupt:
        pass


def component(name: str) -> Callable[[Config], None] | None:
    """The runner of `gozen run NAME`: fixed ones, and daq-control, daq-readout-NN, daq-writer-NN."""
    fixed: dict[str, Callable[[Config], None]] = {"dashboard": run_dashboard, "event-listener": run_event_listener}
    if name in fixed:
        return fixed[name]
    if name == "daq-control" or re.fullmatch(r"daq-(readout|writer)-\d{2}", name):
        return lambda cfg: _daq(cfg, name.removeprefix("daq-"))
    if name in ("transfer-push", "transfer-janitor") or re.fullmatch(r"transfer-pop-\d{2}", name):
        return lambda cfg: _transfer(cfg, name.removeprefix("transfer-"))
    return None
