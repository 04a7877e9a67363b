"""`gozen db upgrade | docs | bi-role`: the database's migrations, its schema's documentation, and the
read-only role BI tools connect as."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gozen.cli.console import fail, out
from gozen.cli.context import config, engine

app = typer.Typer(help="The database: migrations, schema docs, the read-only BI role.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = "head") -> None:
    """Run the migrations up to REVISION (default: the newest), and point the BI views at site.timezone."""
    from gozen.db.migrate import current_revision, upgrade
    from gozen.db.views import set_site_time

    db = engine(ctx, create=True)
    upgrade(db, revision)
    set_site_time(db, config(ctx).site.timezone)
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


@app.command("bi-role")
def db_bi_role(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", help="Role name (default: bi.role).")] = None,
    password_file: Annotated[
        Path | None, typer.Option("--password-file", help="File holding its password (else: no password).")
    ] = None,
) -> None:
    """Make (or update) the read-only PostgreSQL role Metabase or Grafana connect as: SELECT on every table
    and view, now and later; no write rights. Run it as the user gozen's tables belong to."""
    from gozen.db.views import RoleRefused, grant_read_only

    role = name or config(ctx).bi.role
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text().strip()
        except OSError as e:
            raise fail(f"--password-file {password_file}: {e.strerror or e}") from None
        if not password:
            raise fail(f"--password-file {password_file}: the file is empty")
    db = engine(ctx)
    try:
        created = grant_read_only(db, role, password)
    except RoleRefused as e:
        raise fail(str(e), code=1) from None
    where = db.url.render_as_string(hide_password=True)
    out.print(f"role {role} {'created' if created else 'updated'}: reads every table and view of {where}, writes none")
