"""`sim:gpsd`: a gpsd stand-in speaking gpsd's JSON protocol over TCP, for the simulated observatory.

Like gpsd it greets with VERSION, waits for `?WATCH={...}`, answers DEVICES and WATCH, then
reports TPV (time, position, fix mode) every second, PPS (the system clock's time at each
GPS second edge, a few tens of microseconds off) and SKY (satellites) every five. In a
configured dropout the receiver loses its fix (TPV mode 1, no PPS).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime
from typing import Any

from gozen.config import Config

DEVICE, PPS_DEVICE = "/dev/ttyACM0", "/dev/pps0"


def line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\r\n").encode()


class GpsdSimulator:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rng = random.Random(2)

    def fix(self, now: float) -> bool:
        sim = self.cfg.monitors.simulator
        return not (sim.dropout_every_s and (now % sim.dropout_every_s) < sim.dropout_for_s)

    def reports(self, sec: int) -> list[dict[str, Any]]:
        site = self.cfg.site
        when = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if not self.fix(sec):
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

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(
                line({"class": "VERSION", "release": "3.25", "rev": "3.25", "proto_major": 3, "proto_minor": 15})
            )
            await writer.drain()
            request = await asyncio.wait_for(reader.readline(), 30)
            if not request.startswith(b"?WATCH="):
                writer.write(line({"class": "ERROR", "message": "Unrecognized request"}))
                return
            writer.write(
                line({"class": "DEVICES", "devices": [{"class": "DEVICE", "path": DEVICE, "driver": "u-blox"}]})
            )
            writer.write(line({"class": "WATCH", "enable": True, "json": True, "pps": True}))
            while True:
                now = time.time()
                await asyncio.sleep(1 - now % 1)
                for r in self.reports(int(round(time.time()))):
                    writer.write(line(r))
                await writer.drain()
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def serve(cfg: Config) -> None:
    sim = GpsdSimulator(cfg)
    server = await asyncio.start_server(sim.handle, cfg.monitors.gpsd.host, cfg.monitors.gpsd.port)
    async with server:
        await server.serve_forever()


def run_gpsd_sim(cfg: Config) -> None:
    asyncio.run(serve(cfg))
