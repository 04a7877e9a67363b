"""What `gozen run COMPONENT` starts: the entry point of every supervisord program."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from gozen.config import Config

log = logging.getLogger(__name__)


def _host_and_engine(cfg: Config) -> tuple[str, Engine]:
    from gozen.db.engine import make_engine
    from gozen.supervise.render import HOST_ENV

    return os.environ.get(HOST_ENV) or socket.gethostname(), make_engine(cfg.database_url)


def run_dashboard(cfg: Config) -> None:
    import uvicorn

    from gozen.web.app import create_app

    uvicorn.run(
        create_app(cfg), host=cfg.web.bind, port=cfg.web.port, log_level="info", proxy_headers=False, access_log=False
    )


def run_event_listener(cfg: Config, host: str, engine: Engine) -> None:
    from gozen.supervise.listener import run_listener

    # stdout is supervisord's protocol channel: logging must go to stderr (basicConfig's default).
    run_listener(engine, host)


def run_daq(cfg: Config, host: str, engine: Engine, which: str) -> None:
    kind, _, number = which.partition("-")
    if kind == "control":
        from gozen.daq.control import run_control

        run_control(cfg, engine, host)
    elif kind == "readout":
        from gozen.daq.readout import run_readout

        run_readout(cfg, engine, int(number) - 1, host)
    else:
        from gozen.daq.writer import run_writer

        run_writer(cfg, engine, int(number) - 1, host)


def run_transfer(cfg: Config, host: str, engine: Engine, which: str) -> None:
    from gozen.transfer.agents import CopyAgent, run_push
    from gozen.transfer.export import Exporter
    from gozen.transfer.janitor import run_janitor
    from gozen.transfer.retention import Retention

    if which == "push":
        run_push(cfg, engine, host)
    elif which == "janitor":
        run_janitor(cfg, engine, host)
    elif which == "export":
        Exporter(cfg, engine, host).run()
    elif which == "retention":
        Retention(cfg, engine, host).run()
    else:
        CopyAgent(cfg, engine, host, f"transfer:{which}").run()


def run_dfmonitor(cfg: Config, host: str, engine: Engine) -> None:
    from gozen.monitors.df import DfMonitor

    DfMonitor(cfg, engine, host).run()


def run_zfsmonitor(cfg: Config, host: str, engine: Engine) -> None:
    from gozen.monitors.zfs import ZfsMonitor

    ZfsMonitor(engine, host).run()


def run_monitor(cfg: Config, host: str, engine: Engine, which: str) -> None:
    from gozen.monitors.base import Monitor

    m = cfg.monitors
    common: dict[str, Any] = {"engine": engine, "host": host, "every_s": m.every_s, "start_grace_s": m.start_grace_s}
    monitor: Monitor
    if which == "telescope":
        from gozen.monitors.alpaca import TelescopeMonitor

        monitor = TelescopeMonitor(**common, where=m.telescope)
    elif which == "weather":
        from gozen.monitors.alpaca import WeatherMonitor

        monitor = WeatherMonitor(**common, where=m.weather, safety=m.safety_monitor)
    elif which == "gpstime":
        from gozen.monitors.gps import GpsMonitor

        monitor = GpsMonitor(**common, where=m.gpsd)
    elif which == "temperature":
        from gozen.monitors.temperature import TemperatureMonitor

        monitor = TemperatureMonitor(**common, command=m.sensors_command, mapping=m.sensors_map)
    elif which == "power":
        from gozen.monitors.power import PowerMonitor

        monitor = PowerMonitor(**common, command=m.ups_command)
    else:
        from gozen.monitors.safety import SafetyMonitor

        limits = m.safety
        if m.simulator.enabled and m.simulator.dark_sky:  # the simulated sky is dark at any hour
            limits = limits.model_copy(update={"max_sun_alt_deg": 90.0})
        monitor = SafetyMonitor(**common, limits=limits, site=cfg.site, history_days=m.history_days)
    monitor.run()


def run_device_simulator(cfg: Config, which: str) -> None:
    if which == "alpaca":
        from gozen.devices.alpaca_sim import run_alpaca_sim

        run_alpaca_sim(cfg)
    else:
        from gozen.devices.gpsd_sim import run_gpsd_sim

        run_gpsd_sim(cfg)


def run_courier(cfg: Config, host: str, engine: Engine, which: str) -> None:
    if which == "sender":
        from gozen.couriers.outbox import Sender

        Sender(cfg, engine, host).run()
    elif which == "watch":
        from gozen.couriers.watch import Watcher

        Watcher(cfg, engine, host).run()
    else:
        from gozen.couriers.courier import Courier

        Courier(cfg, engine, host, which).run()


def _program(body: Callable[[Config, str, Engine], None]) -> Callable[[Config], None]:
    """A long-running program: told its host, given an engine, and quiet on Ctrl-C at `gozen up`."""

    def run(cfg: Config) -> None:
        host, engine = _host_and_engine(cfg)
        try:
            body(cfg, host, engine)
        except KeyboardInterrupt:
            pass  # Ctrl-C reaches the whole process group: stop quietly

    return run


def component(name: str) -> Callable[[Config], None] | None:
    """The runner of `gozen run NAME`: dashboard, event-listener, daq-*, transfer-*, storage-*, archive-*."""
    if name == "dashboard":
        return run_dashboard
    if name == "event-listener":
        return _program(run_event_listener)
    if name == "storage-dfmonitor":
        return _program(run_dfmonitor)
    if name == "storage-zfsmonitor":
        return _program(run_zfsmonitor)
    if name == "daq-control" or re.fullmatch(r"daq-(readout|writer)-\d{2}", name):
        return _program(lambda cfg, host, engine: run_daq(cfg, host, engine, name.removeprefix("daq-")))
    if re.fullmatch(r"monitor-(telescope|weather|gpstime|temperature|power|safety)", name):
        return _program(lambda cfg, host, engine: run_monitor(cfg, host, engine, name.removeprefix("monitor-")))
    if re.fullmatch(r"courier-(cneos|gaia|mpec|maxi|watch|sender)", name):
        return _program(lambda cfg, host, engine: run_courier(cfg, host, engine, name.removeprefix("courier-")))
    if name == "queue-server":
        from gozen.queue.server import run_queue_server

        return _program(run_queue_server)
    if name in ("sim-alpaca", "sim-gpsd"):
        return _program(lambda cfg, host, engine: run_device_simulator(cfg, name.removeprefix("sim-")))
    if name == "archive-simulator":
        from gozen.transfer.export import run_simulator as run_archive

        return _program(lambda cfg, host, engine: run_archive(cfg))
    if re.fullmatch(r"transfer-(push|janitor|export|retention|pop-\d{2})", name):
        return _program(lambda cfg, host, engine: run_transfer(cfg, host, engine, name.removeprefix("transfer-")))
    return None
