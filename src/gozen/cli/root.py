"""The root `gozen` command: its options are read wherever they stand on the line, and a database
that is away is told in one line, whichever command met it."""

from __future__ import annotations

from typing import Any

import typer
from sqlalchemy.engine import make_url
from typer.core import TyperGroup

from gozen.cli.console import say
from gozen.cli.context import config_file, loaded_config
from gozen.config import ConfigError, load_config
from gozen.service import DeviceUnavailable, is_outage

# The root's options, as (spelling, takes a value): `gozen queue ls --config x.yaml` means
# `gozen --config x.yaml queue ls`.
ROOT_OPTIONS = {"--config": True, "-c": True, "--verbose": False, "-v": False}


def root_options_first(args: list[str]) -> list[str]:
    """`args` with the root's options (and their values) moved before the subcommand."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":  # what follows is operands, whatever it looks like
            rest += args[i:]
            break
        takes_value = ROOT_OPTIONS.get(arg)
        if takes_value is None and arg.startswith("--config="):
            front.append(arg)
        elif takes_value is None:
            rest.append(arg)
        elif takes_value and i + 1 < len(args):
            front += args[i : i + 2]
            i += 1
        else:
            front.append(arg)
        i += 1
    return front + rest


class GozenGroup(TyperGroup):
    """The root command group: root options anywhere; an outage ends the command in one line, exit 1."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        return super().parse_args(ctx, root_options_first(args))

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except Exception as e:
            if not is_outage(e):
                raise
            say(outage_line(ctx, e))
            raise typer.Exit(1) from None


def outage_line(ctx: typer.Context, e: BaseException) -> str:
    """`database unavailable (URL without password): why`, or the device and why."""
    if isinstance(e, DeviceUnavailable):
        return f"device unavailable: {e}"
    return f"database unavailable ({_database_shown(ctx)}): {_why(e)}"


def _database_shown(ctx: typer.Context) -> str:
    cfg = loaded_config(ctx)
    if cfg is None:
        try:
            cfg = load_config(config_file(ctx))
        except ConfigError:
            return "the configured database"
    return make_url(cfg.database_url).render_as_string(hide_password=True)


def _why(e: BaseException) -> str:
    """The driver's reason in a few words: `connection refused`, `role "x" does not exist`."""
    orig = getattr(e, "orig", None) or e
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    # psycopg says `connection failed: connection to server at ..., port ... failed: Connection refused`.
    why = " ".join(first.rsplit("failed: ", 1)[-1].removeprefix("FATAL:").split()) or first
    return why[:1].lower() + why[1:] if why[1:2].islower() else why
