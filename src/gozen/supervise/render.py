"""Render a host's supervisord.conf from gozen.yaml.

Every value is checked before it is written: supervisord.conf is an INI file, so a line break
in a path or password could add a section (a program of someone else's choosing).
"""

from __future__ import annotations

import configparser
import re
import shlex
from collections import defaultdict
from pathlib import Path

from gozen import __version__
from gozen.config import CONFIG_ENV, DATA_DIR_ENV, Config, ConfigError, Host
from gozen.service import HOST_ENV
from gozen.supervise.access import ensure_password_file, supervisor_password
from gozen.supervise.programs import Program, programs_for

LOG_MAX_BYTES = "10MB"
LOG_BACKUPS = 3


# What supervisord's INI reader would not keep as written: control characters (a line break starts
# a new line, perhaps a new section) and `;`/`#` after white space (the rest becomes a comment).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]|\s[;#]")


class UnsafeConfValue(ConfigError):
    """A value that supervisord.conf cannot hold as it is; the message names the key."""


def _esc(value: str, key: str) -> str:
    """`value` as supervisord reads it back: checked, with % doubled (supervisord expands %(name)s)."""
    found = _UNSAFE.search(value)
    if found:
        what = "a control character (line break?)" if found.group()[0] < " " else f"{found.group()[-1]!r} after a space"
        raise UnsafeConfValue(f"{key}: cannot go into supervisord.conf: it holds {what}")
    return value.replace("%", "%%")


def _env(values: dict[str, str]) -> str:
    for k, v in values.items():
        if '"' in v:
            raise UnsafeConfValue(f"{k}: cannot go into supervisord.conf's environment: it holds a double quote")
    return ",".join(f'{k}="{_esc(v, k)}"' for k, v in values.items())


def render_supervisord_conf(cfg: Config, host: Host, config_file: Path | None, workdir: Path) -> str:
    """The text of supervisord.conf for `host`: the registry's programs for it, each run as
    `python -m gozen run GROUP:NAME`.

    supervisord listens on host.supervisor_bind (loopback unless supervisor.address is set) with
    the password from the config or the install's password file (made here if missing);
    UnsafeConfValue names a value that cannot be written.
    """
    env = {HOST_ENV: host.name, DATA_DIR_ENV: str(cfg.data_dir), "PYTHONUNBUFFERED": "1"}
    if config_file is not None:
        env[CONFIG_ENV] = str(config_file.resolve())
    programs = programs_for(cfg, host)
    parts = [_supervisord_sections(cfg, host, workdir, env)]
    groups: dict[str, list[str]] = defaultdict(list)
    for p in programs:
        parts.append(_program_section(p, cfg.log_dir / f"{host.name}-{p.group}-{p.name}", workdir))
        if p.listener_events is None:
            groups[p.group].append(f"{p.group}-{p.name}")
    _check_listener_groups(programs)
    for group, names in groups.items():
        parts.append(f"[group:{group}]\nprograms={','.join(names)}\npriority={GROUP_PRIORITY.get(group, 999)}\n")
    text = "\n".join(parts)
    _check_sections(text, programs, groups)
    return text


def _supervisord_sections(cfg: Config, host: Host, workdir: Path, env: dict[str, str]) -> str:
    sup = host.supervisor
    key = f"hosts.{host.name}.supervisor"
    if sup.password is None and sup.password_file is not None:
        ensure_password_file(sup.password_file)  # the install's password is chosen on the first render
    user = f"user={_esc(sup.user, key + '.user')}\n" if sup.user else ""
    credentials = (
        f"username={_esc(sup.username, key + '.username')}\n"
        f"password={_esc(supervisor_password(host), key + '.password')}\n"
    )
    address = f"{_esc(host.supervisor_bind, key + '.address')}:{sup.port}"
    log_dir, run_dir = cfg.log_dir, cfg.run_dir
    return f"""; Rendered by `gozen up --host {host.name}`; edit gozen.yaml, not this file.
[supervisord]
nodaemon=true
identifier=gozen-{__version__}-{host.name}
{user}logfile={_esc(str(log_dir / f"supervisord-{host.name}.log"), "data_dir")}
logfile_maxbytes={LOG_MAX_BYTES}
logfile_backups={LOG_BACKUPS}
pidfile={_esc(str(run_dir / f"supervisord-{host.name}.pid"), "data_dir")}
childlogdir={_esc(str(log_dir), "data_dir")}
directory={_esc(str(workdir), "working directory")}
environment={_env(env)}

[inet_http_server]
port={address}
{credentials}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=http://{address}
{credentials}"""


class ProgramGroupClash(ConfigError):
    """Two supervisord groups of one name: an event listener's (its section is named by its group) and another's."""


def _check_listener_groups(programs: list[Program]) -> None:
    """An event listener is a process group of its own, named by its group: no other program may use that
    name (supervisord would refuse to start, or one group would hide the other)."""
    for p in programs:
        if p.listener_events is None:
            continue
        other = next((q for q in programs if q is not p and q.group == p.group), None)
        if other is not None:
            raise ProgramGroupClash(
                f"programs: group {p.group!r} holds the event listener {p.full_name} and also {other.full_name}: "
                "supervisord makes a listener's group a process group of its own, so give one of them another "
                "group (hosts[].programs or the registry)"
            )


def _check_sections(text: str, programs: list[Program], groups: dict[str, list[str]]) -> None:
    """Read the text back as supervisord will: exactly the sections meant, nothing slipped in."""
    ini = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=True)
    try:
        ini.read_string(text)
    except configparser.Error as err:
        raise UnsafeConfValue(f"supervisord.conf would not read back: {err}") from None
    meant = {"supervisord", "inet_http_server", "rpcinterface:supervisor", "supervisorctl"}
    meant |= {f"group:{g}" for g in groups}
    meant |= {
        f"eventlistener:{p.group}" if p.listener_events is not None else f"program:{p.group}-{p.name}" for p in programs
    }
    if set(ini.sections()) != meant:
        raise UnsafeConfValue(f"supervisord.conf would hold other sections: {sorted(set(ini.sections()) ^ meant)}")


# supervisord starts groups in ascending priority and stops them in descending: the device
# simulators come up before the monitors that read them and go down after them, so a clean
# stop does not look like a device that stopped answering.
GROUP_PRIORITY = {"sim": 100}


def _program_section(p: Program, log: Path, workdir: Path) -> str:
    command = _esc(shlex.join(p.command_line), f"programs {p.full_name} command")
    log_key = "data_dir"
    if p.listener_events is not None:
        # A listener's stdout is the protocol channel: it logs to stderr only.
        head = f"[eventlistener:{p.group}]\nprocess_name={p.name}\nevents={p.listener_events}\nbuffer_size=1024\n"
        logs = f"stderr_logfile={_esc(str(log), log_key)}.err.log\n"
    else:
        # Section names are global in supervisord: prefix the group, show the bare name.
        head = f"[program:{p.group}-{p.name}]\nprocess_name={p.name}\n"
        logs = (
            f"stdout_logfile={_esc(str(log), log_key)}.out.log\nstderr_logfile={_esc(str(log), log_key)}.err.log\n"
            f"stdout_logfile_maxbytes={LOG_MAX_BYTES}\nstdout_logfile_backups={LOG_BACKUPS}\n"
        )
    return (
        f"{head}command={command}\ndirectory={_esc(str(workdir), 'working directory')}\n"
        f"autostart={str(p.autostart).lower()}\n"
        f"autorestart={p.autorestart if isinstance(p.autorestart, str) else str(p.autorestart).lower()}\n"
        f"startsecs={p.startsecs}\nstartretries=5\n"
        f"stopwaitsecs=15\nstopasgroup=true\nkillasgroup=true\n"
        f"stderr_logfile_maxbytes={LOG_MAX_BYTES}\nstderr_logfile_backups={LOG_BACKUPS}\n{logs}"
    )
