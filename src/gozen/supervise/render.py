"""Render a host's supervisord.conf from gozen.yaml."""

from __future__ import annotations

import os
import shlex
from collections import defaultdict
from pathlib import Path

from gozen.config import CONFIG_ENV, DATA_DIR_ENV, Config, Host
from gozen.supervise.programs import Program, programs_for

HOST_ENV = "GOZEN_HOST"
LOG_MAX_BYTES = "10MB"
LOG_BACKUPS = 3


def _esc(value: str) -> str:
    """supervisord expands %(name)s in values: a literal % must be doubled."""
    return value.replace("%", "%%")


def _env(values: dict[str, str]) -> str:
    return ",".join(f'{k}="{_esc(v)}"' for k, v in values.items())


def render_supervisord_conf(cfg: Config, host: Host, config_file: Path | None, workdir: Path) -> str:
    """The text of supervisord.conf for `host`; programs run `python -m gozen run COMPONENT`."""
    log_dir, run_dir = cfg.log_dir, cfg.run_dir
    sup = host.supervisor
    env = {HOST_ENV: host.name, DATA_DIR_ENV: str(cfg.data_dir), "PYTHONUNBUFFERED": "1"}
    if config_file is not None:
        env[CONFIG_ENV] = str(config_file.resolve())
    parts = [
        f"""; Rendered by `gozen up --host {host.name}`; edit gozen.yaml, not this file.
[supervisord]
nodaemon=true
identifier=gozen-{host.name}
{"user=root" if os.geteuid() == 0 else ""}
logfile={_esc(str(log_dir / f"supervisord-{host.name}.log"))}
logfile_maxbytes={LOG_MAX_BYTES}
logfile_backups={LOG_BACKUPS}
pidfile={_esc(str(run_dir / f"supervisord-{host.name}.pid"))}
childlogdir={_esc(str(log_dir))}
directory={_esc(str(workdir))}
environment={_env(env)}

[inet_http_server]
port={host.address}:{sup.port}
username={_esc(sup.username)}
password={_esc(sup.password)}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=http://{host.address}:{sup.port}
username={_esc(sup.username)}
password={_esc(sup.password)}
"""
    ]
    groups: dict[str, list[str]] = defaultdict(list)
    for p in programs_for(cfg, host):
        parts.append(_program_section(p, cfg.log_dir / f"{host.name}-{p.group}-{p.name}", workdir))
        if p.listener_events is None:
            groups[p.group].append(f"{p.group}-{p.name}")
    for group, names in groups.items():
        parts.append(f"[group:{group}]\nprograms={','.join(names)}\n")
    return "\n".join(parts)


def _program_section(p: Program, log: Path, workdir: Path) -> str:
    command = shlex.join(p.command)
    if p.listener_events is not None:
        # A listener's stdout is the protocol channel: it logs to stderr only.
        head = f"[eventlistener:{p.group}]\nprocess_name={p.name}\nevents={p.listener_events}\nbuffer_size=1024\n"
        logs = f"stderr_logfile={_esc(str(log))}.err.log\n"
    else:
        # Section names are global in supervisord: prefix the group, show the bare name.
        head = f"[program:{p.group}-{p.name}]\nprocess_name={p.name}\n"
        logs = (
            f"stdout_logfile={_esc(str(log))}.out.log\nstderr_logfile={_esc(str(log))}.err.log\n"
            f"stdout_logfile_maxbytes={LOG_MAX_BYTES}\nstdout_logfile_backups={LOG_BACKUPS}\n"
        )
    return (
        f"{head}command={_esc(command)}\ndirectory={_esc(str(workdir))}\n"
        f"autostart={str(p.autostart).lower()}\n"
        f"autorestart={p.autorestart if isinstance(p.autorestart, str) else str(p.autorestart).lower()}\n"
        f"startsecs={p.startsecs}\nstartretries=5\n"
        f"stopwaitsecs=15\nstopasgroup=true\nkillasgroup=true\n"
        f"stderr_logfile_maxbytes={LOG_MAX_BYTES}\nstderr_logfile_backups={LOG_BACKUPS}\n{logs}"
    )
