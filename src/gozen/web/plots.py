"""Server-drawn SVG plots of the Monitors page: one per group, its panels over one time axis.

Hand-written SVG rather than a plotting library: a group is a few paths, rectangles and labels,
drawn in about a millisecond, shown with no script. A number panel overlays the keys that share
a unit (the mean of each time slice as a line, its min-max as a light band, a gap where there
were no readings); a flag is a band shaded where it was true, a state a band per value. The axis
spans the asked range and is labelled in UTC with the site's local time under it. Shapes carry
data attributes (data-key, data-from, data-to, data-since, data-until) for scripts and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

from gozen.monitors.series import Bucket, Span
from gozen.monitors.units import human, unit_symbol

W, PAD_L, PAD_R = 600, 74, 10
NUMBER_H, BAND_H, AXIS_H, LEGEND_H = 64, 15, 30, 13
COLOURS = 6
_STEPS_MIN = (5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440)

# Also served as /monitors/plots.css for the page; embedded in a plot fetched on its own.
PLOT_CSS = """
svg.mplot { width: 100%; height: auto; display: block; font: 10px system-ui, sans-serif; }
svg.mplot .frame { fill: #fafbfc; stroke: #d8dee4; }
svg.mplot .grid { stroke: #eaeef2; }
svg.mplot text { fill: #57606a; }
svg.mplot text.ylab, svg.mplot text.blab { text-anchor: end; }
svg.mplot text.tick { text-anchor: middle; }
svg.mplot text.local { fill: #8c959f; }
svg.mplot text.none { text-anchor: middle; fill: #8c959f; }
svg.mplot text.legend { font-weight: 600; }
svg.mplot path.line { fill: none; stroke-width: 1.4; }
svg.mplot path.env { stroke: none; opacity: .18; }
svg.mplot .s0 { stroke: #0969da; fill: #0969da; } svg.mplot .s1 { stroke: #cf222e; fill: #cf222e; }
svg.mplot .s2 { stroke: #1a7f37; fill: #1a7f37; } svg.mplot .s3 { stroke: #8250df; fill: #8250df; }
svg.mplot .s4 { stroke: #bc4c00; fill: #bc4c00; } svg.mplot .s5 { stroke: #1b7c83; fill: #1b7c83; }
svg.mplot text.s0, svg.mplot text.s1, svg.mplot text.s2, svg.mplot text.s3, svg.mplot text.s4, svg.mplot text.s5 {
  stroke: none; }
svg.mplot rect.band { fill: #54aeff; }
svg.mplot rect.band.good { fill: #4ac26b; } svg.mplot rect.band.bad { fill: #ff8182; }
svg.mplot rect.band.mixed { fill: #d4a72c; }
svg.mplot rect.state { stroke: #fff; stroke-width: .5; }
svg.mplot rect.state.v0 { fill: #54aeff; } svg.mplot rect.state.v1 { fill: #b7bdc4; }
svg.mplot rect.state.v2 { fill: #d4a72c; } svg.mplot rect.state.v3 { fill: #a475f9; }
svg.mplot rect.state.v4 { fill: #ff8182; } svg.mplot rect.state.v5 { fill: #4ac26b; }
svg.mplot text.state { fill: #fff; font-size: 9px; }
"""


@dataclass(frozen=True)
class Line:
    key: str
    name: str
    buckets: list[Bucket]


@dataclass(frozen=True)
class NumberPanel:
    unit: str
    lines: list[Line]
    title: str = ""


@dataclass(frozen=True)
class BandPanel:
    """A flag (true shaded; `good` says whether true is good, bad or neither: None) or a state (one colour a value)."""

    key: str
    name: str
    spans: list[Span]
    good: bool | None = None
    state: bool = False


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


class Axis:
    """Time -> x over [t0, t1]."""

    def __init__(self, t0: datetime, t1: datetime) -> None:
        self.t0, self.t1 = t0, t1
        self.span_s = max((t1 - t0).total_seconds(), 1e-3)

    def x(self, t: datetime) -> float:
        return PAD_L + (t - self.t0).total_seconds() / self.span_s * (W - PAD_L - PAD_R)

    def ticks(self) -> list[datetime]:
        """Round times every 5 min .. 1 day, at most about seven of them."""
        step = next((m for m in _STEPS_MIN if self.span_s / 60 / m <= 7), _STEPS_MIN[-1])
        s = step * 60
        first = datetime.fromtimestamp((self.t0.timestamp() // s + 1) * s, UTC)
        out = []
        while first <= self.t1:
            out.append(first)
            first += timedelta(seconds=s)
        return out


def _runs(buckets: list[Bucket], gap_s: float) -> list[list[Bucket]]:
    """Consecutive buckets with no gap longer than gap_s between them."""
    runs: list[list[Bucket]] = []
    for b in buckets:
        if runs and (b.time - runs[-1][-1].time).total_seconds() <= gap_s:
            runs[-1].append(b)
        else:
            runs.append([b])
    return runs


def _gap_s(buckets: list[Bucket], slice_s: float) -> float:
    """A gap is more than 3 slices, or 3 times the usual spacing for a key read less often than a slice."""
    steps = sorted((b.time - a.time).total_seconds() for a, b in zip(buckets, buckets[1:], strict=False))
    usual = steps[len(steps) // 2] if steps else slice_s
    return 3 * max(slice_s, usual) + 1e-6


def number_panel(p: NumberPanel, axis: Axis, y: float, slice_s: float) -> str:
    top, bottom = y + LEGEND_H, y + NUMBER_H - 4
    x0, x1 = PAD_L, W - PAD_R
    legend, x = [], float(x0)
    for i, line in enumerate(p.lines):
        last = line.buckets[-1].mean if line.buckets else None
        label = f"{line.name} {human(last, p.unit)}" if last is not None else line.name
        legend.append(f'<text x="{x:.0f}" y="{y + 10}" class="legend s{i % COLOURS}">{escape(label)}</text>')
        x += 8 + 6.3 * len(label)  # bold 10 px
    keys = ",".join(ln.key for ln in p.lines)
    out = [
        f'<g class="panel number" data-unit="{escape(p.unit)}" data-keys="{escape(keys)}">',
        f'<text x="4" y="{y + 10}" class="legend">{escape(p.title or unit_symbol(p.unit) or "value")}</text>',
        *legend,
        f'<rect x="{x0}" y="{top}" width="{x1 - x0}" height="{bottom - top}" class="frame"/>',
    ]
    all_b = [b for line in p.lines for b in line.buckets]
    if not all_b:
        out.append(f'<text x="{(x0 + x1) / 2}" y="{(top + bottom) / 2 + 3}" class="none">no readings</text></g>')
        return "".join(out)
    lo, hi = min(b.lo for b in all_b), max(b.hi for b in all_b)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5

    def yv(v: float) -> float:
        return bottom - 2 - (v - lo) / (hi - lo) * (bottom - top - 4)

    out += [
        f'<line x1="{x0}" x2="{x1}" y1="{(top + bottom) / 2}" y2="{(top + bottom) / 2}" class="grid"/>',
        f'<text x="{x0 - 3}" y="{top + 8}" class="ylab">{escape(human(hi, p.unit))}</text>',
        f'<text x="{x0 - 3}" y="{bottom}" class="ylab">{escape(human(lo, p.unit))}</text>',
    ]
    for i, line in enumerate(p.lines):
        mean, env = [], []
        for run in _runs(line.buckets, _gap_s(line.buckets, slice_s)):
            pts = [f"{axis.x(b.time):.1f},{yv(b.mean):.1f}" for b in run]
            mean.append("M" + "L".join(pts) if len(pts) > 1 else f"M{pts[0]}h1.5")
            if any(b.hi - b.lo > 1e-9 for b in run):
                fwd = [f"{axis.x(b.time):.1f},{yv(b.hi):.1f}" for b in run]
                back = [f"{axis.x(b.time):.1f},{yv(b.lo):.1f}" for b in reversed(run)]
                env.append("M" + "L".join(fwd + back) + "Z")
        c = f"s{i % COLOURS}"
        if env:
            out.append(f'<path class="env {c}" d="{"".join(env)}"/>')
        out.append(
            f'<path class="line {c}" data-key="{escape(line.key)}" data-points="{len(line.buckets)}" '
            f'data-from="{_iso(line.buckets[0].time)}" data-to="{_iso(line.buckets[-1].time)}" d="{"".join(mean)}">'
            f"<title>{escape(line.key)}</title></path>"
        )
    out.append("</g>")
    return "".join(out)


def _merged(spans: list[Span], kind: str) -> list[tuple[datetime, datetime, str]]:
    """Slices as rectangles (start, end, what): a value holds until the next reading unless that is a gap away
    (more than 3 times the usual spacing), and neighbours of one shading become one rectangle."""
    starts = [s.start for s in spans]
    steps = sorted((b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False))
    width = (spans[0].end - spans[0].start).total_seconds() if spans else 0.0
    gap_s = 3 * max(width, steps[len(steps) // 2] if steps else width) + 1e-3
    out: list[tuple[datetime, datetime, str]] = []
    for s in spans:
        what = kind_of(s, kind)
        if out and (s.start - out[-1][1]).total_seconds() <= gap_s:
            if out[-1][2] == what:
                out[-1] = (out[-1][0], s.end, what)
                continue
            out[-1] = (out[-1][0], s.start, out[-1][2])
        out.append((s.start, s.end, what))
    return out


def kind_of(s: Span, kind: str) -> str:
    """A flag's slice: "true", "false" or "mixed" (it changed in the slice); a state's: its value (the largest)."""
    if kind == "flag":
        return "mixed" if s.lo != s.hi else "true" if s.hi is True else "false"
    return str(s.hi)


def band_panel(b: BandPanel, axis: Axis, y: float, colours: dict[str, int]) -> str:
    h = BAND_H - 3
    out = [
        f'<g class="panel band" data-key="{escape(b.key)}">',
        f'<text x="{PAD_L - 4}" y="{y + h - 2}" class="blab">{escape(b.name[-14:])}'
        f"<title>{escape(b.key)}</title></text>",
        f'<rect x="{PAD_L}" y="{y}" width="{W - PAD_L - PAD_R}" height="{h}" class="frame"/>',
    ]
    for start, end, what in _merged(b.spans, "state" if b.state else "flag"):
        if not b.state and what == "false" and b.good is not True:
            continue  # a flag's false is shaded only when true is the good side (safe: unsafe spans in red)
        x0, x1 = axis.x(start), axis.x(end)
        attrs = (
            f'data-key="{escape(b.key)}" data-value="{escape(what)}" data-from="{_iso(start)}" data-to="{_iso(end)}"'
        )
        if b.state:
            v = colours.setdefault(what, len(colours) % COLOURS)
            out.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 0.8):.1f}" height="{h}" class="state v{v}" {attrs}>'
                f"<title>{escape(b.name)}: {escape(what)}</title></rect>"
            )
            if x1 - x0 > 6.5 * len(what) + 6:
                out.append(f'<text x="{x0 + 3:.1f}" y="{y + h - 3}" class="state">{escape(what)}</text>')
        else:
            shade = {"mixed": "mixed", "false": "bad"}.get(what) or {True: "good", False: "bad", None: ""}[b.good]
            out.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 0.8):.1f}" height="{h}" class="band {shade}" '
                f"{attrs}><title>{escape(b.name)}</title></rect>"
            )
    out.append("</g>")
    return "".join(out)


def time_axis(axis: Axis, y: float, tz: ZoneInfo) -> str:
    local_name = axis.t1.astimezone(tz).strftime("%Z")
    out = [
        f'<text x="{PAD_L - 4}" y="{y + 11}" class="blab">UTC</text>',
        f'<text x="{PAD_L - 4}" y="{y + 23}" class="blab local">{escape(local_name)}</text>',
    ]
    for t in axis.ticks():
        x = axis.x(t)
        out.append(
            f'<text x="{x:.1f}" y="{y + 11}" class="tick" data-t="{_iso(t)}">{t:%H:%M}</text>'
            f'<text x="{x:.1f}" y="{y + 23}" class="tick local">{t.astimezone(tz):%H:%M}</text>'
        )
    return "".join(out)


def group_svg(
    group: str,
    numbers: Sequence[NumberPanel],
    bands: Sequence[BandPanel],
    t0: datetime,
    t1: datetime,
    tz: ZoneInfo,
    range_name: str = "",
    standalone: bool = False,
    slices: int = 300,
) -> str:
    """One group's plot: its number panels, then its bands, over one time axis from t0 to t1."""
    axis, y, body = Axis(t0, t1), 0.0, []
    slice_s = axis.span_s / slices
    for p in numbers:
        body.append(number_panel(p, axis, y, slice_s))
        y += NUMBER_H
    colours: dict[str, int] = {}
    for b in bands:
        body.append(band_panel(b, axis, y + 2, colours))
        y += BAND_H
    body += [
        f'<line x1="{axis.x(t):.1f}" x2="{axis.x(t):.1f}" y1="{LEGEND_H}" y2="{y}" class="grid"/>' for t in axis.ticks()
    ]
    body.append(time_axis(axis, y, tz))
    total = y + AXIS_H
    style = f"<style>{PLOT_CSS}</style>" if standalone else ""
    ns = ' xmlns="http://www.w3.org/2000/svg"'
    return (
        f'<svg{ns} class="mplot" viewBox="0 0 {W} {total:.0f}" width="{W}" height="{total:.0f}" '
        f'data-group="{escape(group)}" data-range="{escape(range_name)}" data-since="{_iso(t0)}" '
        f'data-until="{_iso(t1)}" role="img" aria-label="{escape(group)}: {_iso(t0)} to {_iso(t1)}">'
        f"{style}{''.join(body)}</svg>"
    )
