"""`daq:quicklook`: pictures and sky statistics of each chip's first frame (placeholder until built)."""

from __future__ import annotations

from gozen.service import Service


class QuickLook(Service):
    period_s = 60.0

    def run_once(self) -> None:
        return None
