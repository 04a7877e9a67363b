"""Server-rendered SVG charts: one small panel per numeric key, for the Monitors page.

Hand-written SVG rather than a plotting library: a panel is a polyline and four labels, the
page needs no JavaScript to show it, and it renders in well under a millisecond per panel.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 360, 110, 46, 8, 18, 18


def downsample(points: list[tuple[datetime, float]], buckets: int) -> list[tuple[datetime, float]]:
    """At most ~2 x buckets points, keeping each bucket's minimum and maximum (spikes survive)."""
    if len(points) <= 2 * buckets:
        return points
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    width = (t1 - t0) / buckets or 1.0
    groups: dict[int, list[tuple[datetime, float]]] = {}
    for p in points:
        groups.setdefault(min(buckets - 1, int((p[0].timestamp() - t0) / width)), []).append(p)
    out = []
    for g in groups.values():
        lo, hi = min(g, key=lambda p: p[1]), max(g, key=lambda p: p[1])
        out += sorted({lo, hi}, key=lambda p: p[0])
    return out


def numeric(points: list[tuple[datetime, Any]]) -> list[tuple[datetime, float]]:
    """Numbers as numbers, true/false as 1/0; other values are left out."""
    out = []
    for t, v in points:
        if isinstance(v, bool):
            out.append((t, 1.0 if v else 0.0))
        elif isinstance(v, int | float):
            out.append((t, float(v)))
    return out


def panel(title: str, unit: str, points: list[tuple[datetime, float]], t0: datetime, t1: datetime, y: int) -> str:
    """One panel at vertical offset y: the series over [t0, t1], its range, and its last value."""
    x0, x1, top, bottom = PAD_L, W - PAD_R, y + PAD_T, y + H - PAD_B
    span = (t1 - t0).total_seconds() or 1.0
    parts = [
        f'<text x="4" y="{y + 12}" class="t">{escape(title)}</text>',
        f'<rect x="{x0}" y="{top}" width="{x1 - x0}" height="{bottom - top}" class="frame"/>',
    ]
    if not points:
        parts.append(f'<text x="{(x0 + x1) / 2}" y="{(top + bottom) / 2}" class="none">no readings</text>')
        return "".join(parts)
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5

    def xy(t: datetime, v: float) -> str:
        x = x0 + (t - t0).total_seconds() / span * (x1 - x0)
        return f"{x:.1f},{bottom - (v - lo) / (hi - lo) * (bottom - top):.1f}"

    parts += [
        f'<polyline class="line" points="{" ".join(xy(t, v) for t, v in points)}"/>',
        '<circle class="dot" cx="{}" cy="{}" r="2.5"/>'.format(*xy(*points[-1]).split(",")),
        f'<text x="{x0 - 3}" y="{top + 8}" class="ax">{hi:.4g}</text>',
        f'<text x="{x0 - 3}" y="{bottom}" class="ax">{lo:.4g}</text>',
        f'<text x="{x1}" y="{y + 12}" class="last">{values[-1]:.4g} {escape(unit)}</text>',
    ]
    return "".join(parts)


def chart(series: list[tuple[str, str, list[tuple[datetime, Any]]]], t0: datetime, t1: datetime) -> str:
    """Small multiples: one panel per (title, unit, points), stacked, with the time axis at the bottom."""
    body = [
        panel(title, unit, downsample(numeric(points), 180), t0, t1, i * H)
        for i, (title, unit, points) in enumerate(series)
    ]
    total = H * len(series) + 14
    axis = (
        f'<text x="{PAD_L}" y="{total - 2}" class="ax0">{t0:%m-%d %H:%M}</text>'
        f'<text x="{W - PAD_R}" y="{total - 2}" class="ax">{t1:%m-%d %H:%M} UTC</text>'
    )
    style = (
        "<style>.t{font:600 11px sans-serif;fill:#333}.ax,.last{font:10px sans-serif;fill:#666;text-anchor:end}"
        ".ax0{font:10px sans-serif;fill:#666}.last{fill:#111}.none{font:11px sans-serif;fill:#999;text-anchor:middle}"
        ".frame{fill:#fafafa;stroke:#ddd}.line{fill:none;stroke:#2a6fdb;stroke-width:1.2}.dot{fill:#2a6fdb}</style>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total}" viewBox="0 0 {W} {total}">'
        f"{style}{''.join(body)}{axis}</svg>"
    )
