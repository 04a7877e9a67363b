"""What a command is given: the config (--config, else $GOZEN_CONFIG, else the built-in simulated
observatory), its database, and which configured host this is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from gozen.cli.console import fail, say
from gozen.config import CONFIG_ENV, Config, ConfigError, Host, load_config


def _state(ctx: typer.Context) -> dict[str, Any]:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = {}
    state: dict[str, Any] = root.obj
    return state


def config_file(ctx: typer.Context) -> str | None:
    """The config file this command reads: --config, else $GOZEN_CONFIG; None: the built-in one."""
    return _state(ctx).get("config") or os.environ.get(CONFIG_ENV) or None


def config(ctx: typer.Context) -> Config:
    """The effective config, read once per command; a bad one exits 2 naming the key."""
    state = _state(ctx)
    if "cfg" not in state:
        try:
            state["cfg"] = load_config(config_file(ctx))
        except ConfigError as e:
            raise fail(str(e)) from None
    cfg: Config = state["cfg"]
    return cfg


def loaded_config(ctx: typer.Context) -> Config | None:
    """The config if this command has read it already."""
    cfg: Config | None = _state(ctx).get("cfg")
    return cfg


def engine(ctx: typer.Context, create: bool = False) -> Engine:
    """The config's database. A SQLite file that is not there is not made (unless `create`): the
    command says which database it would use and exits 1, rather than work on a new empty one."""
    from gozen.db.engine import make_engine

    cfg = config(ctx)
    url = make_url(cfg.database_url)
    file = url.database if url.get_backend_name() == "sqlite" and url.database != ":memory:" else None
    missing = bool(file) and not Path(str(file)).exists()
    if missing and not create:
        shown = url.render_as_string(hide_password=True)
        if config_file(ctx) is None:
            say(
                f"no database at {shown}: this directory has no gozen data (no --config or ${CONFIG_ENV}: "
                "the built-in simulated observatory keeps its data under ./var; `gozen up` starts it)"
            )
        else:
            say(f"no database at {shown} (`gozen db upgrade` or `gozen up` makes it)")
        raise typer.Exit(1)
    return make_engine(cfg.database_url)


def this_host(ctx: typer.Context, name: str | None) -> Host:
    """The host named (--host), else $GOZEN_HOST, else the only host, else this machine's."""
    from gozen.supervise.up import this_host as find_host

    try:
        return find_host(config(ctx), name)
    except ConfigError as e:
        raise fail(str(e)) from None
