"""`/api/docs`: the API's Swagger UI with no internet (an observatory has none at night).

The Swagger UI files come from the installed `swagger-ui-bundle` package, served under
/static/swagger; the page starts it with a static script (docs.js), so the docs page keeps the
same Content-Security-Policy as every other page (no inline script, nothing from elsewhere).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

router = APIRouter()
DOCS_URL = "/api/docs"
ASSETS_URL = "/static/swagger"


def swagger_ui_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def mount_assets(app: FastAPI) -> None:
    """Serve the package's Swagger UI files at /static/swagger (before the app's own /static mount)."""
    app.mount(ASSETS_URL, StaticFiles(directory=swagger_ui_dir()), name="swagger")


@router.get(DOCS_URL, response_class=HTMLResponse, include_in_schema=False)
async def api_docs(request: Request) -> Response:
    ctx = {"title": f"{request.app.title} {request.app.version} · API", "openapi_url": request.app.openapi_url}
    return request.app.state.templates.TemplateResponse(request, "docs.html", ctx)
