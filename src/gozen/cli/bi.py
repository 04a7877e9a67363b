"""`gozen bi`: the SQLite database served read-only by Datasette (tables and the BI views, with their
descriptions), for browsing, faceting and ad-hoc SELECTs; on PostgreSQL, where to look instead."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from gozen.cli.console import fail, out
from gozen.cli.context import config

app = typer.Typer()

# Views join and rank whole tables: give a query more than Datasette's default second.
SQL_TIME_LIMIT_MS = 10_000


@app.command("bi")
def bi(
    ctx: typer.Context,
    bind: Annotated[str | None, typer.Option(help="Address to listen on (default: bi.bind).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: bi.port).")] = None,
) -> None:
    """Serve the database read-only with Datasette at bi.bind:bi.port: every table and the BI views (v_*),
    described from their comments; SELECT queries allowed, no write possible (the file is opened mode=ro)."""
    cfg = config(ctx)
    url = make_url(cfg.database_url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() != "sqlite":
        raise fail(
            f"the database is PostgreSQL ({shown}): Datasette serves SQLite only. Make the read-only role with "
            f"`gozen db bi-role` (role {cfg.bi.role}) and connect Metabase or Grafana as it (README: BI)",
            code=1,
        )
    if not url.database or url.database == ":memory:" or not Path(url.database).exists():
        raise fail(f"no database at {shown} (`gozen db upgrade` or `gozen up` makes it)", code=1)
    host, listen = bind or cfg.bi.bind, port or cfg.bi.port
    path = Path(url.database)
    out.print(f"Datasette: {path} read-only at http://{host}:{listen}/{path.stem} (Ctrl-C stops it)")
    _serve(path, host, listen)


def _serve(path: Path, host: str, port: int) -> None:
    """As `datasette serve` does, with the file mutable (gozen keeps writing it, in WAL mode: `immutable`
    would skip the WAL) and so opened `mode=ro` on every connection Datasette reads with."""
    import uvicorn
    from datasette.app import Datasette

    from gozen.db.docs import datasette_metadata

    ds = Datasette(
        [str(path)],
        metadata=datasette_metadata(path.stem),
        settings={"sql_time_limit_ms": SQL_TIME_LIMIT_MS, "allow_download": False},
        cors=False,
    )
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ds.invoke_startup())
    finally:
        loop.close()
    uvicorn.run(ds.app(), host=host, port=port, log_level="warning", lifespan="on", workers=1)
