"""Board values in human units for the Monitors page: 50.9 GB, 85.3 %, -10.0 °C, 4.2 m/s, 3.4 h."""

from __future__ import annotations

import math

SYMBOLS = {"degC": "°C", "deg": "°", "1/s": "/s"}
_BYTES = ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"))
_DURATIONS = ((86400.0, "d"), (3600.0, "h"), (60.0, "min"))


def unit_symbol(unit: str) -> str:
    """The unit as a person writes it: degC -> °C, deg -> °."""
    return SYMBOLS.get(unit, unit)


def number(x: float) -> str:
    """Three significant figures and no exponent for everyday sizes: 1013, 85.3, 4.25, 0.0123."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    a = abs(x)
    if a >= 1000:
        return f"{x:.0f}"
    if a >= 0.01:
        return f"{x:.{max(0, 2 - math.floor(math.log10(a)))}f}"
    return f"{x:.2g}"


def size_bytes(x: float, suffix: str = "B") -> str:
    """Decimal (SI) multiples, as `df -H` and the disk events write them: 50.9 GB."""
    for scale, name in _BYTES:
        if abs(x) >= scale:
            return f"{number(x / scale)} {name}{suffix[1:]}"
    return f"{number(x)} {suffix}"


def duration(seconds: float) -> str:
    """45 s, 12 min, 3.4 h, 2.1 d."""
    for scale, name in _DURATIONS:
        if abs(seconds) >= scale:
            return f"{number(seconds / scale)} {name}"
    return f"{seconds:.0f} s" if abs(seconds) >= 10 else f"{number(seconds)} s"


def human(value: object, unit: str = "") -> str:
    """A board value for a person: numbers in their unit's best multiple, true/false as yes/no."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        x = float(value)
        if unit == "B":
            return size_bytes(x)
        if unit == "B/s":
            return size_bytes(x, "B/s")
        if unit == "s":
            return duration(x)
        if unit == "%":
            return f"{number(x)} %"
        text = str(value) if isinstance(value, int) and not unit else number(x)  # a count stays whole
        symbol = unit_symbol(unit)
        return f"{text}{symbol}" if symbol == "°" else f"{text} {symbol}".rstrip()
    return str(value)
