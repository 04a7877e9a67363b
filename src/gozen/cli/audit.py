"""`gozen audit`: the catalog checked against the disks, every verified copy here read back, proofs renewed."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gozen.cli.console import out
from gozen.cli.context import config, engine, this_host

app = typer.Typer()


@app.command()
def audit(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option(help="Queue bad or missing replicas to be copied again")] = True,
    host: Annotated[
        str | None, typer.Option(help="This host (default: $GOZEN_HOST, else the only host, else this machine)")
    ] = None,
) -> None:
    """Check the catalog against the disks: every verified copy on this host's nodes is read back from the
    disk and its proof renewed; other hosts' copies by an rsync checksum pass against a DAQ copy here, else
    by the audit on their host. Whether every file has its copies is counted over the whole catalog."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from gozen.transfer.audit import audit as run_audit

    cfg = config(ctx)
    me = this_host(ctx, host).name
    db = engine(ctx)
    cols = (TextColumn("checking"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*cols, console=out, transient=True) as bar:
        task = bar.add_task("audit", total=None)
        rep = run_audit(cfg, db, me, repair, lambda done, total: bar.update(task, completed=done, total=total))
    table = Table("", "", box=None, show_header=False)
    for name, value in (
        ("files catalogued", rep.files),
        ("replicas read back here", rep.replicas_checked),
        ("GB read", f"{rep.bytes_read / 1e9:.2f}"),
        ("replicas on other hosts checked by rsync checksum", rep.rsync_checked),
        ("proofs renewed", rep.proofs_renewed),
        ("replicas missing", len(rep.missing)),
        ("replicas corrupted", len(rep.corrupted)),
        ("DAQ copies missing", len(rep.daq_missing)),
        ("orphans (not catalogued)", len(rep.orphans)),
        ("damaged replicas kept aside", len(rep.quarantined)),
        ("damaged replicas removed (good copy made)", rep.quarantine_cleared),
        ("queued to copy again", rep.requeued),
        ("replicas on other hosts (left to their audit)", rep.elsewhere),
        ("other hosts' replicas differing (rsync)", len(rep.differing)),
        ("verified replicas without a recent proof", rep.stale_proofs),
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
            if value
            and name.startswith(("replicas m", "replicas c", "DAQ", "files lost", "  of which stuck", "other hosts'"))
            else str(value),
        )
    out.print(table)
    for owner, n in sorted(rep.elsewhere_hosts.items()):
        out.print(f"  {n} replicas on {escape(owner)}'s nodes: proven by `gozen audit` on {escape(owner)}")
    for why in rep.unreachable:
        out.print(f"  not reached: {escape(why)}")
    for what, items in (
        ("missing", rep.missing),
        ("corrupted", rep.corrupted),
        ("differs from the DAQ copy (its host's audit repairs it)", rep.differing),
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
