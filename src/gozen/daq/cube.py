"""One chip's exposure as a FITS cube, streamed to disk frame by frame and checksummed on the way.

The file is written under a temporary name (`.NAME.part`) and renamed only when whole, so
a final name always means a complete file. The xxh3 checksum covers every byte in file
order and is computed while writing; only a cube cut short by a stop (its header rewritten)
is read back for it, when it is committed, off the writer's loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
import xxhash

from gozen.daq.headers import BLOCK, FRAME_DTYPE, FramesTableTemplate, padded
from gozen.daq.ring import FLAG_DAMAGED, FLAG_MISSING

NAN = float("nan")
SIGN_FLIP = 0x0080  # on the byte-swapped words: flips the top bit of the big-endian high byte
REHASH_CHUNK = 8 << 20


def to_fits_order(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint16 pixels as the file stores them, in `out` (default: in place, as the readout does in the ring).

    FITS wants big-endian int16 with BZERO=32768: the sign bit flipped, stored byte-swapped. One
    numpy pass, as fast as a plain copy (in place too: numpy sees the same memory and does not copy).
    """
    target = pixels if out is None else out
    np.bitwise_xor(pixels, 0x8000, out=target.view(">u2"))
    return target


def part_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.part")


@dataclass(frozen=True)
class CubeResult:
    path: Path
    size_bytes: int
    checksum_xxh3: str
    frames_written: int
    frames_missing: int
    frames_damaged: int
    overscan_median: float | None = None  # median over the frames (None: no overscan read)
    overscan_noise: float | None = None
    stopped: bool = False  # cut short by a stop: NAXIS3 (frames_written + frames_missing) the frames kept


class CubeFile:
    """Frames must come in index order; gaps are filled with BLANK frames and flagged."""

    def __init__(self, final: Path, header: bytes, frame_pixels: int, n_frames: int, fsync: bool) -> None:
        self.final = final
        self.part = part_name(final)
        self.frame_pixels = frame_pixels
        self.n_frames = n_frames
        self.fsync = fsync
        self.header = header
        self.stopped = False
        self.next_index = 0
        self.rows = np.zeros(n_frames, FRAME_DTYPE.newbyteorder("="))
        self.rows["FRAME"] = np.arange(n_frames)
        self.rows["COUNTER"] = -1
        self.rows["OSMED"] = self.rows["OSNOISE"] = np.nan
        self._hash: xxhash.xxh3_64 | None = xxhash.xxh3_64()  # None: made at commit, reading the file back
        self.checksum_xxh3: str | None = None  # once finished (a cut cube: once committed)
        self._size = 0
        self._fd = os.open(self.part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)  # read back if it is cut
        self._write(header)

    def _write(self, data: bytes | memoryview | np.ndarray) -> None:
        mv = (data.data if isinstance(data, np.ndarray) else memoryview(data)).cast("B")
        if self._hash is not None:
            self._hash.update(mv)
        while mv:
            n = os.write(self._fd, mv)
            mv = mv[n:]
            self._size += n

    def write_frame(
        self,
        index: int,
        pixels: np.ndarray | None,
        scratch: np.ndarray,
        counter: int,
        gps_s: float,
        flags: int,
        overscan: tuple[float, float] = (NAN, NAN),
    ) -> None:
        """Append frame `index` (uint16 pixels, or None when it never arrived); overscan: its (median, noise)."""
        self._check_order(index, scratch)
        if pixels is None:
            self._write_blank(scratch)
            flags |= FLAG_MISSING
        else:
            self._write(to_fits_order(pixels, scratch))
        self._done(index, counter, gps_s, flags, overscan)

    def write_converted(
        self,
        index: int,
        raw: np.ndarray,
        scratch: np.ndarray,
        counter: int,
        gps_s: float,
        flags: int,
        overscan: tuple[float, float] = (NAN, NAN),
    ) -> None:
        """Append a frame already in FITS order (converted in the ring by the readout, or carried over from
        another volume): written from where it is, no copy."""
        self._check_order(index, scratch)  # the frames missing before it are made in scratch, never in raw
        self._write(raw)
        self._done(index, counter, gps_s, flags, overscan)

    def _check_order(self, index: int, scratch: np.ndarray) -> None:
        if index < self.next_index or index >= self.n_frames:
            raise ValueError(f"{self.final.name}: frame {index} out of order (next is {self.next_index})")
        self.fill_missing_until(index, scratch)

    def _done(self, index: int, counter: int, gps_s: float, flags: int, overscan: tuple[float, float]) -> None:
        self.rows[index] = (index, counter, gps_s, flags, *overscan)
        self.next_index = index + 1

    def _write_blank(self, scratch: np.ndarray) -> None:
        scratch.fill(SIGN_FLIP)  # raw -32768 (BLANK) stored big-endian: bytes 80 00
        self._write(scratch)

    def fill_missing_until(self, index: int, scratch: np.ndarray) -> None:
        while self.next_index < index:
            self._write_blank(scratch)
            self.rows[self.next_index]["FLAGS"] = FLAG_MISSING
            self.next_index += 1

    @property
    def complete(self) -> bool:
        return self.next_index >= self.n_frames

    def cut(self, kept: int, header: bytes) -> None:
        """End the cube after `kept` frames (its exposure was stopped): any frame past them is dropped
        and the header replaced by `header` (the same length: its frame counts rewritten). Its
        checksum is then made at commit, reading the file back."""
        if kept >= self.n_frames:
            return
        if len(header) != len(self.header):
            raise ValueError(f"{self.final.name}: the cut header is {len(header)} bytes, the file's {len(self.header)}")
        if self.next_index > kept:  # a readout that saw the stop late sent frames past it
            end = len(self.header) + kept * self.frame_pixels * 2
            os.ftruncate(self._fd, end)
            os.lseek(self._fd, end, os.SEEK_SET)
            self._size, self.next_index = end, kept
        view = memoryview(header)
        while view:
            view = view[os.pwrite(self._fd, view, len(header) - len(view)) :]
        self.header, self.n_frames, self.rows = header, kept, self.rows[:kept].copy()
        self.stopped, self._hash = True, None

    def close(self, scratch: np.ndarray) -> CubeResult:
        """Finish and commit in one go (the writer splits them, see Flusher)."""
        result = self.finish(scratch)
        self.commit()
        return self.committed(result)

    def finish(self, scratch: np.ndarray) -> CubeResult:
        """Fill what never came and append the FRAMES table; the file is whole but not yet durable or named."""
        self.fill_missing_until(self.n_frames, scratch)
        data_bytes = self.frame_pixels * 2 * self.n_frames
        self._write(b"\0" * (padded(data_bytes) - data_bytes))
        flags = self.rows["FLAGS"]
        missing = int(np.count_nonzero(flags & FLAG_MISSING))
        damaged = int(np.count_nonzero(flags & FLAG_DAMAGED))
        os_median, os_noise = (_median_or_none(self.rows[k]) for k in ("OSMED", "OSNOISE"))
        self._write(_table_template(self.n_frames).render(self.rows, missing, damaged, os_median, os_noise))
        assert self._size % BLOCK == 0
        if self._hash is not None:
            self.checksum_xxh3 = self._hash.hexdigest()
        return CubeResult(
            self.final,
            self._size,
            self.checksum_xxh3 or "",  # a cut cube's: see committed()
            self.n_frames - missing,
            missing,
            damaged,
            os_median,
            os_noise,
            self.stopped,
        )

    def committed(self, result: CubeResult) -> CubeResult:
        """finish()'s result with the checksum commit() made (a cut cube's)."""
        return result if result.checksum_xxh3 else replace(result, checksum_xxh3=self.checksum_xxh3 or "")

    def _hash_back(self) -> str:
        """The checksum of the whole file, read back (a cut cube's header changed after its frames)."""
        h, buf, offset = xxhash.xxh3_64(), bytearray(REHASH_CHUNK), 0
        while offset < self._size:
            n = os.preadv(self._fd, [buf], offset)
            if n <= 0:
                raise OSError(f"{self.part}: read back {offset} of {self._size} bytes")
            h.update(memoryview(buf)[:n])
            offset += n
        return h.hexdigest()

    def commit(self) -> None:
        """fsync (per policy), close, and give the file its final name. Safe to run on another thread."""
        try:
            if self.checksum_xxh3 is None:
                self.checksum_xxh3 = self._hash_back()
            if self.fsync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1
        os.rename(self.part, self.final)

    def abandon(self) -> None:
        """Close and remove the partial file (the volume failed under it)."""
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
        try:
            self.part.unlink()
        except OSError:
            pass


def _median_or_none(values: np.ndarray) -> float | None:
    known = values[~np.isnan(values)]
    return float(np.median(known)) if known.size else None


@cache
def _table_template(n_frames: int) -> FramesTableTemplate:
    return FramesTableTemplate(n_frames)
