"""What a writer finds when it starts after dying: `.part` files, whole or cut short."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from astropy.io import fits

from gozen.config import Config
from gozen.daq.layout import writer_of
from gozen.daq.ring import FLAG_DAMAGED, FLAG_MISSING
from gozen.daq.volumes import VolumeState
from gozen.db.states import DaqFileState

PART_RE = re.compile(r"^\.TMQ(\d)(\d{8})(\d{8})(\d{2})\.fits\.part$")


@dataclass(frozen=True)
class StalePart:
    path: Path
    exp_id: int
    det_id: int
    volume: VolumeState


def find_stale_parts(cfg: Config, host: str, writer: int, volumes: list[VolumeState]) -> list[StalePart]:
    """The `.part` files of this writer's chips on every volume."""
    found = []
    for v in volumes:
        if not v.path.is_dir():
            continue
        for part in v.path.rglob(".TMQ*.fits.part"):
            m = PART_RE.match(part.name)
            if not m:
                continue
            det_id = int(m.group(1)) * 100 + int(m.group(4))
            if det_id in cfg.chips_of(host) and writer_of(cfg, host, det_id) == writer:
                found.append(StalePart(part, int(m.group(3)), det_id, v))
    return found


def salvage(stale: StalePart, cfg: Config, host: str, writer_name: str) -> dict[str, Any] | None:
    """Name a whole file its writer finished but did not name; its daq_files row, or None if it is cut short."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # astropy only warns about a truncated file
            with fits.open(stale.path, memmap=False) as hdul:
                h, table = hdul[0].header, hdul["FRAMES"]
                n_frames, width, height = int(h["NAXIS3"]), int(h["NAXIS1"]), int(h["NAXIS2"])
                flags = np.asarray(table.data["FLAGS"])
                overscan = (table.header.get("OVSCMED"), table.header.get("OVSCNOIS"))  # absent: none read
                whole = hdul[0].data is not None and len(flags) == n_frames
    except (OSError, ValueError, KeyError, Warning):
        return None
    if not whole:
        return None
    data = stale.path.read_bytes()  # recovery only: the checksum made while writing died with the writer
    final = stale.path.with_name(stale.path.name[1 : -len(".part")])
    os.rename(stale.path, final)
    missing = int(np.count_nonzero(flags & FLAG_MISSING))
    return {
        "exp_id": stale.exp_id,
        "det_id": stale.det_id,
        "state": DaqFileState.WRITTEN,
        "path": str(final),
        "filename": final.name,
        "daq_host": host,
        "daq_volume": stale.volume.name,
        "size_bytes": len(data),
        "checksum_xxh3": xxhash.xxh3_64(data).hexdigest(),
        "frames_expected": n_frames,
        "frames_written": n_frames - missing,
        "frames_missing": missing,
        "frames_damaged": int(np.count_nonzero(flags & FLAG_DAMAGED)),
        "naxis1": width,
        "naxis2": height,
        "naxis3": n_frames,
        "overscan_median": overscan[0],
        "overscan_noise": overscan[1],
        "writer": writer_name,
    }
