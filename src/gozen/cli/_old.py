"""The `gozen` command: parses, calls one function of a part, renders."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gozen.config import CONFIG_ENV, Config, ConfigError, dump_config, load_config
from gozen.durations import uptime_words

app = typer.Typer(
    help="gozen: the back-end of a high-cadence wide-field survey telescope.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show or check gozen.yaml.", no_args_is_help=True)
db_app = typer.Typer(help="The database: migrations and schema docs.", no_args_is_help=True)
web_app = typer.Typer(help="Web users and API tokens.", no_args_is_help=True)
daq_app = typer.Typer(help="Data acquisition: exposures and their accounting.", no_args_is_help=True)
transfer_app = typer.Typer(help="Copies to storage nodes and the DAQ janitor.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(web_app, name="web")
app.add_typer(daq_app, name="daq")
app.add_typer(transfer_app, name="transfer")
queue_app = typer.Typer(help="Queue observation: submit recipes, list, cancel, mode, plan.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

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


def fail(message: str, code: int = 2) -> typer.Exit:
    # Messages quote config values and YAML text: `[...]` in them is text, never rich markup.
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True)
    return typer.Exit(code)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, markup=True)


def _config(ctx: typer.Context) -> Config:
    try:
        return load_config(ctx.obj.get("config") if ctx.obj else None)
    except ConfigError as e:
        raise fail(str(e)) from None


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help=f"gozen.yaml (default: ${CONFIG_ENV}, else the built-in simulated observatory)"
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
    ctx.obj = {"config": str(config) if config else None}


# -- config ---------------------------------------------------------------
@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective config (the file's values with every default filled in)."""
    typer.echo(dump_config(_config(ctx)), nl=False)


@config_app.command("check")
def config_check(file: Path) -> None:
    """Exit 0 if FILE is a valid gozen.yaml, else 2 with each wrong key path and why."""
    from gozen.config_warnings import config_warnings

    try:
        cfg = load_config(file)
    except ConfigError as e:
        raise fail(str(e)) from None
    for line in config_warnings(cfg):
        warn(line)
    out.print(
        f"{file}: OK ({len(cfg.hosts)} hosts, {len(cfg.camera.chips)} chips, "
        f"{len(cfg.daq_volumes)} DAQ volumes, {len(cfg.storage_nodes)} storage nodes)",
        markup=False,
        highlight=False,
    )


# -- db -------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = "head") -> None:
    """Run the migrations up to REVISION (default: the newest)."""
    from gozen.db.engine import make_engine
    from gozen.db.migrate import current_revision, upgrade

    cfg = _config(ctx)
    engine = make_engine(cfg.database_url)
    upgrade(engine, revision)
    out.print(f"database {engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")


@db_app.command("docs")
def db_docs(output: Annotated[Path | None, typer.Option("--output", "-o")] = None) -> None:
    """Write the schema's documentation (from the table and column comments) as Markdown."""
    from gozen.db.docs import schema_markdown

    text = schema_markdown()
    if output:
        output.write_text(text)
    else:
        typer.echo(text, nl=False)


# -- supervision ------------------------------------------------------------
@app.command()
def up(
    ctx: typer.Context, host: Annotated[str | None, typer.Option(help="Which configured host this is")] = None
) -> None:
    """Migrate the database and run this host's supervisord (and so every gozen program) in the foreground."""
    from gozen.config_warnings import config_warnings
    from gozen.db.engine import make_engine
    from gozen.db.migrate import upgrade
    from gozen.supervise.up import exec_supervisord, prepare, this_host
    from gozen.web.auth import ensure_default_admin

    cfg = _config(ctx)
    try:
        me = this_host(cfg, host)
    except ConfigError as e:
        raise fail(str(e)) from None
    for line in config_warnings(cfg):
        warn(line)
    upgrade(make_engine(cfg.database_url))
    config_file = ctx.obj.get("config") or os.environ.get(CONFIG_ENV)
    try:
        conf = prepare(cfg, me, Path(config_file) if config_file else None)
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
    """Every host's programs: state, uptime, pid (hosts asked concurrently over XML-RPC)."""
    from gozen.supervise.client import fetch_all

    cfg = _config(ctx)
    hosts = fetch_all(cfg.hosts, timeout_s=timeout)
    if as_json:
        typer.echo(json.dumps([asdict(h) for h in hosts], default=str, indent=2))
    else:
        table = Table("host", "group:program", "state", "uptime", "pid", box=None, header_style="bold")
        for h in hosts:
            if not h.reachable:
                table.add_row(h.host, "", "[bold red]UNREACHABLE[/]", "", f"[red]{escape(h.error or '')}[/]")
            for p in h.processes:
                style = STATE_STYLE.get(p.state, "")
                table.add_row(h.host, p.full_name, f"[{style}]{p.state}[/]", uptime_words(p.uptime_s), str(p.pid or ""))
        out.print(table)
    if any(not h.reachable for h in hosts):
        raise typer.Exit(1)


def _this_host(cfg: Config, name: str | None) -> str:
    from gozen.supervise.up import this_host

    try:
        return this_host(cfg, name).name
    except ConfigError as e:
        raise fail(str(e)) from None


def _act(ctx: typer.Context, action: Literal["start", "stop", "restart"], target: str) -> None:
    from gozen.supervise.client import HostUnreachable, ProcessActionError, act

    cfg = _config(ctx)
    try:
        t = act(cfg, action, target)
    except (ConfigError, ProcessActionError, HostUnreachable) as e:
        raise fail(str(e), code=1) from None
    out.print(f"{action}: {t.host.name}:{t.program} done")


@app.command()
def start(ctx: typer.Context, target: Annotated[str, typer.Argument(help="HOST:GROUP:NAME or HOST:GROUP:*")]) -> None:
    """Start a program (or a whole group) on a host."""
    _act(ctx, "start", target)


@app.command()
def stop(ctx: typer.Context, target: Annotated[str, typer.Argument(help="HOST:GROUP:NAME or HOST:GROUP:*")]) -> None:
    """Stop a program (or a whole group) on a host."""
    _act(ctx, "stop", target)


@app.command()
def restart(ctx: typer.Context, target: Annotated[str, typer.Argument(help="HOST:GROUP:NAME or HOST:GROUP:*")]) -> None:
    """Restart a program (or a whole group) on a host."""
    _act(ctx, "restart", target)


@app.command()
def run(
    ctx: typer.Context,
    component: Annotated[
        str, typer.Argument(help="dashboard | event-listener | daq-control | daq-readout-NN | daq-writer-NN")
    ],
) -> None:
    """Run one gozen program in the foreground (what supervisord starts)."""
    from gozen.components import component as find_component

    runner = find_component(component)
    if runner is None:
        raise fail(
            f"unknown component {component!r} (known: dashboard, event-listener, daq-control, "
            "daq-readout-NN, daq-writer-NN)"
        )
    runner(_config(ctx))


# -- daq --------------------------------------------------------------------
@daq_app.command("expose")
def daq_expose(
    ctx: typer.Context,
    object_: Annotated[str, typer.Option("--object", help="OBJECT: target or field name")],
    frames: Annotated[
        int | None, typer.Option(help="Frames per exposure (default: camera.frames_per_exposure)")
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="Exposures, back to back")] = 1,
    data_type: Annotated[str, typer.Option("--type", help="OBJECT, FLAT or DARK")] = "OBJECT",
    fps: Annotated[float | None, typer.Option(help="Frames per second (default: camera.fps)")] = None,
    ra: Annotated[float | None, typer.Option(help="Pointing RA, deg")] = None,
    dec: Annotated[float | None, typer.Option(help="Pointing Dec, deg")] = None,
    project: str = "survey",
    observer: str = "gozen",
    wait: Annotated[bool, typer.Option(help="Wait with a progress bar until every file is written")] = True,
) -> None:
    """Run exposures with the DAQ programs that `gozen up` started."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from gozen.daq.catalog import ExposureRequest, exposure_progress, request_exposures
    from gozen.db.engine import make_engine

    cfg = _config(ctx)
    try:
        req = ExposureRequest(
            object=object_,
            n_frames=frames or cfg.camera.frames_per_exposure,
            fps=fps or cfg.camera.fps,
            data_type=data_type.upper(),
            ra_deg=ra,
            dec_deg=dec,
            project=project,
            observer=observer,
        )
    except ValueError as e:
        raise fail(str(e)) from None
    engine = make_engine(cfg.database_url)
    ids = request_exposures(engine, req, count)
    out.print(f"queued exposures {ids[0]}..{ids[-1]} ({count} x {req.n_frames} frames at {req.fps:g} fps)")
    if not wait:
        return
    expected = count * len(cfg.camera.chips)
    stall_s = 30 + cfg.daq.frame_timeout_s * 3
    with Progress(TextColumn("files"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=out) as bar:
        task = bar.add_task("files", total=expected)
        last_change, last_files = time.monotonic(), -1
        while True:
            files, _, states = exposure_progress(engine, ids)
            bar.update(task, completed=files)
            if all(st in ("done", "incomplete", "failed") for st in states.values()):
                break
            if files != last_files:
                last_change, last_files = time.monotonic(), files
            elif time.monotonic() - last_change > stall_s:
                raise fail(f"no progress for {stall_s:.0f} s: are the daq programs running? (gozen ps)", code=1)
            time.sleep(0.3)
    from gozen.daq.catalog import daq_stats

    _print_stats(daq_stats(engine, exp_ids=ids))


def _print_stats(st: Any) -> None:
    table = Table("", "", box=None, show_header=False)
    for name, value in (
        ("exposures", st.exposures),
        ("files", st.files),
        ("written", f"{st.bytes / 1e9:.2f} GB at {st.mb_per_s:.1f} MB/s"),
        ("frames expected", st.frames_expected),
        ("frames missing", st.frames_missing),
        ("frames damaged", st.frames_damaged),
        ("frames dropped (ring full)", st.frames_dropped),
        ("chips not recognised", st.chips_unrecognised),
        ("error rate", f"{st.error_rate:.2e}"),
    ):
        bad = name.startswith(("frames m", "frames da", "frames dr", "chips")) and value
        table.add_row(name, f"[red]{value}[/]" if bad else str(value))
    out.print(table)


@daq_app.command("stats")
def daq_stats_cmd(
    ctx: typer.Context,
    hours: Annotated[float, typer.Option(help="Look back this many hours")] = 24.0,
) -> None:
    """Rates and error counts of the DAQ: files, MB/s, frames missing, damaged and dropped."""
    from datetime import UTC, datetime, timedelta

    from gozen.daq.catalog import daq_stats
    from gozen.db.engine import make_engine

    engine = make_engine(_config(ctx).database_url)
    st = daq_stats(engine, since=datetime.now(UTC) - timedelta(hours=hours))
    out.print(f"last {hours:g} h:")
    _print_stats(st)


# -- transfer ---------------------------------------------------------------
@transfer_app.command("status")
def transfer_status(ctx: typer.Context) -> None:
    """Backlog and copy rate per storage node, the archive's progress, the oldest file short of copies."""
    from datetime import UTC, datetime

    from gozen.db.engine import make_engine
    from gozen.transfer.catalog import RATE_WINDOW, backlog, export_counts, failed_copies

    engine = make_engine(_config(ctx).database_url)
    nodes, unplaced, oldest, n_files = backlog(engine)
    n_failed, failures = failed_copies(engine)
    minutes = RATE_WINDOW.total_seconds() / 60
    table = Table(
        "node",
        "queued",
        "copying",
        "verified",
        "verified GB",
        f"MB/s ({minutes:g} min)",
        "failed",
        "expired",
        box=None,
        header_style="bold",
    )
    for n in nodes:
        table.add_row(
            n.node,
            str(n.queued),
            str(n.copying),
            str(n.verified),
            f"{n.verified_bytes / 1e9:.2f}",
            f"{n.rate_mb_s:.1f}",
            f"[red]{n.failed}[/]" if n.failed else "0",
            str(n.expired),
        )
    out.print(f"{n_files} files catalogued; {unplaced} copies waiting for a node")
    if n_failed:
        out.print(
            f"[red]{n_failed} copies failed for good[/] (no source left to copy from; `gozen audit` retries them)"
        )
        for name, why in failures:
            out.print(f"  failed: {escape(name)}: {escape(why)}")
    out.print(table)
    exports = export_counts(engine)
    if exports:
        out.print("archive: " + ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in sorted(exports.items())))
    if oldest is not None:
        age = datetime.now(UTC) - oldest
        out.print(f"oldest file not yet fully replicated: registered {age.total_seconds():.0f} s ago")
    else:
        out.print("every catalogued file has all its verified copies")


@transfer_app.command("janitor")
def transfer_janitor(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="DAQ host whose volumes to sweep")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be deleted")] = False,
) -> None:
    """One janitor pass over the DAQ volumes (what transfer:janitor does every transfer.janitor_every_s)."""
    from gozen.db.engine import make_engine
    from gozen.transfer.janitor import sweep

    cfg = _config(ctx)
    me = _this_host(cfg, host)
    deleted = sweep(cfg, make_engine(cfg.database_url), me, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for d in deleted:
        out.print(f"{verb} {d.path} ({d.size_bytes / 1e6:.1f} MB, {d.replicas} verified replicas)")
    out.print(f"{verb} {len(deleted)} files, {sum(d.size_bytes for d in deleted) / 1e9:.2f} GB")


@transfer_app.command("export")
def transfer_export(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Storage host whose replicas to export")] = None,
) -> None:
    """One archive-export pass (what transfer:export does): package, send, verify, read receipts."""
    from gozen.db.engine import make_engine
    from gozen.transfer.export import Exporter

    cfg = _config(ctx)
    if cfg.archive is None:
        err.print("archive: not configured (null): nothing to export")
        raise typer.Exit(2)
    r = Exporter(cfg, make_engine(cfg.database_url), _this_host(cfg, host)).run_once()
    out.print(
        f"packaged {r.packaged} (not selected {r.not_selected}), sent and verified {r.exported}, "
        f"acknowledged {r.acknowledged}, refused {r.rejected}"
    )
    for why in r.errors:
        err.print(f"[red]{escape(why)}[/]")
    raise typer.Exit(1 if r.errors else 0)


@transfer_app.command("retention")
def transfer_retention(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Storage host whose nodes to trim")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed")] = False,
) -> None:
    """One retention pass over this host's storage nodes (max_bytes, max_age_days)."""
    from gozen.db.engine import make_engine
    from gozen.transfer.retention import Retention

    cfg = _config(ctx)
    removed = Retention(cfg, make_engine(cfg.database_url), _this_host(cfg, host)).sweep(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for d in removed:
        out.print(f"{verb} {d.node}:{d.path} ({d.size_bytes / 1e6:.1f} MB, {d.why})")
    out.print(f"{verb} {len(removed)} replicas, {sum(d.size_bytes for d in removed) / 1e9:.2f} GB")


@app.command()
def audit(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option(help="Queue bad or missing replicas to be copied again")] = True,
    host: Annotated[str | None, typer.Option(help="DAQ host whose copies to check too")] = None,
) -> None:
    """Check the catalog against the disks: every verified copy is read back and checksummed."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from gozen.db.engine import make_engine
    from gozen.transfer.audit import audit as run_audit

    cfg = _config(ctx)
    me = _this_host(cfg, host)
    cols = (TextColumn("checking"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*cols, console=out, transient=True) as bar:
        task = bar.add_task("audit", total=None)
        rep = run_audit(
            cfg,
            make_engine(cfg.database_url),
            me,
            repair,
            lambda done, total: bar.update(task, completed=done, total=total),
        )
    table = Table("", "", box=None, show_header=False)
    for name, value in (
        ("files catalogued", rep.files),
        ("replicas checked", rep.replicas_checked),
        ("GB read", f"{rep.bytes_read / 1e9:.2f}"),
        ("replicas missing", len(rep.missing)),
        ("replicas corrupted", len(rep.corrupted)),
        ("DAQ copies missing", len(rep.daq_missing)),
        ("orphans (not catalogued)", len(rep.orphans)),
        ("damaged replicas kept aside", len(rep.quarantined)),
        ("damaged replicas removed (good copy made)", rep.quarantine_cleared),
        ("queued to copy again", rep.requeued),
        ("replicas on other hosts (not read)", rep.elsewhere),
        ("files acknowledged by the archive", rep.archived),
        ("files short of copies", rep.unreplicated),
        ("  of which copies under way", rep.in_progress),
        ("  of which stuck (failed or waiting)", len(rep.short)),
        ("changed during the scan (skipped)", rep.moved),
        ("files lost", rep.lost),
    ):
        table.add_row(
            name,
            f"[red]{value}[/]"
            if value and name.startswith(("replicas m", "replicas c", "DAQ", "files lost", "  of which stuck"))
            else str(value),
        )
    out.print(table)
    for what, items in (
        ("missing", rep.missing),
        ("corrupted", rep.corrupted),
        ("DAQ copy missing", rep.daq_missing),
        ("short of copies", rep.short),
        ("lost", rep.lost_files),
        ("orphan", rep.orphans),
        ("kept aside", rep.quarantined),
    ):
        for item in items[:20]:
            out.print(f"  {what}: {escape(item)}")
    if not rep.clean:
        raise typer.Exit(1)


# -- web users --------------------------------------------------------------
@web_app.command("hash-password")
def web_hash_password(
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Print the password_hash to put under web.users in gozen.yaml."""
    from gozen.web.auth import hash_password

    typer.echo(hash_password(password))


@web_app.command("new-token")
def web_new_token(name: str) -> None:
    """Make an API token: prints the token (give it to the client) and the config lines (keep the hash)."""
    from gozen.web.auth import token_sha256

    token = secrets.token_urlsafe(32)
    typer.echo(
        f"token: {token}\nconfig:\n  web:\n    api_tokens:\n      - name: {name}\n"
        f"        token_sha256: {token_sha256(token)}\n        role: operator"
    )


if __name__ == "__main__":
    app()


# -- queue ------------------------------------------------------------------
def _queue_engine(ctx: typer.Context) -> tuple[Config, Any]:
    from gozen.db.engine import make_engine

    cfg = _config(ctx)
    return cfg, make_engine(cfg.database_url)


def _operator() -> str:
    """Who runs this command, for the event log: `<login> (cli)`."""
    import getpass

    try:
        return f"{getpass.getuser()} (cli)"
    except (KeyError, OSError):
        return "cli"


@queue_app.command("submit")
def queue_submit(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Recipe, YAML or JSON; - for standard input")],
    by: Annotated[str, typer.Option(help="Who submits it (for the history)")] = "cli",
) -> None:
    """Queue a recipe; every error is named by its field path (exit 2)."""
    import sys

    from gozen.queue import store
    from gozen.queue.recipe import RecipeError, load_recipe_text

    cfg, engine = _queue_engine(ctx)
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except OSError as e:
        raise fail(f"{file}: {e.strerror}") from None
    try:
        row = store.submit(engine, load_recipe_text(text, str(file), cfg.queue.max_steps), by, cfg.queue.positions())
    except RecipeError as e:
        raise fail(str(e)) from None
    out.print(f"queued {row.name} as {row.uuid}")


@queue_app.command("ls")
def queue_ls(ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The queue server's line, what executes, the queue in the order it would run (and why each waits)."""
    import json

    from gozen.queue.view import queue_view

    cfg, engine = _queue_engine(ctx)
    v = queue_view(cfg, engine)
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


@queue_app.command("show")
def queue_show(ctx: typer.Context, uuid: str) -> None:
    """A recipe, its progress and its full history."""
    from gozen.queue import store

    _, engine = _queue_engine(ctx)
    row = store.find(engine, uuid)
    if row is None:
        raise fail(f"uuid: no recipe {uuid!r} (or the prefix is not unique)")
    out.print(f"[bold]{row.name}[/] {row.uuid}\nstate {row.state}; priority {row.priority}; progress {row.progress}")
    if row.message:
        out.print(row.message)
    for e in store.history(engine, row.uuid):
        out.print(f"  {e['time']:%Y-%m-%d %H:%M:%S}  {e['kind']:<11} {e['message']}")


@queue_app.command("cancel")
def queue_cancel(ctx: typer.Context, uuid: str, by: Annotated[str, typer.Option()] = "cli") -> None:
    """Cancel a queued recipe (an executing one is aborted)."""
    from gozen.queue import store
    from gozen.queue.recipe import RecipeError

    _, engine = _queue_engine(ctx)
    row = store.find(engine, uuid)
    if row is None:
        raise fail(f"uuid: no recipe {uuid!r} (or the prefix is not unique)")
    try:
        out.print(f"{row.name}: {store.cancel(engine, row.uuid, by)}")
    except RecipeError as e:
        raise fail(str(e)) from None


@queue_app.command("mode")
def queue_mode(ctx: typer.Context, mode: Annotated[str, typer.Argument(help="normal or maintenance")]) -> None:
    """normal: recipes run; maintenance: nothing starts (the running recipe finishes its step)."""
    from gozen.queue import store

    if mode not in ("normal", "maintenance"):
        raise fail(f"mode: must be normal or maintenance, got {mode!r}")
    _, engine = _queue_engine(ctx)
    store.set_mode(engine, mode, by=_operator())
    out.print(f"queue mode: {mode}")


@queue_app.command("abort")
def queue_abort(ctx: typer.Context, by: Annotated[str | None, typer.Option()] = None) -> None:
    """Abort the executing recipe at once."""
    from gozen.queue import store

    _, engine = _queue_engine(ctx)
    store.request_abort(engine, by=by or _operator())
    out.print("abort requested")


@queue_app.command("pause")
def queue_pause(ctx: typer.Context) -> None:
    """Start nothing new until resume."""
    from gozen.queue import store

    store.set_paused(_queue_engine(ctx)[1], True, by=_operator())
    out.print("queue paused")


@queue_app.command("resume")
def queue_resume(ctx: typer.Context) -> None:
    from gozen.queue import store

    store.set_paused(_queue_engine(ctx)[1], False, by=_operator())
    out.print("queue resumed")


@queue_app.command("plan")
def queue_plan(
    ctx: typer.Context,
    night: Annotated[str | None, typer.Option(help="YYYY-MM-DD, the evening's date (default: today)")] = None,
    svg: Annotated[Path | None, typer.Option(help="Also write the timeline picture here")] = None,
) -> None:
    """What would run when tonight: the queue played forward (safe weather assumed)."""
    from datetime import UTC, date, datetime

    from gozen.queue.recipe import PRIORITY_OF_RANK as names
    from gozen.queue.view import night_plan
    from gozen.web.plots import timeline

    cfg, engine = _queue_engine(ctx)
    try:
        n = date.fromisoformat(night) if night else datetime.now(UTC).date()
    except ValueError:
        raise fail(f"--night: not a date (YYYY-MM-DD): {night!r}") from None
    start, end, slots = night_plan(cfg, engine, n)
    out.print(f"night of {n}: dark (Sun below -12 deg) {start:%H:%M}-{end:%H:%M} UTC")
    table = Table("start", "end", "name", "priority", box=None, header_style="bold")
    for s in slots:
        table.add_row(f"{s.start:%H:%M}", f"{s.end:%H:%M}", s.candidate.name, names[s.candidate.rank])
    out.print(table if slots else "nothing would run")
    if svg:
        bars = [(s.candidate.name, names[s.candidate.rank], s.start, s.end) for s in slots]
        svg.write_text(timeline(bars, start, end, f"night of {n}"))
        out.print(f"timeline written to {svg}")
