"""Login and logout pages; the session cookie carries the user's name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gozen.web.security import current_identity

router = APIRouter()


def _safe_next(target: str) -> str:
    # Only local paths: never bounce a logged-in user to another site.
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    return request.app.state.templates.TemplateResponse(
        request, "login.html", {"next": _safe_next(next), "error": None, "identity": current_identity(request)}
    )


@router.post("/login")
def login_submit(
    request: Request,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    ident = request.app.state.auth.login(username, password)
    if ident is None:
        return request.app.state.templates.TemplateResponse(
            request,
            "login.html",
            {"next": _safe_next(next), "error": "Wrong user name or password.", "identity": None},
            status_code=401,
        )
    request.session["user"] = ident.name
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/", status_code=303)
