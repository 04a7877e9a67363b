"""`storage:dfmonitor`: use, inodes, fill rate and time-to-full of every DAQ volume and storage node here.

Readings go to the status board (`df.<name>.*`); crossing the warning or alarm line, going
offline and coming back are events, once per change rather than once per sample.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from gozen.config import Config
from gozen.db.events import Severity, record_event
from gozen.monitors.board import Reading, publish

LEVEL_SEVERITY: dict[str, Severity] = {"ok": "info", "warn": "warning", "alarm": "error", "offline": "error"}


@dataclass(frozen=True)
class Target:
    kind: str  # daq | node
    name: str
    path: Path


def targets(cfg: Config, host: str) -> list[Target]:
    out = [Target("daq", v.name, cfg.under_data_dir(v.path)) for v in cfg.daq_volumes if v.host in (None, host)]
    out += [Target("node", n.name, cfg.under_data_dir(n.path)) for n in cfg.storage_nodes if n.host in (None, host)]
    return out


class DfMonitor:
    def __init__(self, cfg: Config, engine: Engine, host: str) -> None:
        self.cfg, self.engine, self.host = cfg, engine, host
        self.targets = targets(cfg, host)
        self.previous: dict[str, tuple[float, int]] = {}
        self.level: dict[str, str] = {}

    def sample(self) -> list[Reading]:
        m = self.cfg.monitors
        ttl = m.df_every_s * 3
        readings: list[Reading] = []
        for t in self.targets:
            key = f"df.{t.name}"
            try:
                if not t.path.is_dir():
                    raise FileNotFoundError(f"{t.path} is not there (not mounted?)")
                st = os.statvfs(t.path)
            except OSError as err:
                readings.append(Reading(f"{key}.online", False, "", ttl))
                self.change(t, "offline", str(err))
                continue
            now = time.monotonic()
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
            readings += [
                Reading(f"{key}.online", True, "", ttl),
                Reading(f"{key}.used_pct", round(used_pct, 3), "%", ttl),
                Reading(f"{key}.free_bytes", free, "B", ttl),
                Reading(f"{key}.inodes_used_pct", round(inodes_pct, 3), "%", ttl),
                Reading(f"{key}.fill_rate_bps", round(rate, 1) if rate is not None else None, "B/s", ttl),
                Reading(f"{key}.time_to_full_s", round(to_full, 1) if to_full is not None else None, "s", ttl),
            ]
            level = "alarm" if used_pct > m.df_alarm_pct else "warn" if used_pct > m.df_warn_pct else "ok"
            self.change(
                t,
                level,
                f"{used_pct:.1f}% used, {free / 1e9:.2f} GB free"
                + (f", full in {to_full / 3600:.1f} h at this rate" if to_full else ""),
            )
        return readings

    def change(self, t: Target, level: str, detail: str) -> None:
        before = self.level.get(t.name)
        self.level[t.name] = level
        if before == level or (before is None and level == "ok"):
            return
        words = {
            "ok": "back to normal",
            "warn": "over the warning line",
            "alarm": "over the alarm line",
            "offline": "offline",
        }[level]
        record_event(
            self.engine,
            host=self.host,
            source="storage:dfmonitor",
            kind=f"disk_{level}",
            subject=t.name,
            severity=LEVEL_SEVERITY[level],
            message=f"{t.kind} {t.name} {words}: {detail}",
            data={"path": str(t.path), "level": level},
        )

    def run(self) -> None:
        while True:
            publish(self.engine, "storage:dfmonitor", self.sample())
            time.sleep(self.cfg.monitors.df_every_s)
