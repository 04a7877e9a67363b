"""Cross-site request forgery: state-changing requests only from the app's own pages or from scripts.

A browser adds `Origin` to every POST/PUT/PATCH/DELETE (`null` when it hides it); it must name
the address the request was sent to, or one of `web.public_origins`. Scripts send neither
Origin nor Referer and authenticate with `Authorization`, which a browser never adds to a
cross-site request on its own. API bodies must be JSON or YAML (a type another site cannot
send without asking first); HTML forms (login, logout) also carry a per-session token.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_BODY_TYPES = frozenset({"application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
SESSION_COOKIE = "gozen_session"
FORM_TOKEN_KEY = "csrf"
_DEFAULT_PORT = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def parse_origin(text: str) -> Origin | None:
    """(scheme, host, port) of `scheme://host[:port]`; None for `null` or anything unparsable."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORT or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORT[parts.scheme]


def own_origin(scope: Scope, headers: Headers) -> Origin | None:
    """The origin the request was sent to: its scheme and its Host header."""
    host = headers.get("host")
    return parse_origin(f"{scope.get('scheme', 'http')}://{host}") if host else None


def _has_session_cookie(headers: Headers) -> bool:
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except CookieError:
        return True  # unreadable cookies: treat as a browser's
    return SESSION_COOKIE in cookie


def origin_problem(scope: Scope, headers: Headers, allowed: Iterable[Origin]) -> str | None:
    """Why this state-changing request must be refused as cross-site, or None."""
    claimed = headers.get("origin")
    what = "Origin"
    if claimed is None and headers.get("referer"):
        claimed, what = headers["referer"], "Referer"
    if claimed is None:
        if headers.get("authorization") or not _has_session_cookie(headers):
            return None  # a script, or nobody logged in: the route's own checks apply
        return "a logged-in browser request without Origin or Referer"
    origin = parse_origin(claimed)
    if origin is not None and (origin == own_origin(scope, headers) or origin in allowed):
        return None
    return f"{what} {_printable(claimed)!r} is not this app's address nor one of web.public_origins"


def body_type_problem(scope: Scope, headers: Headers) -> str | None:
    """API bodies are JSON or YAML; a body without a type only from a script (Authorization, or no login at all)."""
    if not scope["path"].startswith("/api/"):
        return None
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    if not has_body:
        return None
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media in API_BODY_TYPES:
        return None
    if not media and (headers.get("authorization") or not _has_session_cookie(headers)):
        return None  # no browser session to ride on: the route's own checks (401) apply
    return f"content type {_printable(media) or 'none'!r}: send application/json or application/yaml"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:100])


class CsrfGuard:
    """Pure ASGI middleware: 403 for cross-site state changes, 415 for API bodies of a form's type."""

    def __init__(self, app: ASGIApp, public_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = frozenset(o for o in map(parse_origin, public_origins) if o is not None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = origin_problem(scope, headers, self.allowed)
        status = 403
        if problem is None:
            problem, status = body_type_problem(scope, headers), 415
        if problem is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        log.warning("refused %s %s from %s: %s", scope["method"], scope["path"], client[0], problem)
        detail = f"refused as a cross-site request: {problem}" if status == 403 else problem
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


def form_token(request: Request) -> str:
    """This session's token for the app's own HTML forms (made on first use)."""
    token = request.session.get(FORM_TOKEN_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(24)
        request.session[FORM_TOKEN_KEY] = token
    return token


def form_token_ok(request: Request, sent: str) -> bool:
    expected = request.session.get(FORM_TOKEN_KEY)
    return isinstance(expected, str) and bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def require_form_token(request: Request, sent: str) -> None:
    if not form_token_ok(request, sent):
        raise HTTPException(403, detail="form token missing or expired: reload the page and try again")
