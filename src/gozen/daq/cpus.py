"""Readout and writer processes on disjoint CPU sets (the seed's cure for missed frames)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gozen.config import Config

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_sets(cfg: Config) -> tuple[list[int], list[int]]:
    """(readout CPUs, writer CPUs): from config, else CPU 0 for readout and the rest for writers."""
    cpus = sorted(os.sched_getaffinity(0))
    readout = cfg.daq.readout_cpus if cfg.daq.readout_cpus is not None else cpus[:1]
    writer = cfg.daq.writer_cpus if cfg.daq.writer_cpus is not None else (cpus[1:] or cpus[:1])
    return readout, writer


def pin(role: str, cpus: list[int]) -> str:
    """Pin this process to cpus; also join a cgroup v2 cpuset when the host allows. Says what it did."""
    usable = [c for c in cpus if c in os.sched_getaffinity(0)] or sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, usable)
    how = f"sched_setaffinity {usable}"
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpuset" in controllers.read_text(errors="ignore"):
        group = CGROUP_ROOT / f"gozen-daq-{role}"
        try:
            group.mkdir(exist_ok=True)
            (group / "cpuset.cpus").write_text(",".join(map(str, usable)))
            (group / "cgroup.procs").write_text(str(os.getpid()))
            how += f", cgroup {group}"
        except OSError as err:
            how += f" (cgroup v2 cpuset not usable: {err.strerror})"
    else:
        how += " (no cgroup v2 cpuset controller on this host)"
    log.info("pinned role=%s %s", role, how)
    return how
