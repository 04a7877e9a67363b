"""What is allowed in gozen.yaml but probably not meant: told by `gozen config check` and `gozen up`."""

from __future__ import annotations

import os
from pathlib import Path

from gozen.addresses import is_loopback
from gozen.config import Config


def config_warnings(cfg: Config) -> list[str]:
    """One line per doubtful setting, each naming its key path; empty when all looks meant."""
    return [*config_refusals(cfg), *_roles(cfg), *_cpus(cfg), *_supervisors(cfg), *_secret_files(cfg)]


def config_refusals(cfg: Config) -> list[str]:
    """Settings that load but cannot work across hosts: `gozen config check` exits 2 on them, `gozen up`
    warns (a config whose hosts share one data_dir still runs)."""
    why = cfg.archive_unreachable()
    return [why] if why else []


def _roles(cfg: Config) -> list[str]:
    if not any("daq" in h.roles for h in cfg.hosts):
        return ["hosts: no host has the role daq: nothing takes exposures (fine for a web-only or test setup)"]
    return [
        f"hosts[{i}].chips: {h.name} has role daq but none of camera.chips is among {h.chips}: its readouts "
        "read nothing (camera.chips is the built-in 4-chip camera unless set)"
        for i, h in enumerate(cfg.hosts)
        if "daq" in h.roles and not cfg.chips_of(h.name)
    ]


def _cpus(cfg: Config) -> list[str]:
    count = os.cpu_count() or 1
    out = []
    for key in ("readout_cpus", "writer_cpus"):
        beyond = [c for c in getattr(cfg.daq, key) or [] if c >= count]
        if beyond:
            out.append(
                f"daq.{key}: CPU {', '.join(map(str, beyond))} is beyond this machine's {count} CPUs "
                f"(0-{count - 1}); a DAQ host without it runs on the CPUs it has"
            )
    return out


def _supervisors(cfg: Config) -> list[str]:
    out = []
    for i, h in enumerate(cfg.hosts):
        sup = h.supervisor
        if not is_loopback(h.supervisor_bind) and sup.password is None:
            out.append(
                f"hosts[{i}].supervisor: supervisord listens on {h.supervisor_bind}:{sup.port}, which other machines "
                f"can reach, with the generated password in {sup.password_file}: copy that file to every host "
                "(or set supervisor.password_file to a shared one) and let only gozen's hosts reach the port"
            )
        elif not is_loopback(h.supervisor_bind) and sup.password is not None and len(sup.password) < 12:
            out.append(
                f"hosts[{i}].supervisor.password: shorter than 12 characters, and supervisord listens on "
                f"{h.supervisor_bind}:{sup.port}, which other machines can reach"
            )
        if sup.password_file is not None and _readable_by_others(sup.password_file):
            out.append(
                f"hosts[{i}].supervisor.password_file: {sup.password_file} can be read by other users (chmod 600 it)"
            )
    return out


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & 0o077)
    except OSError:
        return False  # not made yet: `gozen up` makes it 0600


def _secret_files(cfg: Config) -> list[str]:
    files = dict(cfg.secret_files)
    if cfg.transfer.rsync_password is None:
        files["transfer.rsync_password"] = cfg.rsync_password_file
    out = [
        f"{key}: {path} can be read by other users (chmod 600 it)"
        for key, path in files.items()
        if _readable_by_others(path)
    ]
    short = cfg.transfer.rsync_password
    if short is not None and len(short) < 12 and any(h.rsync_port for h in cfg.hosts):
        out.append("transfer.rsync_password: shorter than 12 characters, and gozen's rsync daemons take it")
    return out
