"""The `gozen` command: one thin typer app per part, each command parsing, calling one function of
the part and rendering. `--config` and `--verbose` may stand before or after the subcommand."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from gozen.cli import audit, bi, config, daq, db, fleet, processes, queue, report, transfer, web
from gozen.cli.root import GozenGroup
from gozen.config import CONFIG_ENV

app = typer.Typer(
    cls=GozenGroup,
    help="gozen: the back-end of a high-cadence wide-field survey telescope.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help=f"gozen.yaml, before or after the subcommand (default: ${CONFIG_ENV}, "
            "else the built-in simulated observatory)",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
    ctx.obj = {"config": str(config_file) if config_file else None}


app.add_typer(config.app, name="config")
app.add_typer(db.app, name="db")
app.add_typer(processes.app)
app.add_typer(daq.app, name="daq")
app.add_typer(transfer.app, name="transfer")
app.add_typer(audit.app)
app.add_typer(web.app, name="web")
app.add_typer(queue.app, name="queue")
app.add_typer(fleet.app, name="fleet")
app.add_typer(report.app)  # gozen report [NIGHT]
app.add_typer(bi.app)  # gozen bi
