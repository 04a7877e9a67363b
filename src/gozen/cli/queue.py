"""`gozen queue ...`: submit recipes, list, show, cancel; the queue's mode, pause and abort; tonight's plan."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gozen.cli.console import fail, out
from gozen.cli.context import config, engine

app = typer.Typer(help="Queue observation: submit recipes, list, cancel, move up, mode, plan.", no_args_is_help=True)


def _operator() -> str:
    """Who runs this command, for the event log: `<login> (cli)`."""
    import getpass

    try:
        return f"{getpass.getuser()} (cli)"
    except (KeyError, OSError):
        return "cli"


def _recipe(db: Any, uuid: str) -> Any:
    """The recipe with this uuid or unique uuid prefix; exit 1 naming it when there is none."""
    from gozen.queue import store

    row = store.find(db, uuid)
    if row is None:
        raise fail(f"uuid: no recipe {uuid!r} (or the prefix is not unique)")
    return row


@app.command("submit")
def queue_submit(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Recipe, YAML or JSON; - for standard input")],
    by: Annotated[str, typer.Option(help="Who submits it (for the history)")] = "cli",
) -> None:
    """Queue a recipe; every error is named by its field path (exit 2)."""
    from gozen.queue import store
    from gozen.queue.recipe import RecipeError, load_recipe_text

    cfg, db = config(ctx), engine(ctx)
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except OSError as e:
        raise fail(f"{file}: {e.strerror}") from None
    try:
        row = store.submit(db, load_recipe_text(text, str(file), cfg.queue.max_steps), by, cfg.queue.positions())
    except RecipeError as e:
        raise fail(str(e)) from None
    out.print(f"queued {row.name} as {row.uuid}")


@app.command("ls")
def queue_ls(ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The queue server's line, what executes, the queue in the order it would run (and why each waits)."""
    from gozen.queue.view import queue_view

    v = queue_view(config(ctx), engine(ctx))
    if json_out:
        out.print_json(json.dumps(v))
        return
    pid = v["server"]["pid"] if v["server"] else "-"
    out.print(f"[bold]pid {pid} / {v['mode']}{' (paused)' if v['paused'] else ''} / {v['activity']}[/]")
    ex = v["executing"]
    if ex:
        out.print(f"executing: {ex['name']} ({ex['uuid'][:8]}) step {ex['step']}/{ex['steps']} {ex['step_kind']}")
    table = Table(
        "#",
        "uuid",
        "name",
        "priority",
        "alt",
        "waits for",
        box=None,
        header_style="bold",
        title=f"Recipes in the Queue ({v['queued_total']})",
    )
    for i, q in enumerate(v["queued"], 1):
        table.add_row(
            str(i),
            q["uuid"][:8],
            q["name"],
            q["priority"],
            "-" if q["alt_deg"] is None else f"{q['alt_deg']:.1f}",
            q["waits_for"],
        )
    out.print(table)
    done = Table("finished (UTC)", "name", "outcome", box=None, header_style="bold", title="Executed Recipes")
    for e in v["executed"][:10]:
        done.add_row((e["finished_at"] or "")[:19], e["name"], e["state"])
    out.print(done)


@app.command("show")
def queue_show(ctx: typer.Context, uuid: str) -> None:
    """A recipe, its progress and its full history."""
    from gozen.queue import store

    db = engine(ctx)
    row = _recipe(db, uuid)
    out.print(f"[bold]{row.name}[/] {row.uuid}\nstate {row.state}; priority {row.priority}; progress {row.progress}")
    if row.message:
        out.print(row.message)
    for e in store.history(db, row.uuid):
        out.print(f"  {e['time']:%Y-%m-%d %H:%M:%S}  {e['kind']:<11} {e['message']}")


@app.command("cancel")
def queue_cancel(ctx: typer.Context, uuid: str, by: Annotated[str, typer.Option()] = "cli") -> None:
    """Cancel a queued recipe (an executing one is aborted)."""
    from gozen.queue import store
    from gozen.queue.recipe import RecipeError

    db = engine(ctx)
    row = _recipe(db, uuid)
    try:
        out.print(f"{row.name}: {store.cancel(db, row.uuid, by)}")
    except RecipeError as e:
        raise fail(str(e)) from None


@app.command("move-up")
def queue_move_up(ctx: typer.Context, uuid: str) -> None:
    """Raise a queued recipe's priority one level (low -> normal -> high)."""
    from gozen.queue import store
    from gozen.queue.recipe import RecipeError

    db = engine(ctx)
    row = _recipe(db, uuid)
    try:
        out.print(f"{row.name}: now {store.move_up(db, row.uuid, _operator())}")
    except RecipeError as e:
        raise fail(str(e)) from None


@app.command("mode")
def queue_mode(ctx: typer.Context, mode: Annotated[str, typer.Argument(help="normal or maintenance")]) -> None:
    """normal: recipes run; maintenance: nothing starts (the running recipe finishes its step)."""
    from gozen.db.states import QueueMode
    from gozen.queue import store

    if mode not in tuple(QueueMode):
        raise fail(f"mode: must be normal or maintenance, got {mode!r}")
    store.set_mode(engine(ctx), QueueMode(mode), by=_operator())
    out.print(f"queue mode: {mode}")


@app.command("abort")
def queue_abort(ctx: typer.Context, by: Annotated[str | None, typer.Option()] = None) -> None:
    """Abort the executing recipe at once (nothing is left pending when nothing executes)."""
    from gozen.queue import store

    if store.request_abort(engine(ctx), by=by or _operator()):
        out.print("abort requested")
    else:
        out.print("nothing is executing")


@app.command("pause")
def queue_pause(ctx: typer.Context) -> None:
    """Start nothing new until resume."""
    from gozen.queue import store

    store.set_paused(engine(ctx), True, by=_operator())
    out.print("queue paused")


@app.command("resume")
def queue_resume(ctx: typer.Context) -> None:
    """Start recipes again after a pause."""
    from gozen.queue import store

    store.set_paused(engine(ctx), False, by=_operator())
    out.print("queue resumed")


@app.command("plan")
def queue_plan(
    ctx: typer.Context,
    night: Annotated[str | None, typer.Option(help="YYYY-MM-DD, the evening's date (default: today)")] = None,
    svg: Annotated[Path | None, typer.Option(help="Also write the plan's picture here (SVG)")] = None,
    png: Annotated[Path | None, typer.Option(help="Also write the plan's picture here (PNG)")] = None,
) -> None:
    """What would run when tonight: the queue played forward with slew, settle and readout time
    (safe weather assumed; said when it is unsafe now)."""
    from datetime import UTC, date, datetime

    from rich.markup import escape

    from gozen.queue.plan import night_plan
    from gozen.queue.recipe import PRIORITY_OF_RANK as names
    from gozen.web import plan_picture

    try:
        n = date.fromisoformat(night) if night else datetime.now(UTC).date()
    except ValueError:
        raise fail(f"--night: not a date (YYYY-MM-DD): {night!r}") from None
    p = night_plan(config(ctx), engine(ctx), n)
    out.print(
        f"night of {n}: planned {p.start:%H:%M}-{p.end:%H:%M} UTC (until the Sun rises above -12 deg); "
        f"{len(p.slots)} of {len(p.queued)} queued recipes planned; overheads {p.overhead_s / 60:.0f} min"
    )
    if p.executing is not None:
        out.print(f"running: {escape(p.executing.candidate.name)} until ~{p.executing.end:%H:%M} UTC (estimated)")
    if not p.safe:
        out.print(f"[bold red]unsafe now[/] ({escape(p.unsafe_reason)}): planned as if it turns safe")
    table = Table("start", "end", "name", "priority", "slew s", "settle s", "readout s", box=None, header_style="bold")
    for s in p.slots:
        table.add_row(
            f"{s.start:%H:%M}",
            f"{s.end:%H:%M}",
            s.candidate.name,
            names[s.candidate.rank],
            f"{s.slew_s:.0f}",
            f"{s.settle_s:.0f}",
            f"{s.readout_s:.0f}",
        )
    out.print(table if p.slots else "nothing would run")
    for path, kind in ((svg, "svg"), (png, "png")):
        if path is None:
            continue
        try:
            if kind == "svg":
                path.write_text(plan_picture.svg(p, now=p.made_at))
            else:
                path.write_bytes(plan_picture.png(p, now=p.made_at))
        except OSError as e:
            raise fail(f"--{kind}: {path}: {e.strerror}") from None
        out.print(f"picture written to {path}")
