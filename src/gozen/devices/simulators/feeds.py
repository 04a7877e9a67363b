"""`sim:feeds`: simulated alert feeds and a Slack stand-in (placeholder until built)."""

from __future__ import annotations

from gozen.service import Context


def main(ctx: Context) -> None:
    while not ctx.sleep(3600):
        pass
