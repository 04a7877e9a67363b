"""A clean stop of a DAQ program: supervisord's SIGTERM ends it like Ctrl-C, so it lets go of its rings."""

from __future__ import annotations

import signal
from types import FrameType


def exit_on_sigterm() -> None:
    """From now on SIGTERM raises SystemExit(0) in the main thread (`finally` and `except` blocks run)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


CLEAN_STOP = (KeyboardInterrupt, SystemExit)
