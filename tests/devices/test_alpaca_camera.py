"""The Alpaca camera end to end: sim:alpaca's Camera devices over HTTP on 127.0.0.1, read by the DAQ
(readout and writer, real rings and files) through the Alpaca driver, one device per chip."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from alpaca.camera import Camera as AlpacaClient
from astropy.io import fits
from sqlalchemy import Engine

from gozen.config import Config, parse_config
from gozen.daq import catalog
from gozen.daq.readout import Readout
from gozen.daq.ring import FLAG_MISSING
from gozen.daq.writer import Writer
from gozen.db.engine import make_engine
from gozen.db.events import recent_events
from gozen.db.migrate import upgrade
from gozen.devices.alpaca_camera import AlpacaCamera, utc_ns
from gozen.devices.camera import ExposureSpec
from tests.conftest import WAIT_S, free_port, wait_until
from tests.daq.exposing import expose
from tests.devices.servers import AlpacaServer

CHIPS, W, H, FPS = [111, 112], 200, 100, 5.0


def camera_config(tmp: Path, port: int, **camera: Any) -> Config:
    return parse_config(
        {
            "data_dir": str(tmp / "var"),
            "camera": {
                "driver": "alpaca",
                "alpaca": {"address": f"127.0.0.1:{port}", "timeout_s": 5},
                "chips": CHIPS,
                "width_px": W,
                "height_px": H,
                "fps": FPS,
                **camera,
            },
            "daq_volumes": [{"name": "vol1", "path": str(tmp / "vol1")}],
            "daq": {"writers": 1, "reserve_bytes": 0, "start_delay_s": 0.3, "frame_timeout_s": 3, "ring_seconds": 4},
        }
    )


@dataclass
class Daq:
    cfg: Config
    engine: Engine
    server: AlpacaServer
    readout: Readout
    writer: Writer

    def expose(self, n_frames: int) -> tuple[dict[int, Counter[str]], dict[int, dict[str, Any]]]:
        """One exposure read and written; the readout's counts and the files' rows, per chip."""
        request = catalog.ExposureRequest("ALPACA", n_frames, FPS)
        return expose(self.cfg, self.engine, self.readout, self.writer, request)


@pytest.fixture(scope="module")
def daq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daq]:
    tmp, port = tmp_path_factory.mktemp("alpaca"), free_port()
    cfg = camera_config(tmp, port)
    server = AlpacaServer(cfg, port)
    server.start()
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    readout = Readout(cfg, engine, 0, "daq1")
    assert isinstance(readout.camera, AlpacaCamera) and readout.recognised == CHIPS
    writer = Writer(cfg, engine, 0, "daq1")
    writer.attach(timeout_s=WAIT_S)
    yield Daq(cfg, engine, server, readout, writer)
    server.stop()


def test_an_alpaca_exposure_gives_a_fits_file_whose_pixels_are_the_cameras_image_array(daq: Daq) -> None:
    counts, files = daq.expose(5)
    assert {c: (k["read"], k["missed"]) for c, k in counts.items()} == {111: (5, 0), 112: (5, 0)}
    for number, det in enumerate(CHIPS):
        f = files[det]
        assert (f["state"], f["frames_written"], f["frames_missing"]) == ("written", 5, 0)
        assert (
            "0 warning(s) and 0 error(s)"
            in subprocess.run(["fitsverify", f["path"]], capture_output=True, text=True).stdout
        )
        # The device's last image, as alpyca reads it ([x][y] nested lists), is the file's last frame.
        client = AlpacaClient(daq.server.address, number)
        served = np.array(client.ImageArray).T
        as_json = httpx.get(f"http://{daq.server.address}/api/v1/camera/{number}/imagearray", timeout=30).json()
        assert np.array_equal(np.array(as_json["Value"]).T, served)  # JSON and ImageBytes agree
        with fits.open(f["path"]) as hdul:
            cube, table = hdul[0].data, hdul["FRAMES"].data
            assert cube.shape == (5, H, W) and np.array_equal(cube[-1], served)
            assert table["GPSTIME"][-1] == pytest.approx(utc_ns(client.LastExposureStartTime) / 1e9, abs=1e-6)
            assert list(np.diff(table["COUNTER"])) == [1, 1, 1, 1]
            assert np.all(np.diff(table["GPSTIME"]) >= 1 / FPS)  # each frame starts after the last one's exposure


def test_a_camera_device_that_disappears_mid_exposure_gives_missed_frames_and_an_event(daq: Daq) -> None:
    camera = daq.readout.camera
    assert isinstance(camera, AlpacaCamera)

    before = camera.runs  # the last exposure's

    def unplug_112_after_3_frames() -> None:
        taken = lambda: camera.runs is not before and camera.runs[112].next_index >= 3  # noqa: E731
        wait_until(taken, WAIT_S, 0.01, "frame 3 of chip 112")
        daq.server.put("/sim/fault", {"mode": "gone", "device": "camera/1"})

    unplug = threading.Thread(target=unplug_112_after_3_frames)
    unplug.start()
    counts, files = daq.expose(8)
    unplug.join()
    assert (counts[111]["read"], counts[111]["missed"]) == (8, 0)
    assert counts[112]["read"] >= 3 and counts[112]["missed"] >= 1 and sum(counts[112].values()) == 8
    assert files[112]["frames_missing"] == counts[112]["missed"] and files[111]["frames_missing"] == 0
    with fits.open(files[112]["path"]) as hdul:
        flags = hdul["FRAMES"].data["FLAGS"]
        assert list(flags[-1:] & FLAG_MISSING) == [FLAG_MISSING] and not any(flags[:3] & FLAG_MISSING)
    [fault] = [e for e in recent_events(daq.engine, 20, kind="camera_fault") if e.subject == "det 112"]
    assert "camera device 1 (det 112)" in fault.message and "no camera number 1 here" in fault.message

    daq.server.put("/sim/fault", {"mode": "ok"})  # plugged in again: the next exposure is whole
    counts, files = daq.expose(3)
    assert {c: (k["read"], k["missed"]) for c, k in counts.items()} == {111: (3, 0), 112: (3, 0)}


def test_a_device_whose_size_is_not_the_cameras_geometry_is_not_recognised_and_says_why(
    daq: Daq, tmp_path: Path
) -> None:
    port = int(daq.server.address.rsplit(":", 1)[1])
    camera = AlpacaCamera(camera_config(tmp_path, port, width_px=300).camera)
    assert camera.open([111]) == []
    assert camera.unrecognised_reason(111) == (
        f"camera device 0 (det 111) at {daq.server.address} is 200 x 100 pixels; the camera's frames are "
        "300 x 100 (camera.width_px x height_px, readout light)"
    )


def test_the_management_api_lists_one_camera_device_per_chip(daq: Daq) -> None:
    body = httpx.get(f"http://{daq.server.address}/management/v1/configureddevices", timeout=30).json()
    cameras = [(d["DeviceNumber"], d["DeviceName"]) for d in body["Value"] if d["DeviceType"] == "Camera"]
    assert cameras == [(0, "gozen simulated chip 111"), (1, "gozen simulated chip 112")]


def test_a_simulated_camera_device_exposes_like_a_camera(daq: Daq) -> None:
    from alpaca.exceptions import InvalidValueException

    client = AlpacaClient(daq.server.address, 1)
    client.Connected = True
    assert (client.CameraXSize, client.CameraYSize, client.SensorType, client.MaxADU) == (W, H, 0, 65535)
    with pytest.raises(InvalidValueException):
        client.BinX = 2  # it does not bin
    try:
        client.StartX, client.NumX = 20, 50
        client.StartExposure(0.3, True)
        assert (client.ImageReady, client.CameraState) == (False, 2)  # exposing
        wait_until(lambda: client.ImageReady, WAIT_S, 0.02, "the image")
        light = np.array(client.ImageArray).T
        assert light.shape == (H, 50) and client.LastExposureDuration == 0.3 and client.PercentCompleted == 100
        client.StartExposure(0.001, False)  # a dark: bias and read noise, no sky
        wait_until(lambda: client.ImageReady, WAIT_S, 0.02, "the dark")
        dark = np.array(client.ImageArray).T
        assert np.median(light) - np.median(dark) > 250 and abs(np.median(dark) - 1000) <= 35
    finally:
        client.StartX, client.NumX = 0, W  # as the readout left it


def test_a_camera_server_started_after_the_readout_is_read_from_the_next_exposure(tmp_path: Path) -> None:
    """As under `gozen up`, where sim:alpaca and the readout start together: a device that does not answer
    at start is kept, its failure told once however many exposures it misses, and read once it answers."""
    port = free_port()
    cfg = camera_config(tmp_path, port, fps=20.0)
    camera = AlpacaCamera(cfg.camera)
    assert camera.open([111]) == [111]

    def exposure(exp_id: int) -> list[bool]:
        camera.start_exposure(ExposureSpec(exp_id, 2, 20.0, time.time_ns() + 100_000_000, 10.0, 20.0))
        into = np.empty(W * H, np.uint16)
        got = []
        for i in range(2):
            camera.wait_frame(i)
            got.append(camera.read_frame(111, i, into) is not None)
        return got

    assert exposure(1) == [False, False]
    [(det, refused)] = camera.take_faults().items()
    assert det == 111 and "Connection refused" in str(refused)
    assert exposure(2) == [False, False] and camera.take_faults() == {}  # still down: told once
    server = AlpacaServer(cfg, port)
    server.start()
    try:
        assert exposure(3) == [True, True] and camera.take_faults() == {}
    finally:
        server.stop()
