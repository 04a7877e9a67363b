"""The night's plan as a picture (matplotlib, Agg): SVG for the Queue page, PNG for `gozen queue plan --png`.

Time runs left to right (UTC below, the site's local time above); the sky panel shows the twilight
bands, the Sun's and the Moon's altitude; below it one row per recipe, in the order they would run:
the target's altitude across the night drawn faintly (0 deg at the row's foot, 90 at its head), its
lowest allowed altitude (its own limit or the horizon mask, whichever is higher) dashed, and the
planned slot as a bar whose lighter part is the overhead (slew, settle, readout). Artists carry ids
(`gid`) in the SVG: twilight-*, sun-altitude, moon-altitude, now, row-N, altitude-N, limit-N,
slot-N, overhead-N, more, unsafe.
"""

from __future__ import annotations

import io
import math
import threading
from datetime import datetime

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter
from numpy.typing import ArrayLike

from gozen.queue.plan import NightPlan, Slot, moon_track, sun_track, target_tracks
from gozen.queue.recipe import PRIORITY_OF_RANK
from gozen.queue.scheduler import Candidate, horizon_limit, order_key

MAX_ROWS = 40
_RC_LOCK = threading.Lock()
PRIORITY_COLOUR = {"interrupt": "#cf222e", "high": "#bf8700", "normal": "#2a6fdb", "low": "#6e7781"}
OVERHEAD_COLOUR = {"interrupt": "#f2b8bb", "high": "#ecd9a0", "normal": "#a9c5f0", "low": "#c9ced4"}
# (gid, Sun altitude from, to, colour): the darker the sky, the deeper the shade.
TWILIGHT = (
    ("twilight-civil", -6.0, 0.0, "#f4f6fa"),
    ("twilight-nautical", -12.0, -6.0, "#e6ebf3"),
    ("twilight-astronomical", -18.0, -12.0, "#d8e0ec"),
    ("night-dark", -91.0, -18.0, "#cad4e5"),
)


def _hours(t: datetime, day0: datetime) -> float:
    return (t - day0).total_seconds() / 3600.0


def figure(p: NightPlan, now: datetime | None = None) -> Figure:
    """The picture of plan p; `now` marked when it falls in the night."""
    times, sun = sun_track(p.site, p.night)
    moon, lit = moon_track(p.site, p.night)
    up = [i for i, a in enumerate(sun) if a < 0.0] or [len(times) // 2]
    lo, hi = max(up[0] - 6, 0), min(up[-1] + 6, len(times) - 1)  # sunset to sunrise, half an hour more
    ts, sun_alt, moon_alt = list(times[lo : hi + 1]), np.array(sun[lo : hi + 1]), np.array(moon[lo : hi + 1])
    day0 = ts[0].replace(hour=0, minute=0, second=0, microsecond=0)
    x = np.array([_hours(t, day0) for t in ts])
    rows = _rows(p)
    n = max(min(len(rows), MAX_ROWS), 1)
    fig, sky, ax = _layout(n)
    for a, suffix in ((sky, "-sky"), (ax, "")):
        for gid, low, high, colour in TWILIGHT:
            inside = (sun_alt >= low) & (sun_alt < high)
            inside[1:] |= inside[:-1]  # up to the next sample: no gap between bands
            band = a.fill_between(x, 0, 1, where=inside, color=colour, lw=0, transform=a.get_xaxis_transform())
            band.set_gid(gid + suffix)
    _sky_panel(sky, p, x, sun_alt, moon_alt, lit, day0)
    _recipe_rows(ax, p, rows, ts, x, day0)
    if now is not None and x[0] <= _hours(now, day0) <= x[-1]:
        for a, gid in ((sky, "now-sky"), (ax, "now")):
            a.axvline(_hours(now, day0), color="#d1242f", lw=1.2).set_gid(gid)
    ticks = np.arange(math.ceil(x[0]), math.floor(x[-1]) + 1)
    ax.xaxis.set_major_locator(FixedLocator(ticks.tolist()))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda h, _: f"{int(round(h)) % 24:02d}"))
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel("UTC (hours)")
    tz = round(p.site.lon_deg / 15)

    def to_local(h: ArrayLike) -> ArrayLike:
        return np.asarray(h) + tz

    def to_utc(h: ArrayLike) -> ArrayLike:
        return np.asarray(h) - tz

    local = sky.secondary_xaxis("top", functions=(to_local, to_utc))
    local.xaxis.set_major_locator(FixedLocator((ticks + tz).tolist()))
    local.xaxis.set_major_formatter(FuncFormatter(lambda h, _: f"{int(round(h)) % 24:02d}"))
    local.set_xlabel(f"local time (UTC{tz:+d}, from the site's longitude)")
    _title(fig, sky, p)
    return fig


def _layout(n_rows: int) -> tuple[Figure, Axes, Axes]:
    """The figure with the sky panel over the recipe rows, margins fixed in inches (a layout engine
    measuring every label would take longer than the drawing)."""
    width, left, right, top, sky_h, gap, row_h, bottom = 11.0, 2.3, 0.25, 1.0, 1.5, 0.3, 0.24, 0.8
    height = top + sky_h + gap + row_h * n_rows + bottom
    fig = Figure(figsize=(width, height))
    w = (width - left - right) / width
    sky = fig.add_axes((left / width, (height - top - sky_h) / height, w, sky_h / height))
    ax = fig.add_axes((left / width, bottom / height, w, row_h * n_rows / height), sharex=sky)
    sky.tick_params(labelbottom=False)
    return fig, sky, ax


def _rows(p: NightPlan) -> list[tuple[Candidate, Slot | None]]:
    """The running recipe, the planned ones in the order they run, then the queued ones left out (standing order)."""
    planned = {id(s.candidate) for s in p.slots}
    rest = sorted((c for c in p.queued if id(c) not in planned), key=order_key)
    running = [(p.executing.candidate, p.executing)] if p.executing else []
    return running + [(s.candidate, s) for s in p.slots] + [(c, None) for c in rest]


def _sky_panel(
    sky: Axes, p: NightPlan, x: np.ndarray, sun_alt: np.ndarray, moon_alt: np.ndarray, lit: float, day0: datetime
) -> None:
    sky.plot(x, sun_alt, color="#bf8700", lw=1.2, label="Sun")[0].set_gid("sun-altitude")
    sky.plot(x, moon_alt, color="#57606a", lw=1.6, label=f"Moon ({lit:.0%} lit)")[0].set_gid("moon-altitude")
    sky.axhline(0.0, color="#8c959f", lw=0.8)
    for edge in (p.start, p.end):
        if p.end > p.start:
            sky.axvline(_hours(edge, day0), color="#24292f", lw=0.8, ls=":")
    sky.set_ylim(-20, 90)
    sky.set_yticks([0, 30, 60, 90])
    sky.set_ylabel("altitude (deg)")
    sky.legend(loc="upper right", fontsize=8, framealpha=0.8)


def _recipe_rows(
    ax: Axes, p: NightPlan, rows: list[tuple[Candidate, Slot | None]], ts: list[datetime], x: np.ndarray, day0: datetime
) -> None:
    shown = rows[:MAX_ROWS]
    ra = np.array([c.ra_deg if c.ra_deg is not None else np.nan for c, _ in shown])
    dec = np.array([c.dec_deg if c.dec_deg is not None else np.nan for c, _ in shown])
    pointed = ~np.isnan(ra)
    alt = np.full((len(shown), len(ts)), np.nan)
    az = np.zeros_like(alt)
    alt[pointed], az[pointed] = target_tracks(p.site, ts, ra[pointed], dec[pointed])
    mask = horizon_limit(p.site, az)
    for i, (c, slot) in enumerate(shown):
        _row(ax, i, c, slot, x, alt[i], mask[i], day0, running=slot is not None and slot is p.executing)
    ax.set_ylim(max(len(shown), 1), 0)
    ax.set_yticks([i + 0.5 for i in range(len(shown))])
    names = [c.name[:32] + (" (running)" if slot is not None and slot is p.executing else "") for c, slot in shown]
    for label, (_, slot) in zip(ax.set_yticklabels(names, fontsize=8), shown, strict=True):
        if slot is None:
            label.set_color("#8c959f")  # queued, but not in tonight's plan
    ax.tick_params(axis="y", length=0)
    if not shown:
        ax.text(0.5, 0.5, "nothing queued", transform=ax.transAxes, ha="center", va="center").set_gid("empty")
    if len(rows) > MAX_ROWS:
        ax.text(
            0.0, -0.02, f"+{len(rows) - MAX_ROWS} more", transform=ax.transAxes, ha="right", va="top", fontsize=9
        ).set_gid("more")


def _row(
    ax: Axes,
    i: int,
    c: Candidate,
    slot: Slot | None,
    x: np.ndarray,
    alt: np.ndarray,
    mask: np.ndarray,
    day0: datetime,
    running: bool = False,
) -> None:
    def y(a: np.ndarray) -> np.ndarray:  # 0 deg at the row's foot, 90 at its head
        return i + 0.92 - 0.84 * np.clip(a, 0.0, 90.0) / 90.0

    ax.plot(x[[0, -1]], [i + 1.0, i + 1.0], color="#ffffff", lw=0.6)[0].set_gid(f"row-{i}")
    if not np.isnan(alt).all():
        ax.plot(x, np.where(alt >= 0, y(alt), np.nan), color="#24292f", lw=0.8, alpha=0.35)[0].set_gid(f"altitude-{i}")
        k = c.recipe.constraints
        own = max(k.min_alt_deg or 0.0, math.degrees(math.asin(1 / k.max_airmass)) if k.max_airmass else 0.0)
        ax.plot(x, y(np.maximum(mask, own)), color="#cf222e", lw=0.7, ls="--", alpha=0.6)[0].set_gid(f"limit-{i}")
    if slot is None:
        return
    priority = PRIORITY_OF_RANK.get(c.rank, "normal")
    left, over, total = _hours(slot.start, day0), slot.overhead_s / 3600.0, (slot.end - slot.start).total_seconds()
    work = max(total / 3600.0 - over, 0.0)
    if over > 0:
        bar = Rectangle((left, i + 0.25), over, 0.5, color=OVERHEAD_COLOUR[priority], lw=0, gid=f"overhead-{i}")
        ax.add_patch(bar)
    bar = Rectangle((left + over, i + 0.25), max(work, 1 / 120), 0.5, color=PRIORITY_COLOUR[priority], lw=0)
    ax.add_patch(bar).set_gid(f"slot-{i}")
    if running:  # hatched: started already, its end an estimate
        bar.set_hatch("///")
        bar.set_edgecolor("#ffffff")


def _title(fig: Figure, sky: Axes, p: NightPlan) -> None:
    hours = f"{p.start:%H:%M}-{p.end:%H:%M} UTC" if p.end > p.start else "no dark hours left"
    text = (
        f"Night of {p.night} at {p.site.name}: {len(p.slots)} of {len(p.queued)} queued recipes planned "
        f"{hours}; overheads {p.overhead_s / 60:.0f} min"
    )
    if p.executing is not None:
        text += f"; running {p.executing.candidate.name[:32]} until ~{p.executing.end:%H:%M}"
    fig.text(0.01, 1 - 0.12 / fig.get_figheight(), text, fontsize=11, ha="left", va="top")
    key = (
        "bar: planned (lighter part: slew, settle, readout) - grey: the target's altitude (row foot 0 deg, "
        "head 90) - dashed: lowest allowed (own limit or horizon mask) - red line: now"
    )
    fig.text(0.99, 0.06 / fig.get_figheight(), key, fontsize=7.5, color="#57606a", ha="right", va="bottom")
    if not p.safe:
        why = p.unsafe_reason or "no reason given"
        warning = f"UNSAFE NOW ({why}): planned as if it turns safe"
        sky.set_title(warning, color="#d1242f", fontsize=10, loc="left").set_gid("unsafe")


def svg(p: NightPlan, now: datetime | None = None) -> str:
    """The picture as SVG text for an HTML page (starts at `<svg`; text kept as text)."""
    buf = io.StringIO()
    # rc_context sets matplotlib's global settings: one drawing at a time (the route runs in a thread pool).
    with _RC_LOCK, rc_context({"svg.fonttype": "none", "svg.hashsalt": "gozen-plan"}):
        figure(p, now).savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def png(p: NightPlan, now: datetime | None = None, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    figure(p, now).savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
