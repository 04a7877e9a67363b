"""`monitor:gpstime`: GPS fix and the system clock's offset, from gpsd's JSON protocol over TCP.

Each reading connects, sends `?WATCH={"enable":true,"json":true,"pps":true}`, and reads
reports for a few seconds: TPV gives the fix mode and GPS time, PPS the system clock's time
at a GPS second edge (offset = clock - real), SKY the satellites used.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gozen.config import Gpsd
from gozen.monitors.base import DeviceError, Monitor
from gozen.monitors.board import Reading

log = logging.getLogger(__name__)
WATCH = b'?WATCH={"enable":true,"json":true,"pps":true};\n'


@dataclass
class GpsReport:
    tpv: dict[str, Any] | None = None
    pps: dict[str, Any] | None = None
    sky: dict[str, Any] | None = None
    tpv_received_at: float = 0.0
    bad_lines: int = 0


def take(report: GpsReport, raw: bytes, received_at: float) -> None:
    """Fold one line of gpsd output into the report; malformed lines are counted and logged."""
    try:
        msg = json.loads(raw)
        cls = msg["class"]
    except (ValueError, KeyError, TypeError):
        report.bad_lines += 1
        log.warning("gpsd: skipped a malformed line: %r", raw[:200])
        return
    if cls == "TPV":
        report.tpv, report.tpv_received_at = msg, received_at
    elif cls == "PPS":
        report.pps = msg
    elif cls == "SKY" and "uSat" in msg:
        report.sky = msg


def readings(report: GpsReport, max_age_s: float) -> list[Reading]:
    if report.tpv is None:
        raise DeviceError("gpsd sent no TPV report")
    mode = int(report.tpv.get("mode", 0))
    out = [Reading("gps.fix", mode >= 2, "", max_age_s), Reading("gps.mode", mode, "", max_age_s)]
    offset_ms = None
    if report.pps is not None:
        p = report.pps
        offset_ms = ((p["clock_sec"] - p["real_sec"]) + (p["clock_nsec"] - p["real_nsec"]) * 1e-9) * 1e3
    elif mode >= 2 and "time" in report.tpv:  # no PPS: the TPV time against our receive time (coarse)
        gps_t = datetime.fromisoformat(report.tpv["time"].replace("Z", "+00:00")).timestamp()
        offset_ms = (report.tpv_received_at - gps_t) * 1e3
    out.append(Reading("gps.pps", report.pps is not None, "", max_age_s))
    if offset_ms is not None:
        out.append(Reading("gps.offset_ms", round(offset_ms, 6), "ms", max_age_s))
    if report.sky is not None:
        out.append(Reading("gps.satellites", int(report.sky["uSat"]), "", max_age_s))
    return out


@dataclass
class GpsMonitor(Monitor):
    where: Gpsd = Gpsd()
    listen_s: float = 2.5
    name: str = "monitor:gpstime"
    device: str = "gpsd"

    def read(self) -> list[Reading]:
        report = GpsReport()
        try:
            with socket.create_connection((self.where.host, self.where.port), timeout=5) as s:
                s.sendall(WATCH)
                buf = b""
                deadline = time.monotonic() + self.listen_s
                while time.monotonic() < deadline and not (report.tpv and report.pps):
                    s.settimeout(max(0.05, deadline - time.monotonic()))
                    try:
                        chunk = s.recv(65536)
                    except TimeoutError:
                        break
                    if not chunk:
                        break
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    now = time.time()
                    for raw in lines:
                        if raw.strip():
                            take(report, raw.strip(), now)
        except OSError as err:
            raise DeviceError(f"gpsd at {self.where.host}:{self.where.port}: {err}") from None
        return readings(report, self.max_age_s)
