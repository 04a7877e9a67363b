"""Request-level auth: who is asking, password checks with backoff, and refusing actions to anyone not allowed."""

from __future__ import annotations

import logging

from fastapi import HTTPException, Request, status

from gozen.db.events import record_event
from gozen.web.auth import Authenticator, Identity, basic_credentials
from gozen.web.sessions import SessionRegistry
from gozen.web.throttle import LoginThrottle

log = logging.getLogger(__name__)
SESSION_ID_KEY = "sid"
SOURCE = "www:dashboard"


class LoginLocked(HTTPException):
    """Too many failed logins for this user name or address: 429 with Retry-After."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many failed logins: try again in {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )
        self.retry_after_s = retry_after_s


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def shown_name(name: str) -> str:
    """A typed user name as it may appear in events and logs: printable, at most 64 characters."""
    return "".join(c if c.isprintable() else "?" for c in name[:64])


def attempt_login(request: Request, name: str, password: str) -> Identity | None:
    """Check a password, with backoff per user name and address; raises LoginLocked while locked.

    Every failure, and every lock it starts, is recorded as an event.
    """
    state = request.app.state
    throttle: LoginThrottle = state.login_throttle
    address, who = client_address(request), shown_name(name)
    wait_s = throttle.retry_after_s(who, address)
    if wait_s:
        raise LoginLocked(wait_s)
    ident: Identity | None = state.auth.login(name, password)
    if ident is not None:
        throttle.succeeded(who)
        return ident
    failures, locks = throttle.failed(who, address)
    log.warning("failed login user=%r address=%s failures=%d", who, address, failures)
    _event(request, "login_failed", who, f"failed login as {who!r} from {address}", "warning", failures)
    for lock in locks:
        _event(
            request,
            "login_locked",
            who,
            f"logins locked for {lock.lock_s:.0f} s: {lock.key} after {lock.failures} failures",
            "error",
            lock.failures,
        )
    return None


def _event(request: Request, kind: str, who: str, message: str, severity: str, failures: int) -> None:
    record_event(
        request.app.state.engine,
        host=request.app.state.hostname,
        source=SOURCE,
        kind=kind,
        subject=who,
        message=message,
        severity=severity,  # type: ignore[arg-type]
        data={"user": who, "address": client_address(request), "failures": failures},
    )


def current_identity(request: Request) -> Identity | None:
    auth: Authenticator = request.app.state.auth
    header = request.headers.get("authorization")
    if header:  # wrong credentials are not rescued by a cookie
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return auth.from_authorization(header)
        creds = basic_credentials(value)
        ident = attempt_login(request, *creds) if creds else None
        return Identity(ident.name, ident.role, "basic") if ident else None
    return session_identity(request)


def session_identity(request: Request) -> Identity | None:
    """Who the login session cookie says is asking (checks no password, records nothing)."""
    sessions: SessionRegistry = request.app.state.sessions
    name = sessions.user_of(request.session.get(SESSION_ID_KEY))
    role = request.app.state.auth.role_of(name) if name else None
    return Identity(name, role, "session") if name and role else None


def require_operator(request: Request) -> Identity:
    """401 for no or wrong credentials, 403 for a user who may only look."""
    ident = current_identity(request)
    if ident is None:
        wrong = bool(request.headers.get("authorization"))
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="wrong credentials" if wrong else "log in first (session, Basic or Bearer token)",
            headers={"WWW-Authenticate": 'Basic realm="gozen", Bearer'},
        )
    if not ident.may_act:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"user {ident.name!r} may only look (role {ident.role})")
    return ident
