"""The multi-chip camera as the readout sees it: chips, frames, GPS time stamps."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from gozen.service import DeviceUnavailable


@dataclass(frozen=True)
class FrameInfo:
    """What the frame grabber reports with each frame."""

    det_id: int
    counter: int  # the chip's own frame counter: a gap means frames were missed
    gps_ns: int  # GPS time stamp of the frame's start, ns since the Unix epoch (UTC)
    link_error: bool  # the grabber saw a CRC/link error: the pixels are damaged


@dataclass(frozen=True)
class ExposureSpec:
    exp_id: int
    n_frames: int
    fps: float
    start_ns: int  # GPS time of the first frame
    ra_deg: float
    dec_deg: float


class Camera(ABC):
    """A camera of many chips read out together."""

    @abstractmethod
    def open(self, det_ids: list[int]) -> list[int]:
        """Initialise these chips; returns those that answered (the rest are not recognised)."""

    @abstractmethod
    def start_exposure(self, spec: ExposureSpec) -> None:
        """Arm the chips for an exposure of spec.n_frames frames from spec.start_ns."""

    @abstractmethod
    def wait_frame(self, index: int) -> None:
        """Block until frame `index` of the current exposure has been read out."""

    @abstractmethod
    def read_frame(self, det_id: int, index: int, into: np.ndarray) -> FrameInfo | None:
        """Copy frame `index` of chip det_id into `into` (uint16); None if it never arrived."""

    def unrecognised_reason(self, det_id: int) -> str:
        """Why open() left this chip out, for the event that tells it."""
        return "it did not answer at start"

    def take_faults(self) -> dict[int, DeviceUnavailable]:
        """Chips whose device failed since the last call (each failure told once), for the readout's events.

        A failed chip's frames are missed (read_frame gives None); the camera never raises from the
        frame loop, so one chip's device cannot stop the others' readout."""
        return {}
