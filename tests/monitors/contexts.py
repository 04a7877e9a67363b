"""The Context a monitor program is given, for tests that build one monitor on a test database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from gozen.config import parse_config
from gozen.service import Context


def monitor_context(engine: Engine, program: str, host: str = "obs1", **monitors: Any) -> Context:
    """`program` on `host` with these `monitors:` settings; no start grace and no always-dark
    simulated sky unless asked, so a test sees every event and the real Sun."""
    settings = {"start_grace_s": 0.0, "simulator": {"dark_sky": False}} | monitors
    return Context(parse_config({"monitors": settings}), host, engine, program)
