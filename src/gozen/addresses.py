"""Host names, IP addresses and host:port strings as gozen.yaml gives them: checked, and told apart."""

from __future__ import annotations

import ipaddress
import re

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")
LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def host_problem(text: str, ipv6: bool = True) -> str | None:
    """Why `text` is not an IP address or a host name (None when it is one)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if _HOST_NAME.match(text) and not text.replace(".", "").isdigit():
            return None
        return f"not an IP address or host name, got {text!r}"
    if ip.version == 6 and not ipv6:
        return f"an IPv4 address or host name is needed here (IPv6 is not supported), got {text!r}"
    return None


def host_port_problem(text: str) -> str | None:
    """Why `text` is not `host:port` (IPv6 as `[::1]:port`); None when it is."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        return f"expected host:port, e.g. 127.0.0.1:11111, got {text!r}"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"the port must be a number from 1 to 65535, got {text!r}"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return f"write an IPv6 address in brackets, e.g. [::1]:11111, got {text!r}"
    why = host_problem(host)
    return None if why is None else f"expected host:port: the host is {why}"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`: addresses only this machine can reach."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
