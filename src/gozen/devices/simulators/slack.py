"""A Slack stand-in for the simulated observatory: what gozen posts lands here and is shown like a channel.

Served by sim:feeds. `POST /slack/webhook` takes an incoming-webhook payload (JSON `text` / `blocks`, or a
form field `payload`) and answers `ok`, as hooks.slack.com does. The Web API under `/slack/api/` answers
`auth.test`, `chat.postMessage` and, as slack_sdk's `files_upload_v2` calls them,
`files.getUploadURLExternal`, the upload URL it hands out (`/slack/upload/FILE_ID`) and
`files.completeUploadExternal`. Arguments come as a query, a form or JSON; a token (Authorization: Bearer
or `token`) is needed and any `xox...` one is taken. A request Slack would refuse is refused with Slack's
error name and a `detail` saying what is wrong (HTTP 400, 401 without a token, 404 for an unknown method).

Every message is appended to `data_dir/sim/slack.jsonl` and every file saved in `data_dir/sim/slack-files/`;
`GET /sim/slack` shows them newest last, times in UTC and the site's time, `:emoji:` codes as emoji,
mrkdwn formatted, images inline, and reloads itself; `GET /sim/slack.json` lists them.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response

from gozen.devices.simulators.slack_page import PAGE_CSS, PAGE_JS, page_html

log = logging.getLogger(__name__)
MAX_UPLOAD_BYTES = 32 * 2**20


class SlackError(Exception):
    """A request Slack would refuse: Slack's error name, what is wrong, the HTTP status."""

    def __init__(self, error: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.error, self.detail, self.status = error, detail, status


# -- what was received -------------------------------------------------------


def file_kind(name: str, data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class SlackStandIn:
    """The messages and files received, kept in `sim_dir` (slack.jsonl, slack-files/)."""

    def __init__(self, sim_dir: Path, tz: ZoneInfo, clock: Callable[[], float] = time.time) -> None:
        self.log_file, self.files_dir, self.tz, self.clock = sim_dir / "slack.jsonl", sim_dir / "slack-files", tz, clock
        self.lock = threading.Lock()
        self.uploads: dict[str, dict[str, Any]] = {}  # file id -> name, length, path (once uploaded)
        self.messages = self.load()
        self.last_ts = max((float(m["ts"]) for m in self.messages), default=0.0)
        self.file_seq = sum(len(m.get("files") or []) for m in self.messages)

    def load(self) -> list[dict[str, Any]]:
        out = []
        try:
            lines = self.log_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        for n, line in enumerate(lines, start=1):
            try:
                out.append(json.loads(line))
            except ValueError:
                log.warning("%s:%d: not JSON, skipped: %r", self.log_file, n, line[:200])
        return out

    def next_ts(self) -> str:
        """A Slack message timestamp, `1732612345.000100`, unique and increasing."""
        ts = max(self.clock(), self.last_ts + 1e-6)
        self.last_ts = ts
        return f"{ts:.6f}"

    def record(
        self, via: str, channel: str | None, text: str, blocks: list[Any] | None, files: list[Any] | None = None
    ) -> dict[str, Any]:
        with self.lock:
            ts = self.next_ts()
            m = {
                "ts": ts,
                "at": datetime.fromtimestamp(float(ts), UTC).isoformat(),
                "via": via,
                "channel": channel,
                "text": text,
                "blocks": blocks,
                "files": files or [],
            }
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("a") as f:
                f.write(json.dumps(m) + "\n")
            self.messages.append(m)
        log.info("slack %s %s: %s", via, channel or "-", text[:120])
        return m

    def new_upload(self, filename: str, length: int) -> str:
        with self.lock:
            self.file_seq += 1
            file_id = f"F{int(self.clock()):X}{self.file_seq:04d}"
            self.uploads[file_id] = {"name": filename, "length": length, "path": None}
        return file_id

    def receive_upload(self, file_id: str, data: bytes) -> None:
        up = self.uploads.get(file_id)
        if up is None:
            raise SlackError("invalid_upload", f"no upload {file_id!r} was asked for (files.getUploadURLExternal)", 404)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", up["name"])[:100] or "file"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        path = self.files_dir / f"{file_id}-{safe}"
        path.write_bytes(data)
        up.update(path=path, size=len(data), mimetype=file_kind(up["name"], data))

    def complete(self, files: list[dict[str, Any]], channel: str | None, comment: str) -> list[dict[str, Any]]:
        done = []
        for f in files:
            up = self.uploads.get(str(f.get("id")))
            if up is None or up["path"] is None:
                raise SlackError("invalid_arguments", f"file {f.get('id')!r} was not uploaded to its upload URL")
            done.append(
                {
                    "id": f["id"],
                    "title": str(f.get("title") or up["name"]),
                    "name": up["name"],
                    "mimetype": up["mimetype"],
                    "size": up["size"],
                    "url": f"/sim/slack/files/{up['path'].name}",
                }
            )
        for f in done:
            self.uploads.pop(f["id"], None)
        self.record("files.completeUploadExternal", channel, comment, None, done)
        return done

    def file_path(self, name: str) -> Path | None:
        path = self.files_dir / name
        return path if "/" not in name and path.is_file() else None


# -- the routes --------------------------------------------------------------


async def request_args(request: Request) -> dict[str, Any]:
    """A Web API call's arguments: the query, then a form or JSON body."""
    args: dict[str, Any] = dict(request.query_params)
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as err:
            raise SlackError("invalid_json", f"the body is not JSON: {err}") from None
        if not isinstance(body, dict):
            raise SlackError("invalid_json", "the JSON body is not an object")
        args.update(body)
    elif kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


def token_of(request: Request, args: dict[str, Any]) -> str:
    auth = request.headers.get("authorization", "")
    token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else str(args.get("token") or "")
    if not token:
        raise SlackError("not_authed", "no token: send Authorization: Bearer xoxb-... or a token argument", 401)
    if not token.startswith("xox"):
        raise SlackError("invalid_auth", f"{token[:8]}...: not a Slack token (xoxb-..., xoxp-...)", 401)
    return token


def blocks_of(value: Any) -> list[Any] | None:
    """Blocks as a list of block objects (a JSON string in a form); SlackError when they are not."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError("invalid_blocks_format", "blocks: not JSON") from None
    if not isinstance(value, list) or not all(isinstance(b, dict) and "type" in b for b in value):
        raise SlackError("invalid_blocks", "blocks: must be a list of objects, each with a type")
    return value


def text_or_blocks(args: dict[str, Any]) -> tuple[str, list[Any] | None]:
    text, blocks = args.get("text"), blocks_of(args.get("blocks"))
    if text is not None and not isinstance(text, str):
        raise SlackError("invalid_arguments", f"text: must be a string, got {type(text).__name__}")
    if not text and not blocks:
        raise SlackError("no_text", "the message has neither text nor blocks")
    return text or "", blocks


def api_call(slack: SlackStandIn, method: str, args: dict[str, Any], base_url: str) -> dict[str, Any]:
    if method == "auth.test":
        return {"url": base_url, "team": "gozen (simulated)", "user": "gozen", "team_id": "TSIMULATED",
                "user_id": "USIMULATED", "bot_id": "BSIMULATED"}  # fmt: skip
    if method == "chat.postMessage":
        channel = str(args.get("channel") or "")
        if not channel:
            raise SlackError("channel_not_found", "channel: missing")
        text, blocks = text_or_blocks(args)
        m = slack.record(method, channel, text, blocks)
        return {"channel": channel, "ts": m["ts"], "message": {"type": "message", "text": text, "ts": m["ts"]}}
    if method == "files.getUploadURLExternal":
        filename = str(args.get("filename") or "")
        try:
            length = int(args.get("length", ""))
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments", f"length: {args.get('length')!r} is not a whole number") from None
        if not filename or length < 0:
            raise SlackError("invalid_arguments", "filename and a length >= 0 are required")
        file_id = slack.new_upload(filename, length)
        return {"upload_url": f"{base_url}slack/upload/{file_id}", "file_id": file_id}
    if method == "files.completeUploadExternal":
        raw = args.get("files")
        try:
            files = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            files = None
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) and "id" in f for f in files):
            raise SlackError("invalid_arguments", f'files: a JSON list of {{"id", "title"}} wanted, got {raw!r}')
        to: str | None = str(args.get("channel_id") or args.get("channels") or "") or None
        return {"files": slack.complete(files, to, str(args.get("initial_comment") or ""))}
    raise SlackError("unknown_method", f"{method!r} is not a method of this stand-in", 404)


def slack_error(err: SlackError) -> JSONResponse:
    return JSONResponse({"ok": False, "error": err.error, "detail": err.detail}, status_code=err.status)


def slack_router(slack: SlackStandIn, refresh_s: float = 10.0) -> APIRouter:
    router = APIRouter()

    @router.post("/slack/webhook")
    @router.post("/slack/webhook/{_path:path}")
    async def webhook(request: Request) -> Response:
        try:
            kind = request.headers.get("content-type", "")
            raw = (
                (await request.form()).get("payload")
                if "form" in kind
                else (await request.body()).decode(errors="replace")
            )
            try:
                payload = json.loads(raw) if isinstance(raw, str) else None
            except ValueError:
                payload = None
            if not isinstance(payload, dict):
                raise SlackError("invalid_payload", "the body is not a JSON object (nor a form with a payload field)")
            text, blocks = text_or_blocks(payload)
            slack.record("webhook", payload.get("channel"), text, blocks)
        except SlackError as err:
            return PlainTextResponse(f"{err.error}: {err.detail}", status_code=err.status)
        return PlainTextResponse("ok")

    @router.api_route("/slack/api/{method}", methods=["GET", "POST"])
    async def web_api(request: Request, method: str) -> JSONResponse:
        try:
            args = await request_args(request)
            token_of(request, args)
            answer = api_call(slack, method, args, str(request.base_url))
        except SlackError as err:
            return slack_error(err)
        return JSONResponse({"ok": True, **answer})

    @router.post("/slack/upload/{file_id}")
    async def upload(request: Request, file_id: str) -> Response:
        data = await request.body()
        if len(data) > MAX_UPLOAD_BYTES:
            return PlainTextResponse(f"file too large: {len(data)} bytes > {MAX_UPLOAD_BYTES}", status_code=413)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            parts = [v for v in form.values() if not isinstance(v, str)]
            data = await parts[0].read() if parts else b""
        try:
            slack.receive_upload(file_id, data)
        except SlackError as err:
            return PlainTextResponse(f"{err.error}: {err.detail}", status_code=err.status)
        return PlainTextResponse(f"OK - {len(data)}")

    @router.get("/sim/slack.json")
    def received() -> dict[str, Any]:
        return {"messages": list(slack.messages)}

    @router.get("/sim/slack", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(page_html(slack, refresh_s))

    @router.get("/sim/slack.css")
    def css() -> Response:
        return Response(PAGE_CSS, media_type="text/css")

    @router.get("/sim/slack.js")
    def js() -> Response:
        return Response(PAGE_JS, media_type="text/javascript")

    @router.get("/sim/slack/files/{name}")
    def file(name: str) -> Response:
        path = slack.file_path(name)
        if path is None:
            return PlainTextResponse(f"no file {name!r}", status_code=404)
        with path.open("rb") as f:
            head = f.read(16)
        return FileResponse(path, media_type=file_kind(name, head))

    return router
