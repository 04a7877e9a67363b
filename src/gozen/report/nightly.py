"""`www:report`: the nightly report (placeholder until built)."""

from __future__ import annotations

from gozen.service import Service


class Reporter(Service):
    period_s = 300.0

    def run_once(self) -> None:
        return None
