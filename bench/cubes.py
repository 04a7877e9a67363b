"""Tomo-e-sized cubes written by gozen's own writer, for the benchmarks."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from gozen.config import Config
from gozen.daq.cube import CubeFile
from gozen.daq.headers import ExposureInfo, HeaderTemplate
from gozen.daq.snapshot import simulated_snapshot

FRAMES, FPS = 12, 2.0
PIXELS = 2000 * 1128


class CubeMaker:
    """Opens cubes with a real header and fills them with sky-like frames (4 distinct, reused)."""

    def __init__(self, cfg: Config | None = None) -> None:
        cfg = cfg or Config()
        now = datetime.now(UTC)
        exp = ExposureInfo(
            1,
            "BENCH",
            "OBJECT",
            "bench",
            "none",
            "bench",
            "bench",
            FRAMES,
            FPS,
            now,
            None,
            None,
            simulated_snapshot(cfg, now, 10.0, 40.0),
        )
        self.template = HeaderTemplate(cfg, exp, "bench")
        rng = np.random.default_rng(0)
        self.frames = [rng.normal(1300, 17, PIXELS).astype(np.uint16) for _ in range(4)]
        self.scratch = np.zeros(PIXELS, np.uint16)

    def write(self, path: Path, fsync: bool, seed: int = 0) -> CubeFile:
        """A cube with every frame written, finished but not yet committed (see CubeFile.commit)."""
        cube = CubeFile(path, self.template.render(111, "bench", path.name), PIXELS, FRAMES, fsync=fsync)
        for k in range(FRAMES):
            cube.write_frame(k, self.frames[(seed + k) % 4], self.scratch, k, 0.0, 0)
        return cube


def drop_caches(smoke: bool = False) -> str:
    os.sync()
    if smoke:  # a check that it runs: not worth emptying the page cache of a machine others use
        return "kept (smoke)"
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "dropped"
    except OSError:
        return "kept (not root)"
