"""Make finished cubes durable off the writer's loop: fsync, close and rename on worker threads.

A per-file fsync takes as long as the disk needs to take 54 MB; done in the loop it stops
the writer draining its rings for that long (bench/daq_bench.py --mode disk showed the drops).
The threads release the GIL while the kernel flushes, so the loop keeps up meanwhile. At
most `max_pending` files wait, so a disk that cannot keep up slows the writer down
visibly (the rings fill and drops are counted) rather than growing without bound.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from gozen.daq.cube import CubeFile


class Flusher:
    def __init__(self, workers: int = 2, max_pending: int = 64) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fsync")
        self._room = threading.BoundedSemaphore(max_pending)
        self._done: deque[tuple[Any, BaseException | None]] = deque()

    def submit(self, cube: CubeFile, item: Any) -> None:
        self._room.acquire()
        future = self._pool.submit(cube.commit)
        future.add_done_callback(lambda f: self._finished(item, f))

    def _finished(self, item: Any, future: Future[None]) -> None:
        self._done.append((item, future.exception()))
        self._room.release()

    def collect(self) -> list[tuple[Any, BaseException | None]]:
        """Files committed since the last call, with the error of any that failed."""
        out = []
        while self._done:
            out.append(self._done.popleft())
        return out

    def wait(self) -> None:
        """Block until every submitted file is committed (shutdown, tests)."""
        self._pool.shutdown(wait=True)
        self._pool = ThreadPoolExecutor(max_workers=self._pool._max_workers, thread_name_prefix="fsync")
