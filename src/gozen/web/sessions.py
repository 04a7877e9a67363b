"""Server-side login sessions: the cookie carries only a random id, so logging out revokes it.

Kept in the web app's memory: restarting `www:dashboard` logs everyone out, which fails safe.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class OpenSession:
    user: str
    expires_at: float  # on the registry's clock (monotonic)


class SessionRegistry:
    """Which session ids are logged in, as whom, until when."""

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._open: dict[str, OpenSession] = {}
        self._lock = threading.Lock()

    def open(self, user: str) -> str:
        sid = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._drop_expired(now)
            while len(self._open) >= MAX_SESSIONS:  # oldest first: dicts keep insertion order
                del self._open[next(iter(self._open))]
            self._open[sid] = OpenSession(user, now + self.max_age_s)
        return sid

    def user_of(self, sid: object) -> str | None:
        if not isinstance(sid, str):
            return None
        with self._lock:
            s = self._open.get(sid)
            if s is None:
                return None
            if s.expires_at <= self._clock():
                del self._open[sid]
                return None
            return s.user

    def close(self, sid: object) -> None:
        if isinstance(sid, str):
            with self._lock:
                self._open.pop(sid, None)

    def count(self) -> int:
        with self._lock:
            return len(self._open)

    def _drop_expired(self, now: float) -> None:
        for sid in [k for k, s in self._open.items() if s.expires_at <= now]:
            del self._open[sid]
