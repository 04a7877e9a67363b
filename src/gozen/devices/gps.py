"""The GPS receiver, as gpsd serves it: the fix, the PPS edge and the system clock's offset from GPS time.

`GpsReceiver` is what gozen needs of one; `Gpsd` reads gpsd's JSON protocol over TCP: it
connects, sends `?WATCH={"enable":true,"json":true,"pps":true}` and reads reports for a few
seconds: TPV gives the fix mode and GPS time, PPS the system clock's time at a GPS second
edge (offset = clock - real), SKY the satellites used. `SimulatedGpsReceiver` makes the
reports of a u-blox receiver on the simulated site, which `sim:gpsd` serves.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gozen.config import Config
from gozen.config import Gpsd as GpsdAddress
from gozen.service import DeviceUnavailable

log = logging.getLogger(__name__)
NAME = "gpsd"
WATCH = b'?WATCH={"enable":true,"json":true,"pps":true};\n'
DEVICE, PPS_DEVICE = "/dev/ttyACM0", "/dev/pps0"


@dataclass(frozen=True)
class GpsFix:
    mode: int  # gpsd's fix mode: 0/1 no fix, 2 2D, 3 3D
    pps: bool  # a PPS edge was reported
    offset_ms: float | None  # system clock minus GPS time; None without a fix or PPS
    satellites: int | None  # satellites used, when a SKY report came

    @property
    def has_fix(self) -> bool:
        return self.mode >= 2


class GpsReceiver(ABC):
    @abstractmethod
    def fix(self) -> GpsFix:
        """The receiver's state now; gozen.service.DeviceUnavailable when it does not answer."""


@dataclass
class GpsReport:
    """The latest report of each class heard in one listening session."""

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


def fix_of(report: GpsReport) -> GpsFix:
    """What a session's reports say; DeviceUnavailable when there was no TPV at all."""
    if report.tpv is None:
        raise DeviceUnavailable(NAME, "gpsd sent no TPV report")
    mode = int(report.tpv.get("mode", 0))
    offset_ms = None
    if report.pps is not None:
        p = report.pps
        offset_ms = ((p["clock_sec"] - p["real_sec"]) + (p["clock_nsec"] - p["real_nsec"]) * 1e-9) * 1e3
    elif mode >= 2 and "time" in report.tpv:  # no PPS: the TPV time against our receive time (coarse)
        gps_t = datetime.fromisoformat(report.tpv["time"].replace("Z", "+00:00")).timestamp()
        offset_ms = (report.tpv_received_at - gps_t) * 1e3
    satellites = int(report.sky["uSat"]) if report.sky is not None else None
    return GpsFix(mode, report.pps is not None, offset_ms, satellites)


class Gpsd(GpsReceiver):
    """gpsd over TCP: one short session per reading (`listen_s` at most)."""

    def __init__(self, where: GpsdAddress, listen_s: float = 2.5) -> None:
        self.where, self.listen_s = where, listen_s

    def fix(self) -> GpsFix:
        report = GpsReport()
        try:
            with socket.create_connection((self.where.host, self.where.port), timeout=5) as s:
                s.sendall(WATCH)
                self.listen(s, report)
        except OSError as err:
            raise DeviceUnavailable(NAME, f"gpsd at {self.where.host}:{self.where.port}: {err}") from None
        return fix_of(report)

    def listen(self, s: socket.socket, report: GpsReport) -> None:
        buf = b""
        deadline = time.monotonic() + self.listen_s
        while time.monotonic() < deadline and not (report.tpv and report.pps):
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                return
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            now = time.time()
            for raw in lines:
                if raw.strip():
                    take(report, raw.strip(), now)


class SimulatedGpsReceiver(GpsReceiver):
    """A u-blox receiver with PPS on the simulated site: a 3D fix, the clock tens of microseconds
    late; in a configured dropout it loses its fix (TPV mode 1, no PPS)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rng = random.Random(2)

    def has_fix_at(self, now: float) -> bool:
        sim = self.cfg.monitors.simulator
        return not (sim.dropout_every_s and (now % sim.dropout_every_s) < sim.dropout_for_s)

    def reports(self, sec: int) -> list[dict[str, Any]]:
        """gpsd's reports for GPS second `sec`: TPV, PPS, and SKY every fifth second."""
        site = self.cfg.site
        when = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if not self.has_fix_at(sec):
            return [{"class": "TPV", "device": DEVICE, "mode": 1, "time": when}]
        out: list[dict[str, Any]] = [
            {
                "class": "TPV",
                "device": DEVICE,
                "mode": 3,
                "time": when,
                "ept": 0.005,
                "lat": round(site.lat_deg + self.rng.gauss(0, 2e-6), 9),
                "lon": round(site.lon_deg + self.rng.gauss(0, 2e-6), 9),
                "altHAE": round(site.height_m + self.rng.gauss(0, 0.5), 3),
                "epx": 1.8,
                "epy": 2.1,
                "epv": 4.5,
            },
            {
                "class": "PPS",
                "device": PPS_DEVICE,
                "real_sec": sec,
                "real_nsec": 0,
                "clock_sec": sec,
                "clock_nsec": max(0, int(self.rng.gauss(40_000, 8_000))),
                "precision": -20,
            },
        ]
        if sec % 5 == 0:
            out.append({"class": "SKY", "device": DEVICE, "nSat": 22, "uSat": 10 + sec % 3})
        return out

    def fix(self) -> GpsFix:
        report, now = GpsReport(), time.time()
        for r in self.reports(int(now)):
            take(report, json.dumps(r).encode(), now)
        return fix_of(report)
