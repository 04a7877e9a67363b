"""`gozen fleet check`: every host of the config, one line each; exit 1 when any is not ready."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gozen.cli.console import out
from gozen.cli.context import config, engine

app = typer.Typer(help="The hosts of the config, seen from this one.", no_args_is_help=True)


@app.command("check")
def fleet_check(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each supervisord and rsync call")] = 5.0,
) -> None:
    """Each host: supervisord answers and runs this gozen version, clock within 1 s of this host's, its
    programs reach the database (heartbeats), each rsync module writable (a probe file sent and deleted),
    free space of its volumes and nodes; and the database answers and is migrated. Exit 1 on any trouble."""
    from gozen.supervise.check import check_fleet

    database, hosts = check_fleet(config(ctx), engine(ctx), timeout)
    if as_json:
        doc = {"database": asdict(database), "hosts": [{**asdict(h), "ok": h.ok} for h in hosts]}
        typer.echo(json.dumps(doc, indent=2))
    else:
        style = "green" if database.ok else "bold red"
        out.print(f"database {escape(database.shown)}: [{style}]{escape(database.text)}[/]")
        table = Table(
            "host", "verdict", "supervisord", "version", "clock", "database", "rsync", "free", box=None,
            header_style="bold",
        )  # fmt: skip
        for h in hosts:
            verdict = "[green]ok[/]" if h.ok else f"[bold red]TROUBLE ({len(h.troubles)})[/]"
            cells = (h.supervisord, h.version, h.clock, h.database, h.rsync, h.free)
            table.add_row(h.host, verdict, *(escape(c) for c in cells))
        out.print(table)
    if not database.ok or not all(h.ok for h in hosts):
        raise typer.Exit(1)
