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
from gozen.web.csrf import SESSION_COOKIE, CsrfGuard, form_token
from gozen.web.headers import SecurityHeaders
from gozen.web.limits import BodyLimit
from gozen.web.sessions import SessionRegistry
from gozen.web.throttle import LoginThrottle

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["uptime"] = uptime_words
templates.env.globals["version"] = __version__
templates.env.globals["form_token"] = form_token


def create_app(cfg: Config) -> FastAPI:
    app = FastAPI(title="gozen", version=__version__, docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.cfg = cfg
    app.state.engine = make_engine(cfg.database_url)
    app.state.auth = Authenticator(cfg)
    app.state.templates = templates
    app.state.hostname = socket.gethostname()
    app.state.sessions = SessionRegistry(cfg.web.session_max_age_s)
    app.state.login_throttle = LoginThrottle()
    # Added innermost first: headers go on every answer, the size limit applies before anything reads.
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(cfg),
        session_cookie=SESSION_COOKIE,
        same_site="strict",
        https_only=cfg.web.cookie_secure,
        max_age=int(cfg.web.session_max_age_s),
    )
    app.add_middleware(CsrfGuard, public_origins=cfg.web.public_origins)
    app.add_middleware(BodyLimit, max_bytes=cfg.web.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (health, login, processes, data, events, monitors, queue, alerts):
        app.include_router(module.router)
    return app
