"""`gozen report [NIGHT]`: one night's report made by hand (plots, page, row; posted unless --no-post)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape

from gozen.cli.console import fail, out
from gozen.cli.context import config, engine

app = typer.Typer()


def _time(text: str | None, what: str) -> datetime | None:
    from gozen.web.times import as_utc

    if text is None:
        return None
    try:
        return as_utc(text)
    except ValueError:
        raise fail(f"{what} {text!r} is not an ISO 8601 time (e.g. 2026-11-25T10:00:00Z)") from None


@app.command("report")
def report(
    ctx: typer.Context,
    night: Annotated[
        str | None, typer.Argument(help="The night YYYY-MM-DD (its evening's local date); default: the latest finished")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Start of the span, ISO 8601 (default: local noon of NIGHT)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="End of the span, ISO 8601 (default: local noon the day after)")
    ] = None,
    post: Annotated[bool, typer.Option(help="Post it to Slack (summary via the outbox, overview picture)")] = True,
) -> None:
    """Make a night's report under reports.dir/NIGHT/ and record it (again, if it was made before)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from gozen.db.types import utcnow
    from gozen.report.build import STEPS, build_report
    from gozen.report.night import BadNight, latest_finished_night, parse_night

    cfg = config(ctx)
    start_at, end_at = _time(since, "--since"), _time(until, "--until")
    if night is None:
        night = latest_finished_night(cfg, utcnow())
    try:
        parse_night(night)
    except BadNight as err:
        raise fail(str(err)) from None
    if start_at and end_at and end_at <= start_at:
        raise fail(f"--until {until} is not after --since {since}")
    db = engine(ctx)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=out, transient=True
    ) as bar:
        task = bar.add_task(f"night {night}", total=STEPS)
        row = build_report(
            cfg,
            db,
            night,
            start_at,
            end_at,
            post=post,
            progress=lambda what: bar.update(task, advance=1, description=what),
        )
    out.print(escape(row.summary), highlight=False)
    out.print(f"{row.path}/index.html", highlight=False)
    slack = row.slack_state + (f" ({row.slack_error})" if row.slack_error else "")
    out.print(f"slack: {escape(slack)}", highlight=False)
    if row.slack_state == "failed":
        raise typer.Exit(1)
