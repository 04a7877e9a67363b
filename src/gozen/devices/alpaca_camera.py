"""The camera as ASCOM Alpaca Camera devices, one device per chip, read with alpyca.

Each chip's device runs its exposure in a thread of its own (`DeviceRun`), as a frame grabber
would: for every frame, at its time or as soon as the last one is in, `StartExposure(1/fps,
light)`, `ImageReady`, then the image, fetched as ImageBytes, and `LastExposureStartTime` for
its stamp. The readout waits for a frame (`wait_frame`) until every device has it or has failed;
a device that fails is told as a DeviceUnavailable naming it (`take_faults`; once, until it
delivers again) and its frames of that exposure are missed, while the other chips read on. It is
connected, checked and tried again at the next exposure, as is a device that did not answer when
the readout started (a camera server started after it).

The image is asked for with `Accept: application/imagebytes`, as alpyca does, but fetched here:
alpyca's ImageArray has no timeout (a silent camera would hang the readout) and builds Python
lists; here the bytes become a numpy view, copied once into the ring, transposed (Alpaca's
ImageArray is indexed [x][y], a FITS frame is rows x columns). A device answering JSON is read too.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from alpaca.camera import Camera as AlpacaDevice
from alpaca.camera import raise_alpaca_if

from gozen.config import Camera as CameraConfig
from gozen.daq.geometry import geometry
from gozen.devices.alpaca import ask, command, guarded, optional
from gozen.devices.camera import Camera, ExposureSpec, FrameInfo
from gozen.service import DeviceUnavailable

log = logging.getLogger(__name__)
POLL_S = 0.005  # ImageReady is asked this often once the exposure time has passed
RETRY_S = 0.5  # a device not ready is asked again this often until its first frame is due
KEEP_FRAMES = 4  # images a device holds for the readout (a grabber's buffer); older ones are dropped
COLOR = 1  # SensorType Color: three planes per pixel, not a chip gozen can write
# ImageBytes transmission element types (ASCOM ImageArrayElementTypes) -> numpy
WIRE_TYPES = {1: "<i2", 2: "<i4", 3: "<f8", 6: "u1", 8: "<u2"}
METADATA_BYTES = 44
_transaction = itertools.count(1)


@dataclass
class Chip:
    """One chip's Alpaca Camera device, for the life of the readout."""

    det_id: int
    number: int
    device: Any  # alpaca.camera.Camera
    name: str
    counter: int = 0  # exposures started: the chip's frame counter
    ready: bool = False  # connected, and checked to be the chip the config describes


@dataclass
class Image:
    pixels: np.ndarray  # [x][y] as the device sends it
    counter: int
    gps_ns: int


def utc_ns(text: str) -> int:
    """ns since the Unix epoch of an ASCOM FITS-style UTC time ('2026-01-02T03:04:05.123456')."""
    whole, _, fraction = text.strip().rstrip("Z").partition(".")
    t = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(t.timestamp()) * 10**9 + int((fraction + "000000000")[:9])


def fetch_image(chip: Chip, timeout_s: float) -> np.ndarray:
    """The device's ImageArray, 2-D [x][y], as ImageBytes (or JSON if that is all it speaks)."""

    def get() -> np.ndarray:
        dev = chip.device
        reply = dev.rqs.get(
            f"{dev.base_url}/imagearray",
            params={"ClientID": 1, "ClientTransactionID": next(_transaction)},
            headers={"Accept": "application/imagebytes"},
            timeout=timeout_s,
        )
        reply.raise_for_status()
        if "application/imagebytes" in reply.headers.get("content-type", ""):
            return image_bytes(reply.content)
        body = reply.json()
        raise_alpaca_if(body["ErrorNumber"], body["ErrorMessage"])
        return np.asarray(body["Value"], dtype=np.int32)

    return guarded(chip.device, "ImageArray", chip.name, get)  # type: ignore[no-any-return]


def image_bytes(body: bytes) -> np.ndarray:
    """An Alpaca ImageBytes reply: 11 little-endian int32 of metadata, then the array, [x][y] order."""
    if len(body) < METADATA_BYTES:
        raise ValueError(f"ImageBytes reply of {len(body)} bytes, shorter than its metadata")
    _version, error, _ctid, _stid, start, _element, wire, rank, nx, ny, _nz = np.frombuffer(body, "<i4", 11)
    if error:
        raise_alpaca_if(int(error), body[start:].decode("utf-8", "replace"))
    if rank != 2:
        raise ValueError(f"ImageBytes of rank {rank}: gozen reads monochrome (rank 2) images only")
    if int(wire) not in WIRE_TYPES:
        raise ValueError(f"ImageBytes transmission element type {wire} is not one gozen reads")
    return np.frombuffer(body, WIRE_TYPES[int(wire)], count=int(nx) * int(ny), offset=int(start)).reshape(nx, ny)


class DeviceRun(threading.Thread):
    """One device through one exposure: its images, in order, until the end or its first failure."""

    def __init__(self, camera: AlpacaCamera, chip: Chip, spec: ExposureSpec, first: int) -> None:
        super().__init__(name=f"alpaca-{chip.det_id}", daemon=True)
        self.camera, self.chip, self.spec, self.changed = camera, chip, spec, camera.changed
        self.timeout_s = camera.where.timeout_s
        self.shape = (camera.geometry.width, camera.geometry.height)  # NumX, NumY
        self.next_index = first  # frames before it are done (taken or skipped)
        self.images: dict[int, Image] = {}
        self.fault: DeviceUnavailable | None = None
        self.told = False
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            if not self.chip.ready:  # not answering at start, or failed since: connected and checked again
                self.prepare()
            for i in range(self.next_index, self.spec.n_frames):
                if self.stopped.is_set():
                    return
                image = self.take(i)
                with self.changed:
                    self.images[i] = image
                    for old in sorted(self.images)[:-KEEP_FRAMES]:
                        del self.images[old]
                    self.next_index = i + 1
                    self.changed.notify_all()
        except DeviceUnavailable as err:
            self.failed(err)
        except Exception as err:  # a bug or a reply no one foresaw: the chip fails, the readout goes on
            log.exception("%s: exposure %d failed", self.chip.name, self.spec.exp_id)
            self.failed(DeviceUnavailable(self.chip.name, f"{type(err).__name__}: {err}"))

    def prepare(self) -> None:
        """Connect and check the device, asking again until its first frame is due (a camera server
        starting with the readout, as sim:alpaca under `gozen up`, answers a moment later)."""
        first_ns = self.spec.start_ns + round(self.next_index * 1e9 / self.spec.fps)
        while True:
            try:
                why = self.camera.prepare(self.chip)
                break
            except DeviceUnavailable:
                if time.time_ns() + RETRY_S * 1e9 > first_ns or self.stopped.wait(RETRY_S):
                    raise
        if why is not None:
            raise DeviceUnavailable(self.chip.name, why)

    def failed(self, err: DeviceUnavailable) -> None:
        self.chip.ready = False  # a camera restarted meanwhile must be connected and set up again
        with self.changed:
            if self.fault is None:
                self.fault = err
            self.changed.notify_all()

    def done_with(self, index: int) -> bool:
        return self.next_index > index or self.fault is not None or not self.is_alive()

    def take(self, index: int) -> Image:
        chip, spec = self.chip, self.spec
        duration_s = 1.0 / spec.fps
        start_ns = spec.start_ns + round(index * 1e9 / spec.fps)
        if self.stopped.wait(max(0.0, (start_ns - time.time_ns()) / 1e9)):
            raise DeviceUnavailable(chip.name, "stopped")
        counter = chip.counter
        chip.counter += 1
        command(chip.device, "StartExposure", chip.name, duration_s, True)
        began = time.monotonic()
        self.stopped.wait(duration_s)
        while not ask(chip.device, "ImageReady", chip.name):
            if time.monotonic() - began > duration_s + self.timeout_s:
                raise DeviceUnavailable(chip.name, f"ImageReady: no image {self.timeout_s:g} s after the exposure")
            if self.stopped.wait(POLL_S):
                raise DeviceUnavailable(chip.name, "stopped")
        pixels = fetch_image(chip, self.timeout_s)
        if pixels.shape != self.shape:
            raise DeviceUnavailable(chip.name, f"ImageArray is {pixels.shape}, not NumX x NumY {self.shape}")
        stamp = guarded(
            chip.device, "LastExposureStartTime", chip.name, lambda: utc_ns(chip.device.LastExposureStartTime)
        )
        return Image(pixels, counter, stamp)


@dataclass
class AlpacaCamera(Camera):
    """Chips read from ASCOM Alpaca Camera devices at camera.alpaca (camera.alpaca.devices: chip -> device)."""

    cfg: CameraConfig
    chips: dict[int, Chip] = field(default_factory=dict)
    runs: dict[int, DeviceRun] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.geometry = geometry(self.cfg)
        self.where = self.cfg.alpaca
        self.numbers = self.where.devices or {det: n for n, det in enumerate(self.cfg.chips)}
        self.why: dict[int, str] = {}
        self.faults: dict[int, DeviceUnavailable] = {}
        self.down: set[int] = set()  # chips whose failure was told and that have not delivered since
        self.changed = threading.Condition()
        self.spec: ExposureSpec | None = None

    def open(self, det_ids: list[int]) -> list[int]:
        """The chips whose device is the chip the config describes, or does not answer yet (a camera
        server started after the readout): those are connected and checked at each exposure until they are."""
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(det_ids)))) as pool:
            problems = dict(zip(det_ids, pool.map(self._open_one, det_ids), strict=True))
        for det, why in problems.items():
            if why is not None:
                self.why[det] = why
                log.warning("chip %d not recognised: %s", det, why)
        return [d for d in det_ids if d in self.chips]

    def _open_one(self, det_id: int) -> str | None:
        """Why the chip is not recognised, or None."""
        number = self.numbers.get(det_id)
        if number is None:
            return f"camera.alpaca.devices names no Alpaca camera device for chip {det_id}"
        name = f"camera device {number} (det {det_id}) at {self.where.address}"
        chip = Chip(det_id, number, AlpacaDevice(self.where.address, number), name)
        try:
            why = self.prepare(chip)
        except DeviceUnavailable as err:
            log.warning("%s; tried again at each exposure", err)
            why = None
        if why is None:
            self.chips[det_id] = chip
        return why

    def prepare(self, chip: Chip) -> str | None:
        """Connect the device and set it to read the whole sensor, unbinned, as the frame geometry; why it
        cannot be, or None (then the chip is ready). DeviceUnavailable when it does not answer."""
        dev, name, geo = chip.device, chip.name, self.geometry
        guarded(dev, "Connected", name, lambda: setattr(dev, "Connected", True))
        size = (ask(dev, "CameraXSize", name), ask(dev, "CameraYSize", name))
        if size != (geo.width, geo.height):
            return (
                f"{name} is {size[0]} x {size[1]} pixels; the camera's frames are {geo.width} x {geo.height} "
                f"(camera.width_px x height_px, readout {self.cfg.readout})"
            )
        for member, value in (
            ("BinX", 1),
            ("BinY", 1),
            ("StartX", 0),
            ("StartY", 0),
            ("NumX", size[0]),
            ("NumY", size[1]),
        ):
            guarded(dev, member, name, lambda m=member, v=value: setattr(dev, m, v))  # type: ignore[misc]
        if (ask(dev, "NumX", name), ask(dev, "NumY", name)) != (geo.width, geo.height):
            return f"{name} does not read its whole {size[0]} x {size[1]} sensor unbinned (NumX, NumY)"
        sensor = ask(dev, "SensorType", name)
        if int(sensor) == COLOR:
            return f"{name} has a colour sensor (SensorType Color: three planes); gozen writes one plane per chip"
        temp = optional(dev, "CCDTemperature", name)
        log.info("%s connected: %d x %d, SensorType %s, CCDTemperature %s", name, *size, sensor, temp)
        chip.ready = True
        return None

    def unrecognised_reason(self, det_id: int) -> str:
        return self.why.get(det_id, super().unrecognised_reason(det_id))

    def start_exposure(self, spec: ExposureSpec) -> None:
        for run in self.runs.values():
            run.stopped.set()  # a run still in a request ends at its timeout, into its own state
        self.spec = spec
        late_s = (time.time_ns() - spec.start_ns) / 1e9
        first = min(spec.n_frames, max(0, int(late_s * spec.fps)))  # frames already under way are not started
        self.runs = {d: DeviceRun(self, c, spec, first) for d, c in self.chips.items()}
        for run in self.runs.values():
            run.start()

    def wait_frame(self, index: int) -> None:
        """Until the frame's time has passed and every device has frame `index` or has failed (at most its
        requests' timeouts past the frame's end: each request has one, so a device that stalls fails on its own)."""
        assert self.spec is not None, "start_exposure first"
        end_s = (self.spec.start_ns + (index + 1) * 1e9 / self.spec.fps) / 1e9
        deadline = max(end_s, time.time()) + 3 * self.where.timeout_s + 10
        with self.changed:
            self.changed.wait_for(
                lambda: all(r.done_with(index) for r in self.runs.values()), max(0.0, deadline - time.time())
            )
            pending = [r for r in self.runs.values() if not r.done_with(index)]
            for det, run in self.runs.items():
                if run in pending:
                    run.stopped.set()
                    run.fault = DeviceUnavailable(
                        run.chip.name, f"frame {index}: no image by {deadline - end_s:.0f} s after it"
                    )
                if run.fault is not None and not run.told:
                    run.told = True
                    if det not in self.down:  # a device down exposure after exposure is told once
                        self.down.add(det)
                        self.faults[det] = run.fault
        # As a camera reads a frame out at its time: not sooner when every device has failed.
        time.sleep(max(0.0, end_s - time.time()))

    def read_frame(self, det_id: int, index: int, into: np.ndarray) -> FrameInfo | None:
        run = self.runs.get(det_id)
        if run is None:
            return None
        with self.changed:
            image = run.images.pop(index, None)
        if image is None:
            return None
        if det_id in self.down:
            self.down.discard(det_id)
            log.info("%s delivers frames again", run.chip.name)
        rows = into.reshape(self.geometry.height, self.geometry.width)
        pixels = image.pixels if image.pixels.dtype == np.uint16 else np.clip(image.pixels, 0, 65535)
        np.copyto(rows, pixels.T, casting="unsafe")
        return FrameInfo(det_id, image.counter, image.gps_ns, link_error=False)

    def take_faults(self) -> dict[int, DeviceUnavailable]:
        with self.changed:
            faults, self.faults = self.faults, {}
        return faults
