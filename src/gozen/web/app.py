"""The FastAPI app behind `www:dashboard`."""

from __future__ import annotations

import socket
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from gozen import __version__
from gozen.config import Config
from gozen.db.engine import make_engine
from gozen.durations import uptime_words
from gozen.web import alerts, data, events, health, login, monitors, processes, queue
from gozen.web.auth import Authenticator, session_secret

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["uptime"] = uptime_words
templates.env.globals["version"] = __version__


def create_app(cfg: Config) -> FastAPI:
    app = FastAPI(title="gozen", version=__version__, docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.cfg = cfg
    app.state.engine = make_engine(cfg.database_url)
    app.state.auth = Authenticator(cfg)
    app.state.templates = templates
    app.state.hostname = socket.gethostname()
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(cfg),
        session_cookie="gozen_session",
        same_site="strict",
        https_only=False,
        max_age=7 * 86400,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (health, login, processes, data, events, monitors, queue, alerts):
        app.include_router(module.router)
    return app
