"""`sim:gpsd`: a gpsd stand-in speaking gpsd's JSON protocol over TCP, for the simulated observatory.

Like gpsd it greets with VERSION, waits for `?WATCH={...}`, answers DEVICES and WATCH, then
reports what the simulated receiver (`gozen.devices.gps.SimulatedGpsReceiver`) says every
second: TPV (time, position, fix mode), PPS (the system clock's time at each GPS second edge,
a few tens of microseconds off) and SKY (satellites) every five. In a configured dropout the
receiver loses its fix (TPV mode 1, no PPS).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from gozen.config import Config
from gozen.devices.gps import DEVICE, SimulatedGpsReceiver
from gozen.service import Context, stop_on_signals


def line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\r\n").encode()


class GpsdSimulator:
    def __init__(self, cfg: Config) -> None:
        self.receiver = SimulatedGpsReceiver(cfg)

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
                for r in self.receiver.reports(int(round(time.time()))):
                    writer.write(line(r))
                await writer.drain()
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the simulator is stopping: end quietly (re-raised, asyncio 3.11 logs it as an error)
        finally:
            writer.close()


async def serve(cfg: Config, stop: threading.Event) -> None:
    """Serve on monitors.gpsd until `stop` is set."""
    sim = GpsdSimulator(cfg)
    server = await asyncio.start_server(sim.handle, cfg.monitors.gpsd.host, cfg.monitors.gpsd.port)
    while not stop.is_set():
        await asyncio.sleep(0.2)
    server.close()  # the clients' handlers are cancelled as asyncio.run returns


def main(ctx: Context) -> None:
    """`sim:gpsd`: serve until SIGTERM or SIGINT."""
    stop_on_signals(ctx)
    asyncio.run(serve(ctx.cfg, ctx.stop))
