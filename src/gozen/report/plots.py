"""The nightly report's plots (matplotlib, Agg): each drawn on an Axes, so the same drawing makes
its own PNG and a panel of the overview posted to Slack. Empty data draws "no data", never fails.

Time axes are UTC below and the site's local time above.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402 - after choosing the backend
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from gozen.config import tomoe_chip_ids  # noqa: E402
from gozen.daq.focalplane import CHIP_H_DEG, CHIP_W_DEG, chip_center_deg  # noqa: E402
from gozen.report.facts import SAFETY_KEY, WEATHER_KEYS, NightFacts  # noqa: E402

DPI = 100
EPOCH = datetime.fromisoformat(mdates.get_epoch()).replace(tzinfo=UTC)
DAY = timedelta(days=1)
EXPOSURE_COLOURS = {"done": "#0969da", "incomplete": "#bc4c00", "armed": "#8c959f", "queued": "#8c959f"}
Draw = Callable[[Axes, NightFacts, ZoneInfo], None]


def no_data(ax: Axes, title: str, why: str = "no data") -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize=14, color="#888")
    ax.set_xticks([])
    ax.set_yticks([])


def time_axis(ax: Axes, facts: NightFacts, tz: ZoneInfo) -> None:
    """The span on x: UTC below, local time above."""
    ax.set_xlim(x(facts.start_at), x(facts.end_at))
    span_h = (facts.end_at - facts.start_at).total_seconds() / 3600
    fmt = "%H:%M" if span_h > 0.5 else "%H:%M:%S"
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=mdates.UTC))
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=8))
    ax.set_xlabel(f"UTC ({facts.start_at.astimezone(tz).strftime('%Z')} above)")
    top = ax.secondary_xaxis("top")
    top.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=8))
    top.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=tz))
    ax.grid(alpha=0.3)


def x(t: datetime) -> float:
    """A time as matplotlib's date number: days since its epoch (by arithmetic: date2num per point is slow)."""
    return (t - EPOCH) / DAY


def xs(ts: list[datetime]) -> list[float]:
    return [x(t) for t in ts]


def days(d: timedelta) -> float:
    return d.total_seconds() / 86400


def bins(facts: NightFacts, n: int = 60) -> tuple[list[datetime], timedelta]:
    width = (facts.end_at - facts.start_at) / n
    return [facts.start_at + i * width for i in range(n)], width


def draw_volume(ax: Axes, facts: NightFacts, tz: ZoneInfo) -> None:
    """Data written (cumulative GB) and the frame rate (frames/s, per bin of 1/60 of the span)."""
    title = "Data volume and frame rate"
    if not facts.files:
        return no_data(ax, title)
    total, times, ys = 0, [facts.start_at], [0.0]
    for f in facts.files:
        total += f.size_bytes
        times.append(f.created_at)
        ys.append(total / 1e9)
    ax.step(xs(times), ys, where="post", color="tab:blue")
    ax.set_ylabel("GB written (cumulative)", color="tab:blue")
    starts, width = bins(facts)
    frames = [0] * len(starts)
    for f in facts.files:
        i = min(len(starts) - 1, int((f.created_at - facts.start_at) / width))
        frames[max(0, i)] += f.frames_written
    rate = ax.twinx()
    rate.bar(
        xs(starts),
        [n / width.total_seconds() for n in frames],
        width=days(width),
        align="edge",
        alpha=0.35,
        color="tab:orange",
    )
    rate.set_ylabel("frames/s", color="tab:orange")
    ax.set_title(title)
    time_axis(ax, facts, tz)


def draw_lost(ax: Axes, facts: NightFacts, tz: ZoneInfo) -> None:
    """Frames lost per chip, each chip where it sits on the sky (north up, east left)."""
    from matplotlib import colormaps

    title = "Frames lost per chip"
    lost = facts.lost_per_chip()
    if not lost:
        return no_data(ax, title)
    worst = max(max(lost.values()), 1)
    cmap = colormaps["Reds"]
    for det in tomoe_chip_ids():
        x, y = chip_center_deg(det)
        n = lost.get(det)
        colour = "#eeeeee" if n is None else ("#dafbe1" if n == 0 else cmap(0.25 + 0.75 * n / worst))
        ax.add_patch(
            Rectangle(
                (x - CHIP_W_DEG / 2, y - CHIP_H_DEG / 2), CHIP_W_DEG, CHIP_H_DEG, facecolor=colour, edgecolor="#555"
            )
        )
        label = f"{det}" if n is None else f"{det}\n{n}"
        ink = "#999" if n is None else ("white" if n > worst / 2 else "black")
        ax.text(x, y, label, ha="center", va="center", fontsize=6, color=ink)
    for q, (qx, qy) in {1: (1, 1), 2: (-1, 1), 3: (-1, -1), 4: (1, -1)}.items():
        ax.text(qx * 2.9, qy * 2.65, f"Q{q}", ha="center", va="center", fontsize=10, weight="bold")
    ax.set_xlim(3.1, -3.1)  # east to the left, as on the sky
    ax.set_ylim(-2.85, 2.85)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{title} (total {facts.frames_lost}; grey: no files)")


def bands(points: list[tuple[datetime, Any]], end_at: datetime) -> list[tuple[datetime, datetime, Any]]:
    """Readings of a true/false key as runs of one value: (from, to, value), each until the next change."""
    runs: list[tuple[datetime, datetime, Any]] = []
    for t, v in points:
        if runs and runs[-1][2] == v and type(runs[-1][2]) is type(v):
            continue
        if runs:
            runs[-1] = (runs[-1][0], t, runs[-1][2])
        runs.append((t, end_at, v))
    return runs


def draw_weather(ax: Axes, facts: NightFacts, tz: ZoneInfo) -> None:
    """Weather values as lines, safe / unsafe as green and red bands behind them."""
    title = "Weather and safety"
    safety = facts.readings.get(SAFETY_KEY) or []
    weather = {k: facts.readings[k] for k in WEATHER_KEYS if facts.readings.get(k)}
    if not safety and not weather:
        return no_data(ax, title)
    for t, t_next, v in bands(safety, facts.end_at):
        colour = "#2da44e" if v is True else "#cf222e" if v is False else "#999999"
        ax.axvspan(x(t), x(t_next), color=colour, alpha=0.18, lw=0)
    for key, points in weather.items():
        numbers = [(t, float(v)) for t, v in points if isinstance(v, int | float) and not isinstance(v, bool)]
        if numbers:
            ax.plot(xs([t for t, _ in numbers]), [v for _, v in numbers], label=key.removeprefix("weather."))
    if weather:
        ax.legend(loc="upper left", fontsize=7)
    ax.set_ylabel("%, m/s, °C")
    ax.set_title(f"{title} (bands: green safe, red unsafe)")
    time_axis(ax, facts, tz)


def draw_recipes(ax: Axes, facts: NightFacts, tz: ZoneInfo) -> None:
    """A Gantt chart: one row per recipe, its runs as light bars and its exposures as dark ones."""
    title = "Recipes executed"
    names = list(dict.fromkeys([*facts.recipes(), *(r.name for r in facts.runs)]))
    if not names:
        return no_data(ax, title)
    row = {n: i for i, n in enumerate(names)}
    for r in facts.runs:
        end = r.end_at or facts.end_at
        ax.barh(
            row[r.name], days(end - r.start_at), left=x(r.start_at), height=0.8, color="#b6e3ff", edgecolor="#0969da"
        )
    for e in facts.exposures:
        end = e.end_at or e.start_at + timedelta(seconds=1)
        colour = EXPOSURE_COLOURS.get(e.state, "#cf222e")
        ax.barh(row[e.recipe], days(end - e.start_at), left=x(e.start_at), height=0.5, color=colour)
    ax.set_yticks(range(len(names)), [n[:32] for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_title(
        f"{title} ({len(facts.exposures)} exposures: blue done, orange incomplete, red failed, grey unfinished)"
    )
    time_axis(ax, facts, tz)


def draw_transfer(ax: Axes, facts: NightFacts, tz: ZoneInfo) -> None:
    """Files catalogued, replicas verified and files archived over time (cumulative)."""
    title = "Transfer and archive"
    if not (facts.registered or facts.verified or facts.exported):
        return no_data(ax, title, "no files catalogued")
    for label, times, wanted in (
        ("catalogued", facts.registered, len(facts.files)),
        ("replicas verified", facts.verified, facts.n_replicas_wanted),
        ("archived", facts.exported, facts.n_export_wanted),
    ):
        if times:
            ax.step(
                xs([facts.start_at, *times]),
                range(len(times) + 1),
                where="post",
                label=f"{label} {len(times)}/{wanted}",
            )
    ax.legend(loc="upper left", fontsize=7)
    ax.set_ylabel("files")
    ax.set_title(title)
    time_axis(ax, facts, tz)
    ax.set_xlim(x(facts.start_at), x(max([facts.end_at, *facts.verified, *facts.exported, *facts.registered])))


def draw_disk(ax: Axes, facts: NightFacts, tz: ZoneInfo) -> None:
    """Every volume's use (%) through the night."""
    title = "Disk use"
    volumes = {k: v for k, v in facts.readings.items() if k.startswith("df.") and k.endswith(".used_pct")}
    if not volumes:
        return no_data(ax, title)
    for key, points in sorted(volumes.items()):
        numbers = [(t, float(v)) for t, v in points if isinstance(v, int | float) and not isinstance(v, bool)]
        ax.plot(
            xs([t for t, _ in numbers]),
            [v for _, v in numbers],
            label=key.removeprefix("df.").removesuffix(".used_pct"),
        )
    ax.set_ylim(0, 100)
    ax.set_ylabel("% used")
    ax.legend(loc="upper left", fontsize=7, ncol=2)
    ax.set_title(title)
    time_axis(ax, facts, tz)


# file stem -> (drawing, size in inches)
PLOTS: dict[str, tuple[Draw, tuple[float, float]]] = {
    "volume": (draw_volume, (9, 3.6)),
    "lost": (draw_lost, (7, 5.6)),
    "weather": (draw_weather, (9, 3.6)),
    "recipes": (draw_recipes, (9, 3.6)),
    "transfer": (draw_transfer, (9, 3.6)),
    "disk": (draw_disk, (9, 3.6)),
}
OVERVIEW = "overview"


def save_plots(
    facts: NightFacts, tz: ZoneInfo, directory: Path, title: str, done: Callable[[str], None] | None = None
) -> list[Path]:
    """Every plot as DIRECTORY/NAME.png, and all of them on one overview.png; the paths written."""
    tell = done or (lambda _name: None)
    written = []
    for name, (draw, size) in PLOTS.items():
        fig = Figure(figsize=size, dpi=DPI, layout="constrained")
        draw(fig.add_subplot(), facts, tz)
        written.append(_save(fig, directory / f"{name}.png"))
        tell(name)
    fig = Figure(figsize=(18, 12), dpi=DPI, layout="constrained")
    fig.suptitle(title, fontsize=14)
    for i, (draw, _) in enumerate(PLOTS.values()):
        draw(fig.add_subplot(3, 2, i + 1), facts, tz)
    written.append(_save(fig, directory / f"{OVERVIEW}.png"))
    tell(OVERVIEW)
    return written


def _save(fig: Figure, path: Path) -> Path:
    tmp = path.with_suffix(".png.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path
