"""Login backoff: after a few failures a user name or an address is locked, longer each time.

Counts failures per user name and per client address; once either passes its free failures,
each further failure locks it for twice as long (capped). A locked name or address gets 429 with
Retry-After without its password being looked at. A success clears the user name's count.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES_PER_USER = 5
FREE_FAILURES_PER_ADDRESS = 20
FIRST_LOCK_S = 30.0
MAX_LOCK_S = 900.0
FORGET_AFTER_S = 3600.0
MAX_TRACKED = 20_000


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


@dataclass(frozen=True)
class Lockout:
    key: str  # "user NAME" or "address ADDR"
    failures: int
    lock_s: float


class LoginThrottle:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        free_per_user: int = FREE_FAILURES_PER_USER,
        free_per_address: int = FREE_FAILURES_PER_ADDRESS,
    ) -> None:
        self._clock = clock
        self._free = {"user": free_per_user, "address": free_per_address}
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def retry_after_s(self, user: str, address: str) -> int:
        """Seconds until this user name and address may try again; 0 when they may now."""
        now = self._clock()
        with self._lock:
            waits = [r.locked_until - now for r in self._get(_keys(user, address))]
        return max(0, math.ceil(max(waits, default=0.0)))

    def failed(self, user: str, address: str) -> tuple[int, list[Lockout]]:
        """Count a failure; the user name's failures so far and the locks it started."""
        now = self._clock()
        locks = []
        with self._lock:
            self._forget_old(now)
            for key in _keys(user, address):
                r = self._records.setdefault(key, _Record())
                if now - r.last_failure > FORGET_AFTER_S:
                    r.failures = 0
                r.failures += 1
                r.last_failure = now
                over = r.failures - self._free[key.split(" ", 1)[0]]
                if over >= 0:
                    lock_s = min(MAX_LOCK_S, FIRST_LOCK_S * 2**over)
                    r.locked_until = now + lock_s
                    locks.append(Lockout(key, r.failures, lock_s))
            return self._records[f"user {user}"].failures, locks

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._records.pop(f"user {user}", None)

    def _get(self, keys: tuple[str, str]) -> list[_Record]:
        return [r for r in map(self._records.get, keys) if r is not None]

    def _forget_old(self, now: float) -> None:
        if len(self._records) < MAX_TRACKED:
            return
        for key in [k for k, r in self._records.items() if now - r.last_failure > min(FORGET_AFTER_S, MAX_LOCK_S)]:
            del self._records[key]
        while len(self._records) >= MAX_TRACKED:
            del self._records[next(iter(self._records))]


def _keys(user: str, address: str) -> tuple[str, str]:
    return f"user {user}", f"address {address}"
