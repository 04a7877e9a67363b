"""`storage:dfmonitor`: use, inodes, fill rate and time-to-full of every DAQ volume and storage node here.

Readings go to the status board (`df.<name>.*`, one set per directory). Events are per
filesystem: directories on one filesystem (the same `st_dev`, e.g. the simulated volumes
and nodes under ./var) cross its lines together and make one event naming them all. A
level is entered when use crosses its line and left only once use is `df_hysteresis_pct`
below it, so a disk hovering at the line does not flap. Going offline and coming back are
events per directory (a missing mount).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from gozen.config import Config
from gozen.db.events import Severity
from gozen.monitors.board import Reading, publish
from gozen.service import Context, Service

LEVEL_SEVERITY: dict[str, Severity] = {"ok": "info", "warn": "warning", "alarm": "error", "offline": "error"}
RANK = {"ok": 0, "warn": 1, "alarm": 2}
WORDS = {"ok": "back to normal", "warn": "over the warning line", "alarm": "over the alarm line", "offline": "offline"}
SUBJECT_MAX = 256  # events.subject


@dataclass(frozen=True)
class Target:
    kind: str  # daq | node
    name: str
    path: Path


@dataclass(frozen=True)
class Usage:
    """One filesystem's use, as statvfs saw it."""

    used_pct: float
    free_bytes: int
    to_full_s: float | None

    def detail(self) -> str:
        full = f", full in {self.to_full_s / 3600:.1f} h at this rate" if self.to_full_s else ""
        return f"{self.used_pct:.1f}% used, {self.free_bytes / 1e9:.2f} GB free{full}"


def targets(cfg: Config, host: str) -> list[Target]:
    out = [Target("daq", v.name, cfg.under_data_dir(v.path)) for v in cfg.daq_volumes if v.host in (None, host)]
    out += [Target("node", n.name, cfg.under_data_dir(n.path)) for n in cfg.storage_nodes if n.host in (None, host)]
    return out


def next_level(before: str | None, used_pct: float, warn_pct: float, alarm_pct: float, hysteresis_pct: float) -> str:
    """ok / warn / alarm: up as soon as a line is crossed, down only `hysteresis_pct` below it."""
    up = "alarm" if used_pct > alarm_pct else "warn" if used_pct > warn_pct else "ok"
    held = RANK.get(before or "ok", 0)
    if RANK[up] >= held:
        return up
    h = hysteresis_pct
    down = "alarm" if used_pct > alarm_pct - h else "warn" if used_pct > warn_pct - h else "ok"
    return down if RANK[down] < held else str(before)


def mount_point(path: Path) -> Path:
    """The top of the filesystem holding path (where st_dev changes going up)."""
    path = path.resolve()
    dev = path.stat().st_dev
    while path.parent != path and path.parent.stat().st_dev == dev:
        path = path.parent
    return path


def subject_of(names: list[str]) -> str:
    text = ",".join(names)
    if len(text) <= SUBJECT_MAX:
        return text
    more = f" +{len(names)} more"
    return text[: SUBJECT_MAX - len(more)].rsplit(",", 1)[0] + more


class DfMonitor(Service):
    """Measures every `monitors.df_every_s`; events go out as levels change."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cfg = ctx.cfg
        self.period_s = ctx.cfg.monitors.df_every_s
        self.targets = targets(ctx.cfg, ctx.host)
        self.previous: dict[str, tuple[float, int]] = {}
        self.level: dict[int, str] = {}  # per filesystem (st_dev)
        self.offline: set[str] = set()  # directories found missing

    def sample(self) -> list[Reading]:
        ttl = self.cfg.monitors.df_every_s * 3
        readings: list[Reading] = []
        filesystems: dict[int, tuple[Usage, list[Target]]] = {}
        for t in self.targets:
            try:
                if not t.path.is_dir():
                    raise FileNotFoundError(f"{t.path} is not there (not mounted?)")
                st, dev = os.statvfs(t.path), t.path.stat().st_dev
            except OSError as err:
                readings.append(Reading(f"df.{t.name}.online", False, "", ttl))
                self.went_offline(t, str(err))
                continue
            self.came_online(t)
            usage, measured = self.measure(t, st, ttl)
            readings += measured
            filesystems.setdefault(dev, (usage, []))[1].append(t)
        for dev, (usage, on_it) in filesystems.items():
            self.change(dev, on_it, usage)
        return readings

    def measure(self, t: Target, st: os.statvfs_result, ttl: float) -> tuple[Usage, list[Reading]]:
        key, now = f"df.{t.name}", time.monotonic()
        total = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        used = total - free
        used_pct = 100.0 * used / total if total else 0.0
        inodes_pct = 100.0 * (st.f_files - st.f_favail) / st.f_files if st.f_files else 0.0
        rate = None
        if t.name in self.previous:
            t0, used0 = self.previous[t.name]
            rate = (used - used0) / (now - t0) if now > t0 else None
        self.previous[t.name] = (now, used)
        to_full = free / rate if rate and rate > 0 else None
        return Usage(used_pct, free, to_full), [
            Reading(f"{key}.online", True, "", ttl),
            Reading(f"{key}.used_pct", round(used_pct, 3), "%", ttl),
            Reading(f"{key}.free_bytes", free, "B", ttl),
            Reading(f"{key}.inodes_used_pct", round(inodes_pct, 3), "%", ttl),
            Reading(f"{key}.fill_rate_bps", round(rate, 1) if rate is not None else None, "B/s", ttl),
            Reading(f"{key}.time_to_full_s", round(to_full, 1) if to_full is not None else None, "s", ttl),
        ]

    def change(self, dev: int, on_it: list[Target], usage: Usage) -> None:
        """One event when the filesystem's level changes, naming every directory on it."""
        m = self.cfg.monitors
        before = self.level.get(dev)
        level = next_level(before, usage.used_pct, m.df_warn_pct, m.df_alarm_pct, m.df_hysteresis_pct)
        self.level[dev] = level
        if before == level or (before is None and level == "ok"):
            return
        names = [t.name for t in on_it]
        if len(on_it) == 1:
            what = f"{on_it[0].kind} {on_it[0].name}"
        else:
            what = f"filesystem {mount_point(on_it[0].path)} ({', '.join(names)})"
        self.record(
            f"disk_{level}",
            subject_of(names),
            f"{what} {WORDS[level]}: {usage.detail()}",
            {"paths": [str(t.path) for t in on_it], "names": names, "level": level},
        )

    def went_offline(self, t: Target, why: str) -> None:
        if t.name in self.offline:
            return
        self.offline.add(t.name)
        self.record("disk_offline", t.name, f"{t.kind} {t.name} offline: {why}", {"path": str(t.path)})

    def came_online(self, t: Target) -> None:
        if t.name not in self.offline:
            return
        self.offline.discard(t.name)
        self.record("disk_ok", t.name, f"{t.kind} {t.name} is back", {"path": str(t.path), "level": "ok"})

    def record(self, kind: str, subject: str, message: str, data: dict[str, object]) -> None:
        self.ctx.event(kind, subject, message, LEVEL_SEVERITY[kind.removeprefix("disk_")], data)

    def run_once(self) -> None:
        publish(self.ctx.engine, self.ctx.program, self.sample())
