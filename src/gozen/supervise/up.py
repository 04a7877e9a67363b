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
from gozen.service import HOST_ENV
from gozen.supervise.access import ensure_password_file
from gozen.supervise.render import render_supervisord_conf


def this_host(cfg: Config, name: str | None) -> Host:
    """The host named, else $GOZEN_HOST's, else the only host, else the one whose name is this machine's."""
    name = name or os.environ.get(HOST_ENV)
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
    """Create the data dirs, the install's rsync password if a host runs an rsync daemon, and write
    supervisord.conf (0600; it holds the password); returns its path."""
    for d in (cfg.data_dir, cfg.log_dir, cfg.run_dir):
        d.mkdir(parents=True, exist_ok=True)
    # Volumes and nodes given relative to data_dir are the simulator's directories: make them.
    # Absolute ones are real mounts; a missing mount must show as offline, not be papered over.
    for v in [*cfg.daq_volumes, *cfg.storage_nodes]:
        if not v.path.is_absolute() and v.host in (None, host.name):
            cfg.under_data_dir(v.path).mkdir(parents=True, exist_ok=True)
    if cfg.transfer.rsync_password is None and any(h.rsync_port is not None for h in cfg.hosts):
        ensure_password_file(cfg.rsync_password_file)  # the install's rsync password, like supervisord's
    conf = cfg.run_dir / f"supervisord-{host.name}.conf"
    write_private(conf, render_supervisord_conf(cfg, host, config_file, Path.cwd()))
    return conf


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by this user only (0600) from the first byte on."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an old temporary file keeps its mode through O_CREAT
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def exec_supervisord(conf: Path) -> None:
    args = [sys.executable, "-m", "supervisor.supervisord", "--nodaemon", "--configuration", str(conf)]
    os.execv(sys.executable, args)
