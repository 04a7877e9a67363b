"""Which programs run on which host, named `group:program` as in the seed's monitor."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass

from gozen.config import Config, Host


@dataclass(frozen=True)
class Program:
    group: str
    name: str
    command: tuple[str, ...]
    listener_events: str | None = None  # set for supervisord event listeners
    startsecs: int = 2
    autostart: bool = True
    autorestart: bool | str = True  # or "unexpected": restarted unless it exits 0 (a clean shutdown)

    @property
    def full_name(self) -> str:
        return f"{self.group}:{self.name}"


def gozen_program(group: str, name: str, component: str, **kw: object) -> Program:
    """A program that runs `python -m gozen run COMPONENT` with this interpreter."""
    return Program(group, name, (sys.executable, "-m", "gozen", "run", component), **kw)  # type: ignore[arg-type]


def programs_for(cfg: Config, host: Host) -> list[Program]:
    """The programs `gozen up --host NAME` starts; grows as gozen's parts land."""
    programs = [
        # Every host records its process state changes in the events table.
        gozen_program("supervise", "events", "event-listener", listener_events="PROCESS_STATE", startsecs=1),
    ]
    if "daq" in host.roles:
        programs.append(gozen_program("daq", "control", "daq-control"))
        programs += [
            gozen_program("daq", f"readout-{i:02d}", f"daq-readout-{i:02d}") for i in range(1, cfg.daq.readouts + 1)
        ]
        programs += [
            gozen_program("daq", f"writer-{i:02d}", f"daq-writer-{i:02d}") for i in range(1, cfg.daq.writers + 1)
        ]
    if "daq" in host.roles:  # they touch the DAQ volumes
        programs.append(gozen_program("transfer", "push", "transfer-push"))
        programs.append(gozen_program("transfer", "janitor", "transfer-janitor"))
    if "buffer" in host.roles:
        programs += [
            gozen_program("transfer", f"pop-{i:02d}", f"transfer-pop-{i:02d}")
            for i in range(1, cfg.transfer.pop_workers + 1)
        ]
    if {"daq", "storage"} & set(host.roles):
        programs.append(gozen_program("storage", "dfmonitor", "storage-dfmonitor"))
    if "storage" in host.roles:
        programs.append(gozen_program("storage", "zfsmonitor", "storage-zfsmonitor"))
        if cfg.archive is not None:
            programs.append(gozen_program("transfer", "export", "transfer-export"))
        if any(n.max_bytes or n.max_age_days for n in cfg.local_nodes(host.name)):
            programs.append(gozen_program("transfer", "retention", "transfer-retention"))
    if "archive" in host.roles and cfg.archive_local_dir() is not None:  # a directory here: play the archive
        programs.append(gozen_program("archive", "simulator", "archive-simulator"))
    if "monitors" in host.roles:
        if cfg.monitors.simulator.enabled:  # the devices the monitors read, before the monitors
            programs += [gozen_program("sim", n, f"sim-{n}", startsecs=1) for n in ("alpaca", "gpsd")]
        programs += [
            gozen_program("monitor", n, f"monitor-{n}")
            for n in ("telescope", "weather", "gpstime", "temperature", "power", "safety")
        ]
    if "queue" in host.roles:  # a shutdown recipe exits 0: it stays stopped
        programs.append(gozen_program("queue", "server", "queue-server", autorestart="unexpected"))
    if "couriers" in host.roles:
        feeds = [f for f in ("cneos", "gaia", "mpec", "maxi") if getattr(cfg.couriers, f).url]
        if cfg.couriers.gcn is not None and "maxi" not in feeds:
            feeds.append("maxi")
        programs += [gozen_program("courier", f, f"courier-{f}") for f in feeds]
        programs.append(gozen_program("courier", "watch", "courier-watch"))
        programs.append(gozen_program("courier", "sender", "courier-sender"))
    if "web" in host.roles:
        programs.append(gozen_program("www", "dashboard", "dashboard"))
    programs += [
        Program(
            p.group,
            p.name,
            tuple(shlex.split(p.command)),
            startsecs=p.startsecs,
            autostart=p.autostart,
            autorestart=p.autorestart,
        )
        for p in host.programs
    ]
    return programs
