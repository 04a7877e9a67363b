"""The FastAPI app behind `www:dashboard`."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from starlette.middleware.sessions import SessionMiddleware

from gozen import __version__
from gozen.config import Config
from gozen.db.engine import make_engine
from gozen.db.types import utcnow
from gozen.durations import uptime_words
from gozen.service import Context, is_outage, this_host
from gozen.web import (
    alerts,
    daq,
    data,
    docs,
    events,
    exposures,
    health,
    login,
    metrics,
    monitors,
    overview,
    plan,
    processes,
    queue,
    quicklook,
    reports,
)
from gozen.web.auth import Authenticator, session_secret
from gozen.web.csrf import SESSION_COOKIE, CsrfGuard, form_token
from gozen.web.emoji import emoji_filter
from gozen.web.headers import SecurityHeaders
from gozen.web.limits import BodyLimit
from gozen.web.security import session_identity
from gozen.web.sessions import SessionRegistry
from gozen.web.throttle import LoginThrottle
from gozen.web.times import when_filter, zone_abbreviation

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["uptime"] = uptime_words
templates.env.filters["when"] = when_filter
templates.env.filters["emoji"] = emoji_filter
templates.env.globals["zone_abbreviation"] = zone_abbreviation
templates.env.globals["version"] = __version__
templates.env.globals["form_token"] = form_token
templates.env.globals["utcnow"] = utcnow


def main(ctx: Context) -> None:
    """`www:dashboard`: the web app on web.bind:web.port until SIGTERM (uvicorn's own loop)."""
    import uvicorn

    cfg = ctx.cfg
    app = create_app(cfg, ctx.engine, ctx.host)
    uvicorn.run(app, host=cfg.web.bind, port=cfg.web.port, log_level="info", proxy_headers=False, access_log=False)


def create_app(cfg: Config, engine: Engine | None = None, host: str | None = None) -> FastAPI:
    """The app on `engine` (default: a new one on the configured database), as `host` (default: this one)."""
    # /api/docs is gozen's own page (web/docs.py): Swagger UI from a package, not from a CDN.
    app = FastAPI(title="gozen", version=__version__, docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.cfg = cfg
    app.state.engine = engine or make_engine(cfg.database_url)
    app.state.auth = Authenticator(cfg)
    app.state.templates = templates
    app.state.hostname = host or this_host()
    app.state.retry_after_s = max(1, math.ceil(cfg.web.refresh_s))
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
    app.add_exception_handler(DBAPIError, database_unavailable)
    docs.mount_assets(app)  # /static/swagger: before /static, which would answer it first
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_api_route("/favicon.ico", favicon, include_in_schema=False)
    for module in (
        health,
        docs,
        login,
        overview,
        processes,
        daq,
        quicklook,
        exposures,
        data,
        events,
        monitors,
        queue,
        plan,
        alerts,
        reports,
        metrics,
    ):
        app.include_router(module.router)
    return app


async def favicon() -> Response:
    """Browsers ask /favicon.ico whatever the page links: the same SVG icon."""
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")


async def database_unavailable(request: Request, err: Exception) -> Response:
    """The database is away: 503 with Retry-After, as JSON under /api/ and as a page with a banner
    elsewhere, never a traceback. Other database errors stay what they are (a 500: a bug)."""
    if not is_outage(err):
        raise err
    retry_s: int = request.app.state.retry_after_s
    log.warning("database unavailable: %s %s answered 503: %s", request.method, request.url.path, type(err).__name__)
    headers = {"Retry-After": str(retry_s)}
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": "database unavailable", "retry_after_s": retry_s}, 503, headers=headers)
    ctx = {"identity": session_identity(request), "refresh_s": retry_s, "database_retry_s": retry_s}
    return templates.TemplateResponse(request, "base.html", ctx, status_code=503, headers=headers)
