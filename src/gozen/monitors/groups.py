"""How the Monitors page arranges the board: its groups, and which keys share a plot panel.

A key's group is its first part (`weather.wind_ms` -> weather). In a group, numbers with one
unit share a panel (wind and gusts overlaid); in groups with one set of keys per device
(`df.<volume>.used_pct`, `zfs.<host>.<pool>.capacity_pct`) a panel holds one measure of every
device. True/false keys and a few states (the shutter, the UPS) are bands; long texts only appear
in the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch

from gozen.daq.snapshot import StatusValue

# (group, title): the observatory's groups, in the page's order; other groups follow under "Other".
GROUPS: tuple[tuple[str, str], ...] = (
    ("safety", "Safety"),
    ("weather", "Weather"),
    ("telescope", "Telescope"),
    ("dome", "Dome"),
    ("gps", "GPS time"),
    ("temperature", "Temperature"),
    ("power", "Power / UPS"),
    ("df", "Disks"),
    ("zfs", "ZFS"),
)
TITLES = dict(GROUPS)
PER_DEVICE = ("df", "zfs")  # group.<device...>.<measure>
STATE_KEYS = ("dome.shutter", "power.ups_state", "zfs.*.state")  # texts drawn as bands
NOT_PLOTTED = (
    "safety.reasons",
    "zfs.*.status_text",
    "zfs.*.scan",
    "zfs.*.available",
    "zfs.*_errors",
    "df.*.online",
    "df.*.fill_rate_bps",
    "df.*.time_to_full_s",
    "df.*.inodes_used_pct",
    "gps.mode",
)
DEVICE_MEASURES = (  # the columns of a per-device table, in this order; others after them
    "online",
    "available",
    "state",
    "used_pct",
    "capacity_pct",
    "free_bytes",
    "inodes_used_pct",
    "fill_rate_bps",
    "time_to_full_s",
)
NOT_TABULATED = ("status_text", "scan")  # per-device groups' long texts: in the CSV and the JSON, not the table
_SUFFIXES = ("_pct", "_bytes", "_bps", "_s")
UNIT_ORDER = ("degC", "%", "m/s", "mm/h", "hPa", "deg", "ms", "B", "B/s", "s")


def group_of(key: str) -> str:
    return key.split(".", 1)[0]


def title_of(group: str) -> str:
    return TITLES.get(group, group)


def order(groups: set[str]) -> list[str]:
    """The observatory's groups first, in their order; then the rest by name."""
    return [g for g, _ in GROUPS if g in groups] + sorted(groups - set(TITLES))


@dataclass(frozen=True)
class PanelSpec:
    """A plot panel: `kind` number (lines sharing a unit) or band (one true/false key, or a state: unit "state")."""

    kind: str
    unit: str
    keys: tuple[str, ...]
    measure: str = ""


def _plotted_as(key: str, v: StatusValue) -> str | None:
    if any(fnmatch(key, p) for p in NOT_PLOTTED):
        return None
    if isinstance(v.value, bool):
        return "band"
    if isinstance(v.value, int | float) or (v.value is None and v.unit):
        return "number"
    if isinstance(v.value, str) and any(fnmatch(key, p) for p in STATE_KEYS):
        return "band"
    return None


def panels(group: str, values: dict[str, StatusValue]) -> list[PanelSpec]:
    """The group's panels: numbers by unit (by measure too in per-device groups), then one band per flag."""
    lines: dict[tuple[str, str], list[str]] = {}
    bands: list[PanelSpec] = []
    for key in sorted(values):
        v = values[key]
        kind = _plotted_as(key, v)
        if kind == "band":
            bands.append(PanelSpec("band", "state" if isinstance(v.value, str) else v.unit, (key,)))
        elif kind == "number":
            measure = key.rsplit(".", 1)[1] if group in PER_DEVICE else ""
            lines.setdefault((v.unit, measure), []).append(key)

    def rank(um: tuple[str, str]) -> tuple[int, str, str]:
        return (UNIT_ORDER.index(um[0]) if um[0] in UNIT_ORDER else len(UNIT_ORDER), um[0], um[1])

    numbers = [PanelSpec("number", u, tuple(ks), m) for (u, m), ks in sorted(lines.items(), key=lambda i: rank(i[0]))]
    return numbers + bands


def short_name(key: str) -> str:
    """The key without its group: `df.node0.used_pct` -> node0.used_pct."""
    return key.split(".", 1)[1] if "." in key else key


def line_name(key: str, measure: str) -> str:
    """A line's name in its panel's legend: the device in a per-device panel (the panel names the measure)."""
    name = short_name(key)
    return name.removesuffix("." + measure) if measure else name


def measure_label(measure: str) -> str:
    """A column heading: `time_to_full_s` -> time to full."""
    for suffix in _SUFFIXES:
        measure = measure.removesuffix(suffix)
    return measure.replace("_", " ")


def measure_rank(measure: str) -> tuple[int, str]:
    return (DEVICE_MEASURES.index(measure) if measure in DEVICE_MEASURES else len(DEVICE_MEASURES), measure)
