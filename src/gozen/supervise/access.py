"""How a host's supervisord is reached: its address from here and its XML-RPC credentials.

`gozen up` writes them into supervisord.conf and the CLI and web app read them from the same
config and password file, so both ends always agree.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import urllib.parse
from pathlib import Path

from gozen.addresses import is_loopback
from gozen.config import ConfigError, Host, supervisor_password_problem

log = logging.getLogger(__name__)


class SupervisorPasswordMissing(ConfigError):
    """The password file `gozen up` makes is not there (yet), or cannot be read."""


def supervisor_password(host: Host) -> str:
    """The password of `host`'s supervisord: from the config, else from its password file."""
    sup = host.supervisor
    if sup.password is not None:
        return sup.password
    if sup.password_file is None:  # a Config built without load_config/parse_config
        raise SupervisorPasswordMissing(f"hosts.{host.name}.supervisor: neither password nor password_file is set")
    try:
        text = sup.password_file.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise SupervisorPasswordMissing(
            f"{host.name}: no supervisord password yet ({sup.password_file} is made by `gozen up`)"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SupervisorPasswordMissing(f"{host.name}: cannot read {sup.password_file}: {err}") from None
    why = "it is empty" if not text else supervisor_password_problem(text)
    if why:
        raise SupervisorPasswordMissing(f"{sup.password_file}: not a usable supervisord password: {why}")
    return text


def ensure_password_file(path: Path) -> bool:
    """Make `path` (0600) with a new random password unless it exists; True when it was made.

    Safe when several `gozen up` share one data_dir: the file appears whole or not at all.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
        os.link(tmp, path)  # fails if another `gozen up` made it first: theirs is kept
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    log.info("made a supervisord password file=%s", path)
    return True


def connect_address(host: Host) -> str:
    """Where to reach `host`'s supervisord from this machine.

    An explicit supervisor.address is used as is. Without one supervisord listens on loopback only:
    reachable as 127.0.0.1 when the host is this machine, else not at all (its own address is tried
    and refused, and the host is shown unreachable).
    """
    if host.supervisor.address or is_loopback(host.address):
        return host.supervisor_bind
    return host.supervisor_bind if _is_this_machine(host.address) else host.address


@functools.lru_cache(maxsize=256)
def _is_this_machine(address: str) -> bool:
    """True when `address` belongs to one of this machine's interfaces (binding to it works)."""
    try:
        infos = socket.getaddrinfo(address, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return False
    for *_, sockaddr in infos:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((sockaddr[0], 0))
            except OSError:
                continue
            return True
    return False


def rpc_url(host: Host) -> str:
    """http://user:password@address:port/RPC2 with the credentials percent-quoted (any of `@/:%` works)."""
    user = urllib.parse.quote(host.supervisor.username, safe="")
    password = urllib.parse.quote(supervisor_password(host), safe="")
    return f"http://{user}:{password}@{connect_address(host)}:{host.supervisor.port}/RPC2"
