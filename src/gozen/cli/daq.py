"""`gozen daq expose | stats`: exposures with the DAQ programs `gozen up` started, and their accounting."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from gozen.cli.console import fail, out
from gozen.cli.context import config, engine

PLAIN: dict[str, Any] = {"box": None, "header_style": "bold"}  # as `gozen ps`: columns a script can cut
app = typer.Typer(help="Data acquisition: exposures and their accounting.", no_args_is_help=True)


@app.command("expose")
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
    from gozen.daq.stats import daq_stats

    cfg = config(ctx)
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
    db = engine(ctx)
    ids = request_exposures(db, req, count)
    out.print(f"queued exposures {ids[0]}..{ids[-1]} ({count} x {req.n_frames} frames at {req.fps:g} fps)")
    if not wait:
        return
    expected = count * len(cfg.camera.chips)
    stall_s = 30 + cfg.daq.frame_timeout_s * 3
    with Progress(TextColumn("files"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=out) as bar:
        task = bar.add_task("files", total=expected)
        last_change, last_files = time.monotonic(), -1
        while True:
            files, _, states = exposure_progress(db, ids)
            bar.update(task, completed=files)
            if all(st in ("done", "incomplete", "failed") for st in states.values()):
                break
            if files != last_files:
                last_change, last_files = time.monotonic(), files
            elif time.monotonic() - last_change > stall_s:
                raise fail(f"no progress for {stall_s:.0f} s: are the daq programs running? (gozen ps)", code=1)
            time.sleep(0.3)
    _print_stats(daq_stats(db, exp_ids=ids))


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


@app.command("stats")
def daq_stats_cmd(
    ctx: typer.Context,
    hours: Annotated[
        float, typer.Option(min=0.01, max=24 * 31, help="Per host and chip: look back this many hours")
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Tonight's totals, then per DAQ host and per chip: frames read, missing, damaged, dropped, MB/s, last file."""
    import json
    from dataclasses import asdict
    from datetime import UTC, datetime, timedelta

    from gozen.daq.stats import daq_overview, daq_stats, night_start, overview_json

    cfg, db = config(ctx), engine(ctx)
    now = datetime.now(UTC)
    night_t0 = night_start(now, cfg.site.lon_deg)
    tonight = daq_stats(db, since=night_t0)
    ov = daq_overview(cfg, db, now - timedelta(hours=hours), now)
    if as_json:
        doc = overview_json(ov) | {"tonight": asdict(tonight) | {"since": night_t0, "mb_per_s": tonight.mb_per_s}}
        typer.echo(json.dumps(doc, default=str, indent=2))
        return
    out.print(f"tonight (since {night_t0:%Y-%m-%d %H:%M} UTC, local noon):")
    if tonight.exposures:
        _print_stats(tonight)
    else:
        out.print("  no exposure yet")
    if not any(c.seen for c in ov.chips):
        out.print(f"last {hours:g} h: no DAQ data (no file and no readout report of an exposure that started then)")
        return
    out.print(f"\nlast {hours:g} h, per DAQ host:")
    _print_wide(_hosts_table(ov))
    out.print(f"\nlast {hours:g} h, per chip:")
    _print_wide(_chips_table(ov))


def _print_wide(table: Table) -> None:
    """As wide as the table needs, whatever the terminal: each row one line a script can cut into columns."""
    width = out.width
    out.width = max(width, TABLE_WIDTH)
    try:
        out.print(table)
    finally:
        out.width = width


TABLE_WIDTH = 400


def _board(v: Any, unit: str) -> str:
    if v is None:
        return "[dim]–[/]"
    text = f"{v.value:g}{unit} [dim]{v.age_words}[/]"
    return f"[yellow]{text} (stale)[/]" if v.stale else text


def _count(n: int) -> str:
    return f"[red]{n}[/]" if n else "0"


def _last(name: str | None, at: Any) -> str:
    return f"{name} [dim]{at:%H:%M:%S}[/]" if name else "[dim]–[/]"


def _hosts_table(ov: Any) -> Table:
    t = Table(
        "host", "up", "chips", "frames/s", "ring fill", "MB/s", "files", "missing", "dropped", "last file", **PLAIN
    )
    for h in ov.hosts:
        up = "[green]up[/]" if h.up else ("[red]down: " + ", ".join(h.silent) + "[/]" if h.heartbeats else "[dim]–[/]")
        t.add_row(
            h.host if h.configured else f"{h.host} [dim](not configured)[/]",
            up,
            str(len(h.chips)),
            _board(h.frames_per_s, "/s"),
            _board(h.ring_fill_pct, "%"),
            f"{h.mb_per_s:.1f}",
            str(h.files),
            _count(h.frames_missing),
            _count(h.frames_dropped),
            _last(h.last_file, h.last_file_at),
        )
    return t


def _chips_table(ov: Any) -> Table:
    from gozen.daq.stats import CHIP_STATE_WORDS, ChipState

    t = Table(
        "chip",
        "host",
        "state",
        "read",
        "missing",
        "damaged",
        "dropped",
        "files",
        "MB/s",
        "overscan",
        "last file",
        **PLAIN,
    )
    style = {ChipState.OK: "green", ChipState.NO_DATA: "dim", ChipState.NOT_CONFIGURED: "dim"}
    for c in ov.chips:
        if not (c.configured or c.seen):
            continue
        overscan = (
            "[dim]–[/]" if c.overscan_median is None else f"{c.overscan_median:.1f} ± {c.overscan_noise or 0:.2f}"
        )
        t.add_row(
            str(c.det_id),
            c.host or "[dim]–[/]",
            f"[{style.get(c.state, 'red')}]{CHIP_STATE_WORDS[c.state]}[/]",
            str(c.frames_read),
            _count(c.frames_missing),
            _count(c.frames_damaged),
            _count(c.frames_dropped),
            str(c.files),
            f"{c.mb_per_s:.1f}",
            overscan,
            _last(c.last_file, c.last_file_at),
        )
    return t
