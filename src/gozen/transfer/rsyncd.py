"""`storage:rsyncd`: the rsync daemon on a host with `rsync_port`, serving its storage nodes (read-write),
its DAQ volumes (read-only, `daq-<volume>`) and the archive directory if it holds it.

Only user gozen, with the install's rsync password, gets in, and only from loopback and the configured
hosts' addresses. The program renders rsyncd.conf and its secrets file (both 0600) and then becomes
`rsync --daemon --no-detach`, so supervisord supervises rsync itself.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from gozen.config import ARCHIVE_MODULE, RSYNC_USER, Config, ConfigError, Host
from gozen.service import Context
from gozen.supervise.up import write_private

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
# Without I/O for this long a client is dropped (rsync's own default is never).
IDLE_TIMEOUT_S = 600
LOOPBACK = "127.0.0.0/8"
_MODULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# rsyncd.conf reads a value up to the end of the line, strips the ends and expands %VAR%.
_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f%]")


class RsyncdConfigError(ConfigError):
    """Something in gozen.yaml that rsyncd.conf cannot hold, or no rsync password; names the key."""


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    read_only: bool
    key: str  # the gozen.yaml key it comes from, for messages


def modules_for(cfg: Config, host: Host) -> list[Module]:
    """The modules `host`'s daemon serves: its nodes (rw), its DAQ volumes (ro), the archive directory (rw)."""
    out = [
        Module(n.name, cfg.under_data_dir(n.path), False, f"storage_nodes[{i}]")
        for i, n in enumerate(cfg.storage_nodes)
        if cfg.host_of(n).name == host.name
    ]
    out += [
        Module(f"daq-{v.name}", cfg.under_data_dir(v.path), True, f"daq_volumes[{i}]")
        for i, v in enumerate(cfg.daq_volumes)
        if cfg.host_of(v).name == host.name
    ]
    archive = cfg.archive_local_dir()
    if archive is not None and cfg.holds_archive(host.name):
        out.append(Module(ARCHIVE_MODULE, archive, False, "archive.dest"))
    return out


def modules(cfg: Config, host: Host) -> list[tuple[str, bool]]:
    """(module name, read_only) of each module `host`'s daemon serves (for `gozen fleet check`)."""
    return [(m.name, m.read_only) for m in modules_for(cfg, host)]


def allowed_addresses(cfg: Config) -> list[str]:
    """Loopback and every configured host's address (names resolved: rsyncd does no reverse lookup here)."""
    out = [LOOPBACK]
    for h in cfg.hosts:
        try:
            infos = socket.getaddrinfo(h.address, None, socket.AF_INET, socket.SOCK_STREAM)
        except OSError as err:
            log.warning("host=%s address=%s cannot be resolved, not allowed: %s", h.name, h.address, err)
            continue
        out += [str(info[4][0]) for info in infos]
    return list(dict.fromkeys(out))


def _value(text: str, key: str) -> str:
    if _UNSAFE_VALUE.search(text) or text != text.strip():
        raise RsyncdConfigError(
            f"{key}: cannot go into rsyncd.conf: {text!r} holds a control character, a '%' or spaces at its ends"
        )
    return text


def render_rsyncd_conf(cfg: Config, host: Host, secrets_file: Path) -> str:
    """The text of rsyncd.conf for `host` (its rsync_port must be set)."""
    if host.rsync_port is None:
        raise RsyncdConfigError(f"hosts.{host.name}.rsync_port: not set, so {host.name} runs no rsync daemon")
    allow = " ".join(allowed_addresses(cfg))
    secrets = _value(str(secrets_file), "data_dir")
    lines = [
        f"# Rendered by storage:rsyncd on {host.name}; edit gozen.yaml, not this file.",
        f"address = {_value(host.address, f'hosts.{host.name}.address')}",
        f"port = {host.rsync_port}",
        f"log file = {_value(str(cfg.log_dir / f'rsyncd-{host.name}.log'), 'data_dir')}",
        f"lock file = {_value(str(cfg.run_dir / f'rsyncd-{host.name}.lock'), 'data_dir')}",
        "reverse lookup = no",
        "",
    ]
    for m in modules_for(cfg, host):
        if not _MODULE_NAME.match(m.name):
            raise RsyncdConfigError(f"{m.key}.name: {m.name!r} cannot name an rsync module (letters, digits, . _ -)")
        lines += [
            f"[{m.name}]",
            f"path = {_value(str(m.path), f'{m.key}.path')}",
            # The daemon writes as the user who runs gozen, not as rsyncd's default `nobody` under root.
            f"uid = {os.getuid()}",
            f"gid = {os.getgid()}",
            "use chroot = no",
            "numeric ids = yes",
            f"read only = {'true' if m.read_only else 'false'}",
            "list = no",
            f"auth users = {RSYNC_USER}",
            f"secrets file = {secrets}",
            "strict modes = yes",
            f"hosts allow = {allow}",
            f"max connections = {MAX_CONNECTIONS}",
            f"timeout = {IDLE_TIMEOUT_S}",
            "",
        ]
    return "\n".join(lines)


def write_rsyncd_files(cfg: Config, host: Host) -> Path:
    """Write rsyncd-HOST.conf and its secrets file (0600) under run/, make the simulator's module
    directories (relative paths; a real mount that is missing stays missing); the conf's path."""
    password = cfg.rsync_password()
    if password is None:
        raise RsyncdConfigError(
            f"transfer.rsync_password: not set, and there is no {cfg.rsync_password_file} "
            "(the first `gozen up` makes it; copy it to every host)"
        )
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    secrets_file = cfg.run_dir / f"rsyncd-{host.name}.secrets"
    conf = cfg.run_dir / f"rsyncd-{host.name}.conf"
    text = render_rsyncd_conf(cfg, host, secrets_file)
    for m in modules_for(cfg, host):
        if m.path.is_relative_to(cfg.data_dir):
            m.path.mkdir(parents=True, exist_ok=True)
    write_private(secrets_file, f"{RSYNC_USER}:{password}\n")
    write_private(conf, text)
    return conf


def main(ctx: Context) -> None:
    """Render the daemon's files, then become `rsync --daemon --no-detach` (supervisord watches rsync)."""
    host = ctx.cfg.host(ctx.host)
    conf = write_rsyncd_files(ctx.cfg, host)
    modules = ", ".join(m.name for m in modules_for(ctx.cfg, host)) or "none"
    log.info("host=%s rsync daemon on %s:%s modules=%s", host.name, host.address, host.rsync_port, modules)
    os.execvp("rsync", ["rsync", "--daemon", "--no-detach", f"--config={conf}"])
