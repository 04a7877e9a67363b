"""`sim:alpaca`: an ASCOM Alpaca server with a simulated telescope, weather station, safety monitor and dome,
and, when the camera is read over Alpaca (camera.driver: alpaca), one Camera device per chip.

It follows the published Alpaca API, so the monitors and the queue talk to it exactly as to
real devices: `GET|PUT /api/v1/{device_type}/{device_number}/{member}` answering
`{"Value", "ClientTransactionID", "ServerTransactionID", "ErrorNumber", "ErrorMessage"}`,
parameter names case-insensitive, ASCOM error numbers (0x400 not implemented, 0x401 invalid
value, 0x408 parked), HTTP 400 for an unknown device, and the management API.

The devices are gozen's simulators (`SimulatedTelescope`, `SimulatedWeatherStation`,
`SimulatedSafetyMonitor`, `SimulatedDome`) and behave like devices: the mount takes time to
slew and the dome's shutter to move, the weather drifts with the time of day and has noise, a
scripted humid spell comes back every `bad_weather_every_s`, devices drop out every
`dropout_every_s`. For tests, `PUT /sim/weather` (JSON) pins weather values and
`PUT /sim/fault` makes a device answer NaN, out-of-range values, malformed JSON or nothing, or be
gone (HTTP 400, as for a device the server does not have); `device` names a type ("camera") or one
device ("camera/1"). `PUT /sim/dome` (JSON) sticks or frees the dome's shutter (`{"stuck": true}`:
CloseShutter is taken but the shutter stays where it is, "closing", until freed) and sets its
timing (`shutter_s`, else `monitors.simulator.dome_shutter_s`). The Camera devices are in
`alpaca_camera.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from gozen.config import Config
from gozen.devices.dome import Dome, Shutter, SimulatedDome
from gozen.devices.safety import SimulatedSafetyMonitor
from gozen.devices.telescope import InvalidTarget, Parked, SimulatedTelescope
from gozen.devices.weather import SimulatedWeatherStation
from gozen.service import Context

if TYPE_CHECKING:
    from gozen.devices.simulators.alpaca_camera import CameraDevice

NOT_IMPLEMENTED, INVALID_VALUE, PARKED, DRIVER_ERROR = 0x400, 0x401, 0x408, 0x500
IMAGEBYTES = "application/imagebytes"
KEEP_ALIVE_S = 600  # idle connections are kept this long (see server_config)
LISTEN_BACKLOG = 2048  # connections the kernel queues while the event loop is busy


class AlpacaError(Exception):
    def __init__(self, number: int, message: str) -> None:
        super().__init__(message)
        self.number = number


def telescope_get(scope: SimulatedTelescope, member: str) -> Any:
    """A Telescope property of the simulated mount, as ASCOM names and units it (RA in hours)."""
    if member in ("altitude", "azimuth"):
        p = scope.position()
        return round(p.alt_deg if member == "altitude" else p.az_deg, 5)
    values: dict[str, Callable[[], Any]] = {
        "rightascension": lambda: round(scope.radec()[0] / 15.0, 7),
        "declination": lambda: round(scope.radec()[1], 6),
        "tracking": lambda: scope.tracking,
        "slewing": scope.slewing,
        "atpark": scope.at_park,
        "canslewasync": lambda: True,
        "canpark": lambda: True,
        "canunpark": lambda: True,
        "cansettracking": lambda: True,
        "equatorialsystem": lambda: 2,  # J2000
    }
    if member not in values:
        raise AlpacaError(NOT_IMPLEMENTED, f"telescope.{member} is not implemented by the simulator")
    return values[member]()


def telescope_put(scope: SimulatedTelescope, member: str, form: dict[str, str]) -> None:
    """A Telescope method or settable property of the simulated mount; its refusals as ASCOM errors."""
    try:
        if member == "slewtocoordinatesasync":
            try:
                ra_h, dec = float(form["rightascension"]), float(form["declination"])
            except (KeyError, ValueError):
                raise AlpacaError(INVALID_VALUE, "RightAscension and Declination are required numbers") from None
            scope.start_slew(ra_h * 15.0, dec)
        elif member == "park":
            scope.start_park()
        elif member == "unpark":
            scope.unpark()
        elif member == "abortslew":
            scope.abort_slew()
        elif member == "tracking":
            scope.set_tracking(form.get("tracking", "").lower() == "true")
        else:
            raise AlpacaError(NOT_IMPLEMENTED, f"telescope.{member} cannot be set on the simulator")
    except Parked as err:
        raise AlpacaError(PARKED, str(err)) from None
    except InvalidTarget as err:
        raise AlpacaError(INVALID_VALUE, str(err)) from None


def dome_get(dome: Dome, member: str) -> Any:
    """A Dome property of the simulated dome, as ASCOM numbers it (ShutterStatus 0 open .. 4 error)."""
    status = dome.status()
    values: dict[str, Any] = {
        "shutterstatus": list(Shutter).index(status.shutter),
        "azimuth": status.az_deg,
        "slewing": status.slewing,
        "atpark": status.parked,
        "cansetazimuth": status.az_deg is not None,
        "cansetshutter": True,
    }
    if member not in values:
        raise AlpacaError(NOT_IMPLEMENTED, f"dome.{member} is not implemented by the simulator")
    return values[member]


def dome_put(dome: Dome, member: str) -> None:
    if member == "openshutter":
        dome.open_shutter()
    elif member == "closeshutter":
        dome.close_shutter()
    else:
        raise AlpacaError(NOT_IMPLEMENTED, f"dome.{member} cannot be set on the simulator")


@dataclass
class Fault:
    mode: str = "ok"  # ok | nan | out_of_range | malformed | silent | error | gone
    device: str = "*"  # a device type, "type/number", or * for all


class AlpacaSimulator:
    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.clock = cfg, clock
        self.telescope = SimulatedTelescope(cfg.site, clock)
        self.weather = SimulatedWeatherStation(cfg.monitors.simulator, clock)
        self.safety = SimulatedSafetyMonitor(self.weather)
        self.dome = SimulatedDome(cfg.monitors.simulator.dome_shutter_s, clock=clock)
        from gozen.devices.simulators.alpaca_camera import camera_devices  # it builds on this module

        self.cameras = camera_devices(cfg, self.telescope.radec, clock)
        self.fault = Fault()
        self.server_tid = 0

    def dropped_out(self) -> bool:
        sim = self.cfg.monitors.simulator
        return bool(sim.dropout_every_s) and (self.clock() % sim.dropout_every_s) < sim.dropout_for_s

    def get(self, device: str, member: str, number: int = 0) -> Any:
        if device == "camera":
            return self.cameras[number].get(member)
        if device == "telescope":
            return telescope_get(self.telescope, member)
        if device == "observingconditions":
            values = self.weather.values()
            if member == "averageperiod":
                return 0.0
            if member not in values:
                raise AlpacaError(NOT_IMPLEMENTED, f"observingconditions.{member} is not measured here")
            return values[member]
        if device == "dome":
            return dome_get(self.dome, member)
        if member == "issafe":
            return self.safety.is_safe()
        raise AlpacaError(NOT_IMPLEMENTED, f"safetymonitor.{member} is not implemented by the simulator")

    def put(self, device: str, member: str, form: dict[str, str], number: int = 0) -> None:
        if device == "camera":
            self.cameras[number].put(member, form)
        elif device == "telescope":
            telescope_put(self.telescope, member, form)
        elif device == "dome":
            dome_put(self.dome, member)
        else:
            raise AlpacaError(NOT_IMPLEMENTED, f"{device}.{member} cannot be set on the simulator")


COMMON = {
    "connected": True,
    "name": "gozen simulator",
    "description": "gozen's simulated device",
    "driverinfo": "gozen.devices.simulators.alpaca",
    "driverversion": "1.0",
    "supportedactions": [],
}
INTERFACE_VERSION = {"telescope": 4, "observingconditions": 2, "safetymonitor": 3, "dome": 2}


def create_app(cfg: Config, clock: Callable[[], float] = time.time) -> FastAPI:
    sim = AlpacaSimulator(cfg, clock)
    app = FastAPI(title="gozen Alpaca simulator", docs_url=None, redoc_url=None)
    app.state.sim = sim

    def reply(request_params: dict[str, str], value: Any = None, error: AlpacaError | None = None) -> Response:
        sim.server_tid += 1
        body: dict[str, Any] = {
            "ClientTransactionID": _client_tid(request_params),
            "ServerTransactionID": sim.server_tid,
            "ErrorNumber": error.number if error else 0,
            "ErrorMessage": str(error) if error else "",
        }
        if value is not None:
            body["Value"] = value
        return JSONResponse(body)

    async def faulty(device: str, number: int) -> Response | None:
        f = sim.fault
        if sim.dropped_out():
            await asyncio.sleep(30)  # a device that stopped answering: the client times out
            return PlainTextResponse("dropped out", status_code=503)
        if f.mode == "ok" or f.device not in ("*", device, f"{device}/{number}"):
            return None
        if f.mode == "gone":
            return PlainTextResponse(f"no {device} number {number} here", status_code=400)
        if f.mode == "silent":
            await asyncio.sleep(30)
            return PlainTextResponse("silent", status_code=503)
        if f.mode == "malformed":
            return Response('{"Value": 12.5, "ErrorNumber": 0, "Err', media_type="application/json")
        if f.mode == "error":
            return PlainTextResponse("internal error", status_code=500)
        return None

    async def gate(device: str, number: int) -> Response | None:
        """The answer for an unknown device (HTTP 400) or a device at fault; None to go on."""
        known = number in sim.cameras if device == "camera" else (device in INTERFACE_VERSION and number == 0)
        if not known:
            return PlainTextResponse(f"no {device} number {number} here", status_code=400)
        return await faulty(device, number)

    @app.get("/api/v1/{device}/{number}/{member}")
    async def alpaca_get(device: str, number: int, member: str, request: Request) -> Response:
        params = {k.lower(): v for k, v in request.query_params.items()}
        device, member = device.lower(), member.lower()
        if (answer := await gate(device, number)) is not None:
            return answer
        if device == "camera" and member == "imagearray":
            return image_array(sim.cameras[number], params, IMAGEBYTES in request.headers.get("accept", ""))
        if device != "camera" and member == "interfaceversion":
            return reply(params, INTERFACE_VERSION[device])
        if device != "camera" and member in COMMON:
            return reply(params, COMMON[member])
        try:
            value = sim.get(device, member, number)
        except AlpacaError as err:
            return reply(params, error=err)
        if sim.fault.mode == "nan" and isinstance(value, float):
            return Response(
                f'{{"Value": NaN, "ClientTransactionID": {params.get("clienttransactionid", 0)}, '
                f'"ServerTransactionID": {sim.server_tid}, "ErrorNumber": 0, "ErrorMessage": ""}}',
                media_type="application/json",
            )
        if sim.fault.mode == "out_of_range" and isinstance(value, float):
            value = 1e6
        return reply(params, value)

    @app.put("/api/v1/{device}/{number}/{member}")
    async def alpaca_put(device: str, number: int, member: str, request: Request) -> Response:
        form = {k.lower(): str(v) for k, v in (await request.form()).items()}
        device, member = device.lower(), member.lower()
        if (answer := await gate(device, number)) is not None:
            return answer
        if device != "camera" and member == "connected":
            return reply(form)
        try:
            sim.put(device, member, form, number)
        except AlpacaError as err:
            return reply(form, error=err)
        return reply(form)

    def image_array(camera: CameraDevice, params: dict[str, str], imagebytes: bool) -> Response:
        """ImageArray as ImageBytes when the client accepts them, else as JSON ([x][y] nested lists)."""
        try:
            if imagebytes:
                sim.server_tid += 1
                body = camera.image_bytes(_client_tid(params), sim.server_tid)
                return Response(body, media_type=IMAGEBYTES)
            return reply(params, camera.image_array().tolist())
        except AlpacaError as err:  # as JSON either way: alpyca and gozen read an error from both
            return reply(params, error=err)

    @app.get("/management/apiversions")
    async def api_versions(request: Request) -> Response:
        return reply({k.lower(): v for k, v in request.query_params.items()}, [1])

    @app.get("/management/v1/description")
    async def description(request: Request) -> Response:
        value = {
            "ServerName": "gozen simulator",
            "Manufacturer": "gozen",
            "ManufacturerVersion": "1.0",
            "Location": cfg.site.name,
        }
        return reply({k.lower(): v for k, v in request.query_params.items()}, value)

    @app.get("/management/v1/configureddevices")
    async def configured(request: Request) -> Response:
        value = [
            {
                "DeviceName": f"Simulated {t}",
                "DeviceType": t.capitalize(),
                "DeviceNumber": 0,
                "UniqueID": f"gozen-sim-{t}-0",
            }
            for t in INTERFACE_VERSION
        ] + [
            {
                "DeviceName": c.name,
                "DeviceType": "Camera",
                "DeviceNumber": n,
                "UniqueID": f"gozen-sim-camera-{c.det_id}",
            }
            for n, c in sorted(sim.cameras.items())
        ]
        return reply({k.lower(): v for k, v in request.query_params.items()}, value)

    @app.put("/sim/weather")
    async def pin_weather(request: Request) -> dict[str, Any]:
        body = await request.json()
        sim.weather.pinned = {str(k).lower(): float(v) for k, v in (body or {}).items()}
        return {"pinned": sim.weather.pinned}

    @app.put("/sim/dome")
    async def set_dome(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            return JSONResponse({"error": 'a JSON object, e.g. {"stuck": true, "shutter_s": 5}'}, status_code=422)
        dome = sim.dome
        try:
            if "shutter_s" in body:
                shutter_s = float(body["shutter_s"])
                if not shutter_s >= 0:
                    raise ValueError(f"must be >= 0, got {shutter_s}")
                dome.retime(shutter_s)
        except (TypeError, ValueError) as err:
            return JSONResponse({"error": f"shutter_s: {err}"}, status_code=422)
        if "stuck" in body:
            dome.stuck = bool(body["stuck"])
        return JSONResponse({"stuck": dome.stuck, "shutter_s": dome.shutter_s, "shutter": dome.status().shutter})

    @app.put("/sim/fault")
    async def set_fault(request: Request) -> dict[str, Any]:
        body = await request.json()
        sim.fault = Fault(str(body.get("mode", "ok")), str(body.get("device", "*")))
        return {"mode": sim.fault.mode, "device": sim.fault.device}

    return app


def _client_tid(params: dict[str, str]) -> int:
    """The client's transaction id, echoed back (0 when missing or not a uint32)."""
    try:
        ctid = int(params.get("clienttransactionid", "0"))
    except ValueError:
        return 0
    return ctid if 0 <= ctid < 2**32 else 0


def server_config(cfg: Config) -> uvicorn.Config:
    """How sim:alpaca serves: on the telescope's address, idle connections kept well past any poll period.

    Alpaca clients (alpyca) keep one connection per device and poll it every few seconds. With
    uvicorn's default 5 s keep-alive, a client polling every 5 s (monitors.every_s) sent its next
    request just as the server closed the idle connection: "Connection reset by peer" a few times
    an hour. A keep-alive far longer than any poll period never races a client's request.
    """
    host, _, port = cfg.monitors.telescope.address.rpartition(":")
    return uvicorn.Config(
        create_app(cfg),
        host=host or "127.0.0.1",
        port=int(port),
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        backlog=LISTEN_BACKLOG,
    )


def main(ctx: Context) -> None:
    """`sim:alpaca`: serve until SIGTERM (uvicorn's own handler finishes the requests in hand)."""
    uvicorn.Server(server_config(ctx.cfg)).run()
