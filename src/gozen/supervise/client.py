"""Talk to every host's supervisord over XML-RPC: list processes, start, stop, restart.

All hosts are asked concurrently, so one slow or dead host costs one timeout, not one
per host; a host that does not answer is reported as unreachable, never raised.
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import re
import socket
import time
import xmlrpc.client
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from xml.parsers.expat import ExpatError

from supervisor.xmlrpc import Faults, getFaultDescription

from gozen.config import Config, ConfigError, Host
from gozen.supervise.access import SupervisorPasswordMissing, rpc_url

log = logging.getLogger(__name__)

Action = Literal["start", "stop", "restart"]
DEFAULT_TIMEOUT_S = 3.0

# What supervisor's fault codes (supervisor.xmlrpc.Faults) mean for an operator; others show their name.
_FAULT_TEXT = {
    Faults.BAD_NAME: "no such program",
    Faults.NO_FILE: "its command was not found",
    Faults.NOT_EXECUTABLE: "its command is not executable",
    Faults.FAILED: "failed",
    Faults.ABNORMAL_TERMINATION: "exited before it was running (see its log)",
    Faults.SPAWN_ERROR: "could not be spawned",
    Faults.ALREADY_STARTED: "is already running",
    Faults.NOT_RUNNING: "is not running",
    Faults.SHUTDOWN_STATE: "cannot be changed: supervisord is shutting down",
}


def fault_text(code: int) -> str:
    """An operator's words for a supervisor fault code: `is not running`, else its name (`CANT_REREAD`)."""
    return _FAULT_TEXT.get(code) or getFaultDescription(code)


class ProcessActionError(Exception):
    """A start/stop/restart that supervisord refused, with the host and program named."""


class HostUnreachable(Exception):
    """A host's supervisord did not answer (refused, timed out, or refused our credentials)."""


@dataclass(frozen=True)
class ProcessInfo:
    host: str
    group: str
    name: str
    state: str  # RUNNING, STOPPED, STARTING, BACKOFF, STOPPING, EXITED, FATAL, UNKNOWN
    pid: int | None
    started_at: datetime | None
    stopped_at: datetime | None
    uptime_s: float | None
    exitstatus: int
    spawnerr: str
    description: str
    stdout_tail: str = ""
    stderr_tail: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.group}:{self.name}"


@dataclass(frozen=True)
class HostStatus:
    host: str
    address: str
    port: int
    reachable: bool
    error: str | None = None
    processes: list[ProcessInfo] = field(default_factory=list)
    supervisor_state: str | None = None
    elapsed_s: float = 0.0


# Bytes XML 1.0 forbids (C0 controls but tab, LF, CR). supervisord copies a program's log into its
# answers verbatim, so one BEL in a log would make the whole answer unparsable.
_XML_INVALID = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# What a log tail may carry on to HTML and JSON: text, tabs and line breaks, no terminal controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Identification:
    """What a host's supervisord says it is, and where its clock stands against ours."""

    identifier: str  # supervisord's `identifier` (gozen renders gozen-<version>-<host>)
    clock_offset_s: tuple[float, float] | None  # its clock minus ours lies in (low, high); None: unknown


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        self.last_date: str | None = None  # the Date header of the last answer (supervisord's clock)

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self.timeout_s
        return conn

    def parse_response(self, response: Any) -> Any:
        # As xmlrpc.client.Transport.parse_response, with XML-invalid bytes dropped before parsing
        # (per chunk: such bytes are ASCII and never part of a multi-byte UTF-8 character).
        stream = response
        if hasattr(response, "getheader"):
            self.last_date = response.getheader("Date")
        if hasattr(response, "getheader") and response.getheader("Content-Encoding", "") == "gzip":
            stream = xmlrpc.client.GzipDecodedResponse(response)
        parser, unmarshaller = self.getparser()
        while chunk := stream.read(65536):
            parser.feed(_XML_INVALID.sub(b"", chunk))
        if stream is not response:
            stream.close()
        parser.close()
        return unmarshaller.close()


def _ts(value: int) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


def _process_info(host: str, raw: dict[str, Any]) -> ProcessInfo:
    start, now = raw.get("start", 0), raw.get("now", 0)
    running = raw["statename"] in ("RUNNING", "STOPPING") and start
    return ProcessInfo(
        host=host,
        group=raw["group"],
        name=raw["name"],
        state=raw["statename"],
        pid=raw["pid"] or None,
        started_at=_ts(start),
        stopped_at=_ts(raw.get("stop", 0)),
        uptime_s=float(now - start) if running else None,
        exitstatus=raw.get("exitstatus", 0),
        spawnerr=raw.get("spawnerr", ""),
        description=raw.get("description", ""),
        stdout_tail=raw.get("stdout_tail", ""),
        stderr_tail=raw.get("stderr_tail", ""),
    )


class SupervisorClient:
    """One host's supervisord."""

    def __init__(self, host: Host, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.host = host
        self._timeout_s = timeout_s

    def _proxy(self, transport: _TimeoutTransport | None = None) -> Any:
        # A fresh proxy per call: ServerProxy is not safe to share between threads. The address and
        # password come from where `gozen up` wrote them into supervisord.conf (supervise.access).
        try:
            url = rpc_url(self.host)
        except SupervisorPasswordMissing as err:
            raise HostUnreachable(str(err)) from None
        transport = transport or _TimeoutTransport(self._timeout_s)
        return xmlrpc.client.ServerProxy(url, transport=transport, allow_none=True)

    def _call(self, method: str, *args: Any, transport: _TimeoutTransport | None = None) -> Any:
        proxy = self._proxy(transport)
        try:
            return getattr(proxy, method)(*args)
        except xmlrpc.client.Fault:
            raise
        except xmlrpc.client.ProtocolError as err:
            why = "refused our credentials" if err.errcode == 401 else f"HTTP {err.errcode} {err.errmsg}"
            raise HostUnreachable(f"{self.host.name}: supervisord {why}") from None
        except (OSError, http.client.HTTPException) as err:
            raise HostUnreachable(f"{self.host.name}: {_describe_socket_error(err)}") from None
        except (ExpatError, xmlrpc.client.ResponseError) as err:
            raise HostUnreachable(f"{self.host.name}: supervisord's answer could not be read ({err})") from None

    def status(self, tail_bytes: int = 0) -> HostStatus:
        """Every program of this host, with the last `tail_bytes` of its logs if asked."""
        h = self.host
        t0 = datetime.now(UTC)
        try:
            # One round trip for both answers: the refresh of many hosts is latency-bound.
            state_res, raw = self._call(
                "system.multicall",
                [
                    {"methodName": "supervisor.getState", "params": []},
                    {"methodName": "supervisor.getAllProcessInfo", "params": []},
                ],
            )
            state = state_res["statename"]
            if tail_bytes > 0 and raw:
                raw = self._with_tails(raw, tail_bytes)
        except (HostUnreachable, xmlrpc.client.Fault) as err:
            return HostStatus(
                h.name,
                h.address,
                h.supervisor.port,
                reachable=False,
                error=str(err),
                elapsed_s=(datetime.now(UTC) - t0).total_seconds(),
            )
        procs = sorted((_process_info(h.name, r) for r in raw), key=lambda p: p.full_name)
        return HostStatus(
            h.name,
            h.address,
            h.supervisor.port,
            reachable=True,
            processes=procs,
            supervisor_state=state,
            elapsed_s=(datetime.now(UTC) - t0).total_seconds(),
        )

    def identify(self, within_s: float = 1.0, max_calls: int = 8, spacing_s: float = 0.13) -> Identification:
        """supervisord's identifier and its clock against ours, from the Date headers of its answers.

        A Date header is whole seconds, so one answer puts the offset in a window a second wide
        (plus the round trip); answers spaced a fraction of a second apart narrow it, until it is
        clearly within `within_s` or clearly outside (at most `max_calls` calls).
        """
        low, high = float("-inf"), float("inf")
        identifier = ""
        for i in range(max_calls):
            transport = _TimeoutTransport(self._timeout_s)
            sent = time.time()
            identifier = self._call("supervisor.getIdentification", transport=transport)
            received = time.time()
            if transport.last_date is None:
                return Identification(identifier, None)
            date = email.utils.parsedate_to_datetime(transport.last_date).timestamp()
            low, high = max(low, date - received), min(high, date + 1 - sent)
            if low > high:  # a clock was stepped meanwhile: start again from this answer
                low, high = date - received, date + 1 - sent
            if (-within_s <= low and high <= within_s) or high < -within_s or low > within_s:
                break
            if i + 1 < max_calls:
                time.sleep(spacing_s)
        return Identification(identifier, (low, high))

    def _with_tails(self, raw: list[dict[str, Any]], tail_bytes: int) -> list[dict[str, Any]]:
        calls = []
        for r in raw:
            name = f"{r['group']}:{r['name']}"
            calls.append({"methodName": "supervisor.tailProcessStdoutLog", "params": [name, 0, tail_bytes]})
            calls.append({"methodName": "supervisor.tailProcessStderrLog", "params": [name, 0, tail_bytes]})
        results = self._call("system.multicall", calls)
        out = []
        for i, r in enumerate(raw):
            out_res, err_res = results[2 * i], results[2 * i + 1]
            r = dict(r, stdout_tail=_tail_text(out_res), stderr_tail=_tail_text(err_res))
            out.append(r)
        return out

    def act(self, action: Action, target: str) -> None:
        """start/stop/restart `GROUP:NAME` or every program of a group with `GROUP:*`."""
        group, _, name = target.partition(":")
        if not group or not name:
            raise ProcessActionError(f"{target!r}: expected GROUP:NAME or GROUP:*")
        whole_group = name == "*"
        try:
            if action in ("stop", "restart"):
                self._stop(group, target, whole_group, tolerate_not_running=action == "restart")
            if action in ("start", "restart"):
                if whole_group:
                    self._check_each(target, self._call("supervisor.startProcessGroup", group, True))
                else:
                    self._call("supervisor.startProcess", target, True)
        except xmlrpc.client.Fault as fault:
            why = fault_text(fault.faultCode)
            raise ProcessActionError(f"{self.host.name}:{target}: {why} ({fault.faultString})") from None

    def _stop(self, group: str, target: str, whole_group: bool, tolerate_not_running: bool) -> None:
        try:
            if whole_group:
                self._check_each(target, self._call("supervisor.stopProcessGroup", group, True))
            else:
                self._call("supervisor.stopProcess", target, True)
        except xmlrpc.client.Fault as fault:
            if not (tolerate_not_running and fault.faultCode == Faults.NOT_RUNNING):
                raise

    def _check_each(self, target: str, results: list[dict[str, Any]]) -> None:
        """A group action answers one status per program (SUCCESS or a fault code): name the failed ones."""
        failed = [r for r in results if r.get("status") != Faults.SUCCESS]
        if failed:
            raise ProcessActionError(
                f"{self.host.name}:{target}: "
                + "; ".join(f"{r['group']}:{r['name']} {fault_text(r['status'])} ({r['description']})" for r in failed)
            )


def _tail_text(result: Any) -> str:
    # supervisor's multicall answers a tail as [text, offset, overflow]; a fault as a dict.
    if isinstance(result, list) and result and isinstance(result[0], str):
        return printable_log(result[0])
    return ""


def printable_log(text: str) -> str:
    """Log text without terminal control characters (bells, escapes, CRs): safe for HTML and JSON."""
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


def _describe_socket_error(err: BaseException) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (supervisord not running?)"
    if isinstance(err, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(err, socket.gaierror):
        return f"cannot resolve address ({err.strerror})"
    return f"{type(err).__name__}: {err}"


def fetch_all(
    hosts: Iterable[Host],
    *,
    tail_bytes: int = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    concurrent: bool = True,
) -> list[HostStatus]:
    """Every host's programs, asked all at once (or one by one with concurrent=False)."""
    hosts = list(hosts)
    clients = [SupervisorClient(h, timeout_s) for h in hosts]
    if not concurrent or len(clients) < 2:
        return [c.status(tail_bytes) for c in clients]
    with ThreadPoolExecutor(max_workers=min(64, len(clients))) as pool:
        return list(pool.map(lambda c: c.status(tail_bytes), clients))


@dataclass(frozen=True)
class Target:
    host: Host
    program: str  # GROUP:NAME or GROUP:*


def parse_target(cfg: Config, text: str) -> Target:
    """`HOST:GROUP:NAME`, `HOST:GROUP:*`, or `GROUP:NAME` when the observatory has one host."""
    parts = text.split(":")
    if len(parts) == 3:
        return Target(cfg.host(parts[0]), f"{parts[1]}:{parts[2]}")
    if len(parts) == 2 and len(cfg.hosts) == 1:
        return Target(cfg.hosts[0], text)
    raise ConfigError(
        f"{text!r}: expected HOST:GROUP:NAME or HOST:GROUP:* (hosts: {', '.join(h.name for h in cfg.hosts)})"
    )


def act(cfg: Config, action: Action, target_text: str, timeout_s: float = 30.0) -> Target:
    target = parse_target(cfg, target_text)
    SupervisorClient(target.host, timeout_s).act(action, target.program)
    return target
