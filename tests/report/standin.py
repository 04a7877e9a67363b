"""Slack as the report talks to it, on 127.0.0.1: the incoming webhook (summaries from the outbox)
and the Web API that files_upload_v2 uses; the couriers' stand-ins, recorded calls and all."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gozen.config import Config, parse_config
from tests.couriers.test_couriers import Server, SlackApiHandler, SlackHandler

UPLOAD_PATHS = ["/api/files.getUploadURLExternal", "/upload/F1", "/api/files.completeUploadExternal"]


@contextmanager
def slack_api(port: int = 0) -> Iterator[Server]:
    """The Web API stand-in on `port` (0: any free one); `.calls` = (path, Authorization, body)."""
    api = Server.__new__(Server)
    api.httpd = ThreadingHTTPServer(("127.0.0.1", port), SlackApiHandler)
    api.httpd.state = api  # type: ignore[attr-defined]
    api.url = f"http://127.0.0.1:{api.httpd.server_address[1]}"
    api.calls = []  # type: ignore[attr-defined]
    threading.Thread(target=api.httpd.serve_forever, daemon=True).start()
    try:
        yield api
    finally:
        api.close()


@contextmanager
def slack_webhook() -> Iterator[Server]:
    """The incoming-webhook stand-in; `.received` = the JSON payloads."""
    hook = Server(SlackHandler)
    hook.received, hook.script = [], []  # type: ignore[attr-defined]
    try:
        yield hook
    finally:
        hook.close()


def report_config(
    tmp: Path, webhook_url: str | None, api_url: str | None, sim_port: int | None = None, **extra: Any
) -> Config:
    """A config on a SQLite file under `tmp`, with a Slack notifier (webhook + bot token) when given URLs;
    else sim:feeds' Slack on `sim_port` (none configured: the demo's default), else no notifier at all."""
    simulator = {"enabled": True, "port": sim_port} if sim_port else {"enabled": False}
    data: dict[str, Any] = {
        "data_dir": str(tmp / "var"),
        "couriers": {"simulator": simulator, "retry_base_s": 0.01},
        **extra,
    }
    if webhook_url is not None:
        data["notifiers"] = [
            {
                "name": "tomoe-slack",
                "kind": "slack",
                "url": f"{webhook_url}/services/T0/B0/x",
                "bot_token": "xoxb-report",
                "channel": "C0NIGHT",
                "api_url": f"{api_url}/api/",
            }
        ]
    return parse_config(data)


def upload_paths(api: Server) -> list[str]:
    return [c[0] for c in api.calls]  # type: ignore[attr-defined]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, after checking it is one that decodes (Pillow, as matplotlib ships it)."""
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        return im.size


def sim_feeds(cfg: Config) -> AbstractContextManager[str]:
    """sim:feeds (the demo's own Slack stand-in among its feeds) served by uvicorn in a thread; its URL."""
    from gozen.devices.simulators.feeds import create_app
    from tests.web.served import serve_asgi

    return serve_asgi(create_app(cfg), cfg.couriers.simulator.port, "sim:feeds")


def sim_slack_received(url: str) -> list[dict[str, Any]]:
    """Every message and file the stand-in took, oldest first (/sim/slack.json)."""
    import httpx

    r = httpx.get(f"{url}/sim/slack.json", timeout=30)
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages
