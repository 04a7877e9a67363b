"""`gozen config show | check`: the effective gozen.yaml, and whether a file is a valid one."""

from __future__ import annotations

from pathlib import Path

import typer

from gozen.cli.console import fail, out, warn
from gozen.cli.context import config
from gozen.config import ConfigError, dump_config, load_config

app = typer.Typer(help="Show or check gozen.yaml.", no_args_is_help=True)


@app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective config (the file's values with every default filled in)."""
    typer.echo(dump_config(config(ctx)), nl=False)


@app.command("check")
def config_check(file: Path) -> None:
    """Exit 0 if FILE is a valid gozen.yaml, else 2 with each wrong key path and why."""
    from gozen.config_warnings import config_refusals, config_warnings

    try:
        cfg = load_config(file)
    except ConfigError as e:
        raise fail(str(e)) from None
    refused = config_refusals(cfg)
    if refused:
        raise fail(f"{file}:\n" + "\n".join(refused))
    for line in config_warnings(cfg):
        warn(line)
    out.print(
        f"{file}: OK ({len(cfg.hosts)} hosts, {len(cfg.camera.chips)} chips, "
        f"{len(cfg.daq_volumes)} DAQ volumes, {len(cfg.storage_nodes)} storage nodes)",
        markup=False,
        highlight=False,
    )
