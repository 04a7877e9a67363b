"""Request body size limit: 413 before a too-large body is read (web.max_body_bytes).

Pure ASGI, so nothing buffers the body first: a declared Content-Length over the limit is
answered at once without calling the app; a chunked body is counted as the app reads it and
refused at the first byte over.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


def too_large_detail(limit: int) -> str:
    return f"request body larger than web.max_body_bytes ({limit} bytes)"


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without Content-Length passes the limit.

    An HTTPException so that FastAPI's body parsing lets it through as a 413, not a 400.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_detail(limit))


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._refuse(scope, receive, send, 400, "Content-Length is not a number")
                return
            if int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send, 413, too_large_detail(self.max_bytes))
                return
        counted = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal counted
            message = await receive()
            if message["type"] == "http.request":
                counted += len(message.get("body", b""))
                if counted > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as err:
            if started:
                raise
            await self._refuse(scope, receive, send, 413, str(err.detail))

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        client = scope.get("client") or ("?", 0)
        log.warning("refused %s %s from %s: %s", scope["method"], scope["path"], client[0], detail)
        # Connection: close, so the server does not read the rest of the body to reuse the connection.
        await JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})(
            scope, receive, send
        )
