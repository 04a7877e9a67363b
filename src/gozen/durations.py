"""Durations in the words the process monitor uses: "16 days", "0:02:42"."""

from __future__ import annotations


def uptime_words(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    days, rest = divmod(s, 86400)
    if days:
        return f"{days} day" if days == 1 else f"{days} days"
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
