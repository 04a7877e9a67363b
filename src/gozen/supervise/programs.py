"""THE program registry: every long-running gozen program, the hosts it runs on and what it runs.

`gozen up` renders supervisord.conf from it (supervise/render.py), `gozen run GROUP:NAME` starts
a program from it (supervise/launch.py) and `gozen run --help` lists it. Programs are named
`group:name` as in the seed's process monitor. A program's `entry` names either a `Service`
subclass (run by `run_service`) or a function `main(ctx)`; both are given a `gozen.service.Context`
with the program's `args`.
"""

from __future__ import annotations

import importlib
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gozen.config import FEEDS, Config, FeedName, Host, Role

Where = Callable[[Config, Host], bool]


@dataclass(frozen=True, eq=False)
class Program:
    group: str
    name: str
    roles: frozenset[Role]  # it runs on a host with any of these roles; empty: on every host
    entry: str  # "module:attr": a Service subclass or a function main(ctx)
    summary: str  # one line for `gozen run --help`
    args: Mapping[str, Any] = field(default_factory=dict)
    cpus: tuple[int, ...] | None = None  # the CPUs it is pinned to (None: chosen when it starts)
    where: Where | None = None  # it runs only where this holds too (a feed with a URL, an archive ...)
    listener_events: str | None = None  # set for supervisord event listeners
    startsecs: int = 2
    autostart: bool = True
    autorestart: bool | str = True  # or "unexpected": restarted unless it exits 0 (a clean shutdown)
    command: tuple[str, ...] | None = None  # a hosts[].programs entry: its own command line, no entry

    @property
    def full_name(self) -> str:
        return f"{self.group}:{self.name}"

    @property
    def command_line(self) -> tuple[str, ...]:
        """What supervisord runs: `python -m gozen run GROUP:NAME` with this interpreter."""
        return self.command or (sys.executable, "-m", "gozen", "run", self.full_name)

    def runs_on(self, cfg: Config, host: Host) -> bool:
        wanted = not self.roles or bool(self.roles & set(host.roles))
        return wanted and (self.where is None or self.where(cfg, host))


def _daq_workers(kind: str, count: int, cpus: list[int] | None, summary: str) -> list[Program]:
    """daq:<kind>-01 .. -NN, each `gozen.daq.<kind>:main` told its index and pinned to `cpus`."""
    return [
        Program(
            "daq",
            f"{kind}-{i + 1:02d}",
            frozenset({"daq"}),
            f"gozen.daq.{kind}:main",
            summary,
            args={"index": i},
            cpus=None if cpus is None else tuple(cpus),
        )
        for i in range(count)
    ]


def _monitor(name: str, entry: str, summary: str) -> Program:
    return Program("monitor", name, frozenset({"monitors"}), entry, summary)


def _courier(feed: FeedName) -> Program:
    return Program(
        "courier",
        feed,
        frozenset({"couriers"}),
        "gozen.couriers.courier:Courier",
        f"reads the {feed} alert feed and queues messages about what is new",
        args={"feed": feed},
        where=lambda cfg, _host: _feed_is_read(cfg, feed),
    )


def _feed_is_read(cfg: Config, feed: FeedName) -> bool:
    # MAXI notices come from its URL or from GCN Kafka.
    return cfg.feed_in_use(feed).url is not None or (feed == "maxi" and cfg.couriers.gcn is not None)


def _has_node_quotas(cfg: Config, host: Host) -> bool:
    return any(n.max_bytes or n.max_age_days for n in cfg.local_nodes(host.name))


def registry(cfg: Config) -> list[Program]:
    """Every gozen program of this config, on whichever host, in the order supervisord starts them."""
    return [
        Program(
            "supervise",
            "events",
            frozenset(),
            "gozen.supervise.listener:main",
            "records every process state change of this host's supervisord as an event",
            listener_events="PROCESS_STATE,TICK_60",  # the ticks are its heartbeat
            startsecs=1,
        ),
        Program(
            "daq",
            "control",
            frozenset({"daq", "daq-master"}),
            "gozen.daq.control:Control",
            "arms the requested exposures on every DAQ host and closes the books on them",
            # One for the whole camera: on the host with role daq-master, else the first DAQ host.
            where=lambda cfg, host: host.name == cfg.daq_control_host(),
        ),
        *_daq_workers(
            "readout", cfg.daq.readouts, cfg.daq.readout_cpus, "reads its share of the chips into shared-memory rings"
        ),
        *_daq_workers(
            "writer", cfg.daq.writers, cfg.daq.writer_cpus, "writes FITS files from the rings and catalogues them"
        ),
        Program(
            "daq",
            "quicklook",
            frozenset({"daq"}),
            "gozen.daq.quicklook:QuickLook",
            "pictures and sky statistics of each chip's first frame, off the writers' path",
            where=lambda cfg, _host: cfg.daq.quicklook.enabled,
        ),
        # They touch the DAQ volumes, so they run where the DAQ does.
        Program("transfer", "push", frozenset({"daq"}), "gozen.transfer.agents:Pusher", "queues new files for copying"),
        Program(
            "transfer",
            "janitor",
            frozenset({"daq"}),
            "gozen.transfer.janitor:Janitor",
            "frees the DAQ volumes of files with enough verified copies",
        ),
        *(
            Program(
                "transfer",
                f"pop-{i:02d}",
                frozenset({"daq", "buffer"}),  # where the DAQ files can be read: on the DAQ host, or pulled
                "gozen.transfer.agents:CopyAgent",
                "copies queued files to the storage nodes (fsynced; proven by the node's host)",
            )
            for i in range(1, cfg.transfer.pop_workers + 1)
        ),
        Program(
            "storage",
            "dfmonitor",
            frozenset({"daq", "storage"}),
            "gozen.monitors.df:DfMonitor",
            "measures the DAQ volumes' and storage nodes' free space",
        ),
        Program(
            "storage",
            "rsyncd",
            frozenset(),
            "gozen.transfer.rsyncd:main",
            "the rsync daemon serving this host's storage nodes, DAQ volumes and archive directory",
            where=lambda _cfg, host: host.rsync_port is not None,
            startsecs=1,
        ),
        Program(
            "storage",
            "prover",
            frozenset({"storage"}),
            "gozen.transfer.prover:Prover",
            "proves copies on this host's storage nodes by reading them back from disk",
            where=lambda cfg, host: bool(cfg.local_nodes(host.name)),
        ),
        Program(
            "storage", "zfsmonitor", frozenset({"storage"}), "gozen.monitors.zfs:ZfsMonitor", "watches the ZFS pools"
        ),
        Program(
            "transfer",
            "export",
            frozenset({"storage"}),
            "gozen.transfer.export:Exporter",
            "exports verified files to the public archive",
            where=lambda cfg, _host: cfg.archive is not None,
        ),
        Program(
            "transfer",
            "retention",
            frozenset({"storage"}),
            "gozen.transfer.retention:Retention",
            "trims this host's storage nodes to their max_bytes and max_age_days",
            where=_has_node_quotas,
        ),
        Program(
            "archive",
            "simulator",
            frozenset({"archive"}),
            "gozen.transfer.export:ArchiveSimulator",
            "plays the public archive in a local directory",
            where=lambda cfg, host: cfg.holds_archive(host.name),
        ),
        # The devices the monitors read, before the monitors.
        *(
            Program(
                "sim",
                device,
                frozenset({"monitors"}),
                f"gozen.devices.simulators.{device}:main",
                f"simulates the {what}",
                where=lambda cfg, _host: cfg.monitors.simulator.enabled,
                startsecs=1,
            )
            for device, what in (
                ("alpaca", "Alpaca telescope, weather, safety, dome and (driver alpaca) camera devices"),
                ("gpsd", "GPS (gpsd)"),
            )
        ),
        _monitor(
            "telescope",
            "gozen.monitors.alpaca:TelescopeMonitor",
            "puts the telescope's position and state on the status board",
        ),
        _monitor(
            "weather",
            "gozen.monitors.alpaca:WeatherMonitor",
            "puts the weather and the safety monitor's word on the status board",
        ),
        _monitor("gpstime", "gozen.monitors.gps:GpsMonitor", "puts the GPS time and fix on the status board"),
        _monitor(
            "temperature", "gozen.monitors.temperature:TemperatureMonitor", "puts the thermometers on the status board"
        ),
        _monitor("power", "gozen.monitors.power:PowerMonitor", "puts the UPS on the status board"),
        _monitor(
            "safety",
            "gozen.monitors.safety:SafetyMonitor",
            "decides whether it is safe to observe; trims the status history",
        ),
        Program(
            "queue",
            "server",
            frozenset({"queue"}),
            "gozen.queue.server:QueueServer",
            "runs the queued observation recipes",
            autorestart="unexpected",  # a shutdown recipe exits 0: it stays stopped
        ),
        Program(
            "sim",
            "feeds",
            frozenset({"couriers"}),
            "gozen.devices.simulators.feeds:main",
            "plays the CNEOS, Gaia, MAXI and MPEC feeds and a Slack stand-in",
            where=lambda cfg, host: cfg.sim_feeds_host() is host,
            startsecs=1,
        ),
        *(_courier(feed) for feed in FEEDS),
        Program(
            "courier",
            "gw",
            frozenset({"couriers"}),
            "gozen.couriers.gw:GwCourier",
            "reads gravitational-wave alerts from GCN Kafka and queues their tiled follow-ups",
            # GW alerts come only over GCN Kafka, with the couriers.gcn credentials.
            where=lambda cfg, _host: cfg.couriers.gcn is not None and cfg.couriers.gw.enabled,
        ),
        Program(
            "fleet",
            "watch",
            frozenset({"couriers"}),
            "gozen.supervise.fleet:FleetWatch",
            "checks every host's supervisord, rsync daemon and the database; tells when one is unreachable",
        ),
        Program(
            "courier",
            "watch",
            frozenset({"couriers"}),
            "gozen.couriers.watch:Watcher",
            "turns failure events into messages",
        ),
        Program(
            "courier",
            "sender",
            frozenset({"couriers"}),
            "gozen.couriers.outbox:Sender",
            "posts the outbox's messages to Slack and the other notifiers",
        ),
        Program("www", "dashboard", frozenset({"web"}), "gozen.web.app:main", "serves the web pages and the JSON API"),
        Program(
            "www",
            "report",
            frozenset({"web"}),
            "gozen.report.nightly:Reporter",
            "makes each night's report after the morning twilight and posts it to Slack",
            where=lambda cfg, _host: cfg.reports.enabled,
        ),
    ]


def programs_for(cfg: Config, host: Host) -> list[Program]:
    """The programs `gozen up --host NAME` starts: the registry's for this host, then its own extra ones."""
    return [p for p in registry(cfg) if p.runs_on(cfg, host)] + [
        Program(
            p.group,
            p.name,
            frozenset(),
            "",
            "configured in hosts[].programs",
            startsecs=p.startsecs,
            autostart=p.autostart,
            autorestart=p.autorestart,
            command=tuple(shlex.split(p.command)),
        )
        for p in host.programs
    ]


class UnknownProgram(LookupError):
    """`gozen run` was given a name the registry does not hold."""


def find_program(cfg: Config, name: str) -> Program:
    """The program `GROUP:NAME` (or its supervisord section name, `GROUP-NAME`)."""
    for p in registry(cfg):
        if name in (p.full_name, f"{p.group}-{p.name}"):
            return p
    raise UnknownProgram(f"no program {name!r} (`gozen run --help` lists them)")


def load_entry(program: Program) -> Any:
    """The Service subclass or function `program.entry` names (imported now)."""
    module, _, attr = program.entry.partition(":")
    return getattr(importlib.import_module(module), attr)
