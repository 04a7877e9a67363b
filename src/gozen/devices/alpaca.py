"""Talking ASCOM Alpaca through alpyca: one property at a time, every failure a DeviceUnavailable.

The Alpaca adapters (telescope, weather station, safety monitor, dome) ask their device through
`ask`, so a refused connection, a timeout, a malformed reply or an ASCOM error all reach the
program the same way: `gozen.service.DeviceUnavailable` naming the device and what went wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import requests
from alpaca import exceptions as ascom
from urllib3.exceptions import ProtocolError

from gozen.service import DeviceUnavailable

log = logging.getLogger(__name__)
ASCOM_ERRORS = tuple(
    getattr(ascom, n) for n in dir(ascom) if n.endswith("Exception") and isinstance(getattr(ascom, n), type)
)


def dropped_kept_alive(err: requests.ConnectionError) -> bool:
    """The server closed a kept-alive connection as the request went out: nothing was read, asking again is safe."""
    return bool(err.args) and isinstance(err.args[0], ProtocolError)


def ask(device: Any, member: str, name: str) -> Any:
    """One Alpaca property of `device`; DeviceUnavailable(name) when it cannot be read."""
    return guarded(device, member, name, lambda: getattr(device, member))


def command(device: Any, member: str, name: str, *args: Any) -> Any:
    """One Alpaca method of `device` (e.g. OpenShutter); DeviceUnavailable(name) when it fails."""
    return guarded(device, member, name, lambda: getattr(device, member)(*args))


def guarded(device: Any, member: str, name: str, fn: Callable[[], Any]) -> Any:
    """fn() with every failure told as DeviceUnavailable naming the device, the member and the cause.

    One dropped kept-alive connection is asked again on a new one: the server hung up before
    reading the request (it may close an idle connection just as our next poll goes out).
    """
    for attempt in (1, 2):
        try:
            return fn()
        except requests.Timeout:
            raise DeviceUnavailable(name, f"{member}: no answer from {device.address} (timed out)") from None
        except requests.ConnectionError as err:
            if attempt == 1 and dropped_kept_alive(err):
                log.info("%s at %s dropped a kept-alive connection: asking again", member, device.address)
                continue
            raise DeviceUnavailable(name, f"{member}: cannot connect to {device.address} ({reason(err)})") from None
        except (requests.RequestException, ValueError, KeyError) as err:  # ValueError: malformed JSON
            raise DeviceUnavailable(name, f"{member}: bad reply from {device.address}: {err}") from None
        except ASCOM_ERRORS as err:
            raise DeviceUnavailable(name, f"{member}: the device says {type(err).__name__}: {err}") from None
    raise AssertionError("unreachable")


def optional(device: Any, member: str, name: str) -> Any:
    """A property a device may not implement (ASCOM NotImplemented): None then."""
    try:
        return ask(device, member, name)
    except DeviceUnavailable as err:
        if "NotImplemented" in str(err):
            return None
        raise


def reason(err: requests.ConnectionError) -> str:
    """The innermost cause in a few words: "Connection refused", "Connection reset by peer"."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        inner = getattr(cause, "reason", None)  # urllib3's MaxRetryError
        if not isinstance(inner, BaseException):
            inner = next((a for a in reversed(cause.args) if isinstance(a, BaseException)), None)
        if inner is None:
            text = str(cause)
            errno_text = text.rsplit("] ", 1)[-1] if "[Errno" in text else text.rsplit(": ", 1)[-1]
            return errno_text.strip("\"')(")[:120] or type(cause).__name__
        cause = inner
    return type(err).__name__
