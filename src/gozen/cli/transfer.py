"""`gozen transfer status | janitor | export | retention`: copies to storage nodes, the DAQ janitor,
the archive export and the storage nodes' retention, each one pass at a time."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine

from gozen.cli.console import err, out
from gozen.cli.context import config, engine, this_host

app = typer.Typer(help="Copies to storage nodes and the DAQ janitor.", no_args_is_help=True)


@app.command("status")
def transfer_status(ctx: typer.Context) -> None:
    """Backlog and copy rate per storage node, the archive's progress, the oldest file short of copies."""
    from datetime import UTC, datetime

    from gozen.transfer.catalog import RATE_WINDOW, backlog, export_counts, failed_copies

    db = engine(ctx)
    nodes, unplaced, oldest, n_files = backlog(db)
    n_failed, failures = failed_copies(db)
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
    out.print(f"{n_files} files catalogued; {unplaced} copies not yet on a node")
    _waiting(db)
    if n_failed:
        out.print(
            f"[red]{n_failed} copies failed for good[/] (no source left to copy from; `gozen audit` retries them)"
        )
        for name, why in failures:
            out.print(f"  [red]failed (gave up)[/]: {escape(name)}: {escape(why)}")
    out.print(table)
    exports = export_counts(db)
    if exports:
        out.print("archive: " + ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in sorted(exports.items())))
    if oldest is not None:
        age = datetime.now(UTC) - oldest
        out.print(f"oldest file not yet fully replicated: registered {age.total_seconds():.0f} s ago")
    else:
        out.print("every catalogued file has all its verified copies")


def _waiting(db: Engine) -> None:
    """Copies that failed and wait for their retry: not to be mistaken for copies given up."""
    from gozen.transfer import catalog

    waiting_copies = getattr(catalog, "waiting_copies", None)
    if waiting_copies is None:
        return
    n, soonest = waiting_copies(db)
    if not n:
        return
    out.print(f"[yellow]{n} copies waiting for a node[/] (they failed and are tried again)")
    for name, why, retry_in_s in soonest:
        out.print(f"  waiting for a node (retry in {max(0.0, retry_in_s):.0f} s): {escape(name)}: {escape(why)}")


@app.command("janitor")
def transfer_janitor(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="DAQ host whose volumes to sweep")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be deleted")] = False,
) -> None:
    """One janitor pass over the DAQ volumes (what transfer:janitor does every transfer.janitor_every_s)."""
    from gozen.transfer.janitor import sweep

    deleted = sweep(config(ctx), engine(ctx), this_host(ctx, host).name, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for d in deleted:
        out.print(f"{verb} {d.path} ({d.size_bytes / 1e6:.1f} MB, {d.replicas} verified replicas)")
    out.print(f"{verb} {len(deleted)} files, {sum(d.size_bytes for d in deleted) / 1e9:.2f} GB")


@app.command("export")
def transfer_export(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Storage host whose replicas to export")] = None,
) -> None:
    """One archive-export pass (what transfer:export does): package, send, verify, read receipts."""
    from gozen.service import make_context
    from gozen.transfer.export import Exporter

    cfg = config(ctx)
    if cfg.archive is None:
        err.print("archive: not configured (null): nothing to export")
        raise typer.Exit(2)
    me = this_host(ctx, host).name
    r = Exporter(make_context(cfg, "transfer:export", host=me, engine=engine(ctx))).export()
    out.print(
        f"packaged {r.packaged} (not selected {r.not_selected}), sent and verified {r.exported}, "
        f"acknowledged {r.acknowledged}, refused {r.rejected}"
    )
    for why in r.errors:
        err.print(f"[red]{escape(why)}[/]")
    raise typer.Exit(1 if r.errors else 0)


@app.command("retention")
def transfer_retention(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Storage host whose nodes to trim")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed")] = False,
) -> None:
    """One retention pass over this host's storage nodes (max_bytes, max_age_days)."""
    from gozen.service import make_context
    from gozen.transfer.retention import Retention

    me = this_host(ctx, host).name
    retention = Retention(make_context(config(ctx), "transfer:retention", host=me, engine=engine(ctx)))
    removed = retention.sweep(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for d in removed:
        out.print(f"{verb} {d.node}:{d.path} ({d.size_bytes / 1e6:.1f} MB, {d.why})")
    out.print(f"{verb} {len(removed)} replicas, {sum(d.size_bytes for d in removed) / 1e9:.2f} GB")
