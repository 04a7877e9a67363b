"""`gozen up | ps | start | stop | restart | run`: this host's supervisord and the programs it runs."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand

from gozen.cli.console import fail, out, warn
from gozen.cli.context import config, config_file, engine, this_host
from gozen.config import ConfigError
from gozen.durations import uptime_words

app = typer.Typer()

STATE_STYLE = {
    "RUNNING": "green",
    "STARTING": "yellow",
    "STOPPING": "yellow",
    "BACKOFF": "yellow",
    "STOPPED": "dim",
    "EXITED": "red",
    "FATAL": "bold red",
    "UNKNOWN": "bold red",
}


@app.command()
def up(
    ctx: typer.Context, host: Annotated[str | None, typer.Option(help="Which configured host this is")] = None
) -> None:
    """Migrate the database and run this host's supervisord (and so every gozen program) in the foreground."""
    from gozen.config_warnings import config_warnings
    from gozen.db.migrate import upgrade
    from gozen.db.views import set_site_time
    from gozen.supervise.up import exec_supervisord, prepare
    from gozen.web.auth import ensure_default_admin

    cfg = config(ctx)
    me = this_host(ctx, host)
    for line in config_warnings(cfg):
        warn(line)
    db = engine(ctx, create=True)
    upgrade(db)
    set_site_time(db, cfg.site.timezone)  # the BI views name nights in the site's time zone
    given = config_file(ctx)
    try:
        conf = prepare(cfg, me, Path(given) if given else None)
    except ConfigError as e:
        raise fail(str(e)) from None
    out.print(f"gozen up: host [bold]{me.name}[/bold], data in {cfg.data_dir}, supervisord config {conf}")
    if "web" in me.roles:
        out.print(f"web: http://{cfg.web.bind}:{cfg.web.port}/")
        pw_file = ensure_default_admin(cfg)
        if pw_file:
            out.print(f"no web users configured: log in as [bold]admin[/bold] with the password in {pw_file}")
    sys.stdout.flush()
    exec_supervisord(conf)


@app.command()
def ps(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each host")] = 3.0,
) -> None:
    """Every host's programs: state, uptime, pid (hosts asked concurrently over XML-RPC). A host that
    does not answer is one row with the reason, then its last known programs (from fleet:watch)."""
    from gozen.supervise.client import fetch_all

    hosts = fetch_all(config(ctx).hosts, timeout_s=timeout)
    seen = _last_seen(ctx) if any(not h.reachable for h in hosts) else {}
    if as_json:
        rows = [{**asdict(h), "last_seen": None if h.reachable else _seen_json(seen.get(h.host))} for h in hosts]
        typer.echo(json.dumps(rows, default=str, indent=2))
    else:
        table = Table("host", "group:program", "state", "uptime", "pid", box=None, header_style="bold")
        for h in hosts:
            if not h.reachable:
                _unreachable_rows(table, h.host, h.error or "", seen.get(h.host))
            for p in h.processes:
                style = STATE_STYLE.get(p.state, "")
                table.add_row(h.host, p.full_name, f"[{style}]{p.state}[/]", uptime_words(p.uptime_s), str(p.pid or ""))
        out.print(table)
    if any(not h.reachable for h in hosts):
        raise typer.Exit(1)


def _last_seen(ctx: typer.Context) -> dict[str, Any]:
    """What fleet:watch last saw of each host; nothing when the database cannot say (ps still works)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from gozen.db.engine import make_engine
    from gozen.supervise.fleet import last_seen

    url = make_url(config(ctx).database_url)
    if url.get_backend_name() == "sqlite" and not Path(str(url.database)).exists():
        return {}  # no database here (yet): nothing was seen
    try:
        return last_seen(make_engine(url.render_as_string(hide_password=False)))
    except SQLAlchemyError:
        return {}


def _seen_json(last: Any) -> dict[str, Any] | None:
    return None if last is None else asdict(last)


def _unreachable_rows(table: Table, host: str, error: str, last: Any) -> None:
    """One clean row for a host that does not answer, then its last known programs, greyed."""
    why = error.removeprefix(f"{host}: ")
    since = f" since {last.unreachable_since:%H:%M:%S} UTC" if last and last.unreachable_since else ""
    table.add_row(host, f"[red]unreachable{since}: {escape(why)}[/]", "[bold red]UNREACHABLE[/]", "", "")
    if last is None or not last.programs:
        return
    at = f"{last.programs_at:%H:%M:%S}" if last.programs_at else "?"
    for p in last.programs:
        table.add_row(
            f"[dim]{host}[/]",
            f"[dim]{escape(p.name)}[/]",
            f"[dim]{p.state} (last seen {at})[/]",
            f"[dim]{uptime_words(p.uptime_s)}[/]",
            f"[dim]{p.pid or ''}[/]",
        )


def _act(ctx: typer.Context, action: Literal["start", "stop", "restart"], target: str) -> None:
    from gozen.supervise.client import HostUnreachable, ProcessActionError, act

    try:
        t = act(config(ctx), action, target)
    except (ConfigError, ProcessActionError, HostUnreachable) as e:
        raise fail(str(e), code=1) from None
    out.print(f"{action}: {t.host.name}:{t.program} done")


Target = Annotated[str, typer.Argument(help="HOST:GROUP:NAME or HOST:GROUP:*")]


@app.command()
def start(ctx: typer.Context, target: Target) -> None:
    """Start a program (or a whole group) on a host."""
    _act(ctx, "start", target)


@app.command()
def stop(ctx: typer.Context, target: Target) -> None:
    """Stop a program (or a whole group) on a host."""
    _act(ctx, "stop", target)


@app.command()
def restart(ctx: typer.Context, target: Target) -> None:
    """Restart a program (or a whole group) on a host."""
    _act(ctx, "restart", target)


class RunCommand(TyperCommand):
    """`gozen run`, whose help ends with the registry: every program, where it runs, what it does."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from gozen.supervise.programs import registry

        super().format_help(ctx, formatter)
        table = Table("program", "runs on hosts with role", "what it does", box=None, header_style="bold")
        for p in registry(config(ctx)):
            table.add_row(p.full_name, ", ".join(sorted(p.roles)) or "(every host)", p.summary)
        out.print(table)


@app.command(cls=RunCommand)
def run(
    ctx: typer.Context,
    program: Annotated[str, typer.Argument(help="GROUP:NAME of a program of the registry (listed below)")],
) -> None:
    """Run one gozen program in the foreground, as supervisord does (as host $GOZEN_HOST, else this machine)."""
    from gozen.supervise.launch import run_program
    from gozen.supervise.programs import UnknownProgram

    try:
        code = run_program(config(ctx), program)
    except UnknownProgram as e:
        raise fail(str(e)) from None
    raise typer.Exit(code)
