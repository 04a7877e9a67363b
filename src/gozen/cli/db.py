"""`gozen db upgrade | docs`: the database's migrations and its schema's documentation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gozen.cli.console import out
from gozen.cli.context import engine

app = typer.Typer(help="The database: migrations and schema docs.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = "head") -> None:
    """Run the migrations up to REVISION (default: the newest)."""
    from gozen.db.migrate import current_revision, upgrade

    db = engine(ctx, create=True)
    upgrade(db, revision)
    out.print(f"database {db.url.render_as_string(hide_password=True)} at revision {current_revision(db)}")


@app.command("docs")
def db_docs(output: Annotated[Path | None, typer.Option("--output", "-o")] = None) -> None:
    """Write the schema's documentation (from the table and column comments) as Markdown."""
    from gozen.db.docs import schema_markdown

    text = schema_markdown()
    if output:
        output.write_text(text)
    else:
        typer.echo(text, nl=False)
