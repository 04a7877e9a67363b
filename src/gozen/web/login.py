"""Login and logout pages; the session cookie carries a server-side session id and the form token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gozen.web.csrf import form_token, form_token_ok, require_form_token
from gozen.web.security import SESSION_ID_KEY, LoginLocked, attempt_login, current_identity

router = APIRouter()


def _safe_next(target: str) -> str:
    # Only local paths: never bounce a logged-in user to another site.
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _page(request: Request, next: str, error: str | None, status_code: int = 200, **headers: str) -> Response:
    ctx: dict[str, Any] = {"next": _safe_next(next), "error": error, "identity": current_identity(request)}
    form_token(request)  # before rendering: the page's form carries it
    return request.app.state.templates.TemplateResponse(
        request, "login.html", ctx, status_code=status_code, headers=headers or None
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    return _page(request, next, None)


@router.post("/login")
def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form(max_length=2000)] = "/",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    if not form_token_ok(request, csrf):
        return _page(request, next, "The login form had expired: please try again.", 403)
    try:
        ident = attempt_login(request, username, password)
    except LoginLocked as err:
        return _page(
            request,
            next,
            f"Too many failed logins: try again in {err.retry_after_s} s.",
            429,
            **{"Retry-After": str(err.retry_after_s)},
        )
    if ident is None:
        return _page(request, next, "Wrong user name or password.", 401)
    sessions = request.app.state.sessions
    sessions.close(request.session.get(SESSION_ID_KEY))
    request.session.clear()  # a fresh session (and form token) for the logged-in user
    request.session[SESSION_ID_KEY] = sessions.open(ident.name)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    require_form_token(request, csrf)
    request.app.state.sessions.close(request.session.get(SESSION_ID_KEY))
    request.session.clear()
    return RedirectResponse("/", status_code=303)
