"""sim:alpaca's Camera devices: one per chip of gozen's simulated camera, behind the ASCOM Camera API.

Each device exposes like a camera: `StartExposure(Duration, Light)` takes the chip's frame
(sky, noise and the stars where the simulated telescope points; a dark frame when Light is
false), `ImageReady` turns true once the exposure time has passed, and `ImageArray` serves it
[x][y] as ASCOM indexes it, as ImageBytes when the client accepts `application/imagebytes`,
else as JSON. Frames are the whole sensor as the camera's geometry has it (a full readout
includes optical black and overscan); subframes (StartX/NumX...) are served, binning is 1 only.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np

from gozen.config import Camera as CameraConfig
from gozen.config import CameraFaults, Config
from gozen.daq.geometry import geometry
from gozen.devices.camera import ExposureSpec
from gozen.devices.simulators.alpaca import INVALID_VALUE, NOT_IMPLEMENTED, AlpacaError
from gozen.devices.simulators.camera import BIAS_ADU, READ_NOISE_ADU, SimulatedCamera, chip_bias_adu

INVALID_OPERATION = 0x40B
INTERFACE_VERSION = 4
PIXEL_SIZE_UM = 19.0  # Tomo-e Gozen's Canon 35MMFHDXM
ELECTRONS_PER_ADU = 0.94  # at mid gain
FULL_WELL_E = 25000.0
SENSOR_TEMP_C = 17.0  # uncooled, near the dome's air
EXPOSURE_MIN_S, EXPOSURE_MAX_S = 0.001, 3600.0
INT32, UINT16 = 2, 8  # ASCOM ImageArrayElementTypes: what ImageArray holds, what goes on the wire


class SharedCamera:
    """gozen's simulated camera, one for every chip, made at the first light exposure: its noise pool
    takes a second or two, and sim:alpaca must answer the monitors at once."""

    def __init__(self, cfg: CameraConfig, det_ids: list[int]) -> None:
        self.cfg = cfg.model_copy(update={"faults": CameraFaults()})  # the simulator driver's faults, not served
        self.det_ids = det_ids
        self.geometry = geometry(cfg)

    @cached_property
    def camera(self) -> SimulatedCamera:
        camera = SimulatedCamera(self.cfg, seed=0, gps_jitter_s=0.0)
        camera.open(self.det_ids)
        return camera


class CameraDevice:
    """One chip of the simulated camera as an Alpaca Camera device."""

    def __init__(
        self,
        chips: SharedCamera,
        det_id: int,
        number: int,
        pointing: Callable[[], tuple[float, float]],
        clock: Callable[[], float],
    ) -> None:
        self.chips, self.det_id, self.number, self.pointing, self.clock = chips, det_id, number, pointing, clock
        self.width, self.height = chips.geometry.width, chips.geometry.height
        self.connected = False
        self.frame = {"startx": 0, "starty": 0, "numx": self.width, "numy": self.height, "binx": 1, "biny": 1}
        self.started_at: float | None = None
        self.duration_s = 0.0
        self.image: np.ndarray | None = None  # rows x columns of the last exposure
        self.rng = np.random.default_rng(det_id)

    @property
    def name(self) -> str:
        return f"gozen simulated chip {self.det_id}"

    def exposing(self) -> bool:
        return self.started_at is not None and self.clock() < self.started_at + self.duration_s

    def image_ready(self) -> bool:
        return self.image is not None and not self.exposing()

    def get(self, member: str) -> Any:
        values: dict[str, Callable[[], Any]] = {
            "connected": lambda: self.connected,
            "connecting": lambda: False,
            "name": lambda: self.name,
            "description": lambda: f"Tomo-e Gozen chip {self.det_id} (gozen's simulated camera)",
            "driverinfo": lambda: "gozen.devices.simulators.alpaca_camera",
            "driverversion": lambda: "1.0",
            "interfaceversion": lambda: INTERFACE_VERSION,
            "supportedactions": lambda: [],
            "cameraxsize": lambda: self.width,
            "cameraysize": lambda: self.height,
            "maxbinx": lambda: 1,
            "maxbiny": lambda: 1,
            "canasymmetricbin": lambda: False,
            "pixelsizex": lambda: PIXEL_SIZE_UM,
            "pixelsizey": lambda: PIXEL_SIZE_UM,
            "sensortype": lambda: 0,  # monochrome
            "sensorname": lambda: "Canon 35MMFHDXM (simulated)",
            "camerastate": lambda: 2 if self.exposing() else 0,  # exposing, else idle
            "imageready": self.image_ready,
            "ccdtemperature": lambda: round(SENSOR_TEMP_C + 0.5 * math.sin(self.clock() / 900.0), 2),
            "canabortexposure": lambda: True,
            "canstopexposure": lambda: True,
            "cangetcoolerpower": lambda: False,
            "cansetccdtemperature": lambda: False,
            "canpulseguide": lambda: False,
            "canfastreadout": lambda: False,
            "hasshutter": lambda: False,
            "exposuremin": lambda: EXPOSURE_MIN_S,
            "exposuremax": lambda: EXPOSURE_MAX_S,
            "exposureresolution": lambda: 0.0,
            "lastexposureduration": lambda: self._after_exposure(self.duration_s),
            "lastexposurestarttime": lambda: self._after_exposure(_fits_time(self.started_at or 0.0)),
            "percentcompleted": self._percent_completed,
            "maxadu": lambda: 65535,
            "electronsperadu": lambda: ELECTRONS_PER_ADU,
            "fullwellcapacity": lambda: FULL_WELL_E,
        }
        if member in self.frame:  # StartX, NumX, BinX ...
            return self.frame[member]
        if member not in values:
            raise AlpacaError(NOT_IMPLEMENTED, f"camera.{member} is not implemented by the simulator")
        return values[member]()

    def _after_exposure(self, value: Any) -> Any:
        if self.started_at is None:
            raise AlpacaError(INVALID_OPERATION, "no exposure has been taken yet")
        return value

    def _percent_completed(self) -> int:
        if self.started_at is None:
            return 0
        done = (self.clock() - self.started_at) / self.duration_s if self.duration_s else 1.0
        return int(100 * min(1.0, max(0.0, done)))

    def put(self, member: str, form: dict[str, str]) -> None:
        if member == "connected":
            self.connected = form.get("connected", "").lower() == "true"
        elif member in ("connect", "disconnect"):
            self.connected = member == "connect"
        elif member in self.frame:
            self._set_frame(member, form.get(member, ""))
        elif member == "startexposure":
            self.start(_number(form, "duration"), form.get("light", "true").lower() == "true")
        elif member == "abortexposure":
            self.started_at, self.image = None, None
        elif member == "stopexposure":
            if self.exposing():
                assert self.started_at is not None
                self.duration_s = self.clock() - self.started_at
        else:
            raise AlpacaError(NOT_IMPLEMENTED, f"camera.{member} cannot be set on the simulator")

    def _set_frame(self, member: str, text: str) -> None:
        try:
            value = int(text)
        except ValueError:
            raise AlpacaError(INVALID_VALUE, f"{member} must be an integer, got {text!r}") from None
        if member.startswith("bin") and value != 1:
            raise AlpacaError(INVALID_VALUE, f"{member} {value}: this camera does not bin (MaxBinX/Y 1)")
        if value < 0:
            raise AlpacaError(INVALID_VALUE, f"{member} must be >= 0, got {value}")
        self.frame[member] = value

    def start(self, duration_s: float, light: bool) -> None:
        if not EXPOSURE_MIN_S <= duration_s <= EXPOSURE_MAX_S:
            raise AlpacaError(INVALID_VALUE, f"Duration {duration_s} s is outside {EXPOSURE_MIN_S}..{EXPOSURE_MAX_S}")
        f = self.frame
        if f["startx"] + f["numx"] > self.width or f["starty"] + f["numy"] > self.height or not f["numx"] * f["numy"]:
            raise AlpacaError(INVALID_VALUE, f"subframe {f} does not fit the {self.width} x {self.height} sensor")
        now = self.clock()
        frame = np.empty(self.width * self.height, np.uint16)
        if light:
            ra, dec = self.pointing()
            camera = self.chips.camera
            camera.start_exposure(ExposureSpec(0, 1, 1.0 / duration_s, int(now * 1e9), ra, dec))
            camera.read_frame(self.det_id, 0, frame)
        else:  # the shutter closed: bias and read noise
            level = BIAS_ADU + chip_bias_adu(self.det_id)
            frame[:] = np.clip(np.rint(self.rng.normal(level, READ_NOISE_ADU, frame.size)), 0, 65535)
        rows = frame.reshape(self.height, self.width)
        self.image = rows[f["starty"] : f["starty"] + f["numy"], f["startx"] : f["startx"] + f["numx"]]
        self.started_at, self.duration_s = now, duration_s

    def image_array(self) -> np.ndarray:
        """The last image as ASCOM indexes ImageArray: [x][y]."""
        if not self.image_ready():
            raise AlpacaError(INVALID_OPERATION, "no image ready: StartExposure, then wait for ImageReady")
        assert self.image is not None
        return self.image.T

    def image_bytes(self, client_tid: int, server_tid: int) -> bytes:
        """The Alpaca ImageBytes reply: 44 bytes of metadata (version 1), then UInt16 pixels in [x][y] order."""
        xy = self.image_array()
        meta = struct.pack("<11i", 1, 0, client_tid, server_tid, 44, INT32, UINT16, 2, xy.shape[0], xy.shape[1], 0)
        return meta + np.ascontiguousarray(xy, dtype="<u2").tobytes()


def _number(form: dict[str, str], key: str) -> float:
    try:
        return float(form[key])
    except (KeyError, ValueError):
        raise AlpacaError(INVALID_VALUE, f"{key} is a required number") from None


def _fits_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def camera_devices(
    cfg: Config, pointing: Callable[[], tuple[float, float]], clock: Callable[[], float]
) -> dict[int, CameraDevice]:
    """Device number -> Camera device, one per chip, when the camera is read over Alpaca (else none)."""
    cam = cfg.camera
    if cam.driver != "alpaca":
        return {}
    numbers = cam.alpaca.devices or {det: n for n, det in enumerate(cam.chips)}
    chips = SharedCamera(cam, list(numbers))
    return {n: CameraDevice(chips, det, n, pointing, clock) for det, n in numbers.items()}
