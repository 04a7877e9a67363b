"""/api/docs with no internet: Swagger UI from the installed swagger-ui-bundle package, under the
same Content-Security-Policy as every page, asking nothing of any host but the app's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Route, expect

from tests.conftest import free_port, web_section, write_config
from tests.web.served import served
from tests.web.test_processes_browser import browser  # noqa: F401 - the fixture

SHOTS = Path(__file__).parents[2] / "var" / "test-screenshots"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("api-docs")
    cfg = write_config(tmp / "gozen.yaml", {"data_dir": str(tmp / "var"), "web": web_section(free_port())})
    with served(cfg) as url:
        yield url


def test_api_docs_render_offline(app_url: str, browser: Browser) -> None:  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    asked: list[str] = []
    problems: list[str] = []

    def only_here(route: Route) -> None:  # anything for another host is refused, as with no internet
        asked.append(route.request.url)
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            route.abort()

    ctx.route("**/*", only_here)
    page = ctx.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        page.goto(f"{app_url}/api/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("gozen", timeout=60_000)
        expect(page.locator(".opblock-summary-path").first).to_be_visible()  # the operations are listed
        expect(page.locator('.opblock-summary-path[data-path="/api/overview"]')).to_have_count(1)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "api-docs.png"))
        assert (SHOTS / "api-docs.png").stat().st_size > 20_000
    finally:
        ctx.close()
    hosts = {urlsplit(u).hostname for u in asked}
    assert hosts == {"127.0.0.1"}, f"asked elsewhere: {sorted(u for u in asked if '127.0.0.1' not in u)}"
    assert any(u.endswith("/static/swagger/swagger-ui-bundle.js") for u in asked)
    assert any(u.endswith("/api/openapi.json") for u in asked)
    assert problems == []  # no CSP refusal, nothing missing


def test_api_docs_page_keeps_the_strict_csp(app_url: str) -> None:
    r = httpx.get(f"{app_url}/api/docs", timeout=60)
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "cdn" not in r.text and "<script>" not in r.text  # no CDN, no inline script
    assert httpx.get(f"{app_url}/api/redoc", timeout=60).status_code == 404  # FastAPI's own pages are off
