"""Request-level auth: who is asking, and refusing actions to anyone not allowed."""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from gozen.web.auth import Authenticator, Identity


def current_identity(request: Request) -> Identity | None:
    auth: Authenticator = request.app.state.auth
    header = request.headers.get("authorization")
    if header:
        return auth.from_authorization(header)  # wrong credentials are not rescued by a cookie
    name = request.session.get("user")
    role = auth.role_of(name) if name else None
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
