"""`gozen daq expose | stats`: exposures with the DAQ programs `gozen up` started, and their accounting."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from gozen.cli.console import fail, out
from gozen.cli.context import config, engine

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
    hours: Annotated[float, typer.Option(help="Look back this many hours")] = 24.0,
) -> None:
    """Rates and error counts of the DAQ: files, MB/s, frames missing, damaged and dropped."""
    from datetime import UTC, datetime, timedelta

    from gozen.daq.stats import daq_stats

    st = daq_stats(engine(ctx), since=datetime.now(UTC) - timedelta(hours=hours))
    out.print(f"last {hours:g} h:")
    _print_stats(st)
