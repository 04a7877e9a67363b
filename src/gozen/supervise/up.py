"""`gozen up`: migrate the database, render this host's supervisord.conf, run supervisord.

supervisord replaces this process (exec), so Ctrl-C or SIGTERM reach it directly and it
stops every program before it exits.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from gozen.config import Config, ConfigError, Host
from gozen.supervise.render import render_supervisord_conf


def this_host(cfg: Config, name: str | None) -> Host:
    """The host named, else the only host, else the one whose name is this machine's."""
    if name:
        return cfg.host(name)
    if len(cfg.hosts) == 1:
        return cfg.hosts[0]
    me = socket.gethostname()
    for h in cfg.hosts:
        if h.name in (me, me.split(".")[0]):
            return h
    raise ConfigError(
        f"several hosts are configured and none is named {me!r}: pass --host ({', '.join(h.name for h in cfg.hosts)})"
    )


def prepare(cfg: Config, host: Host, config_file: Path | None) -> Path:
    """Create the data dirs and write supervisord.conf; returns its path."""
    for d in (cfg.data_dir, cfg.log_dir, cfg.run_dir):
        d.mkdir(parents=True, exist_ok=True)
    # Volumes and nodes given relative to data_dir are the simulator's directories: make them.
    # Absolute ones are real mounts; a missing mount must show as offline, not be papered over.
    for v in [*cfg.daq_volumes, *cfg.storage_nodes]:
        if not v.path.is_absolute() and v.host in (None, host.name):
            cfg.under_data_dir(v.path).mkdir(parents=True, exist_ok=True)
    conf = cfg.run_dir / f"supervisord-{host.name}.conf"
    conf.write_text(render_supervisord_conf(cfg, host, config_file, Path.cwd()))
    return conf


def exec_supervisord(conf: Path) -> None:
    args = [sys.executable, "-m", "supervisor.supervisord", "--nodaemon", "--configuration", str(conf)]
    os.execv(sys.executable, args)
