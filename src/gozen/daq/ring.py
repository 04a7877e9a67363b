"""A single-producer single-consumer ring of frame slots in shared memory.

One ring joins one readout process to one writer process. The producer never blocks: when
the ring is full it is told so and counts the frame as dropped. Indices only grow; a slot
is `index % n_slots`. The file lives in /dev/shm, so either side may restart and find it.
Each side holds a shared lock on the file while it has it open; a side that stops cleanly
removes the file only if it can take the lock alone and no frame is left in it (a crash
leaves the file for the next start).
Ordering relies on the x86-64 (TSO) store order: the data and meta of a slot are stored
before the head that publishes it, and each side stores only its own index.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
NAN = float("nan")
MAGIC = 0x676F7A656E_52_02  # "gozen" R 2 (2: BEGIN slots, overscan and FITS-order fields in the meta)
PAGE = 4096
META_DTYPE = np.dtype(
    [
        ("seq", "<i8"),
        ("kind", "<i8"),
        ("exp_id", "<i8"),
        ("det_id", "<i8"),
        ("index", "<i8"),
        ("n_frames", "<i8"),
        ("counter", "<i8"),
        ("gps_ns", "<i8"),
        ("flags", "<i8"),
        ("nbytes", "<i8"),  # BEGIN: bytes of the announcement in this slot's data area
        ("parts", "<i8"),  # BEGIN: slots the announcement spans (this one is part `index`)
        ("fits_order", "<i8"),  # FRAME: 1 when the pixels are stored as FITS wants them (see readout.to_fits_order)
        ("os_median", "<f8"),  # FRAME: the overscan's median and noise (NaN: none read)
        ("os_noise", "<f8"),
    ]
)
META_FIELDS: tuple[str, ...] = tuple(META_DTYPE.names or ())
META_BYTES = 128
assert META_DTYPE.itemsize <= META_BYTES

# kinds of slot: BEGIN announces an exposure (its ExposureInfo, see daq/announce.py) before its frames
FRAME, END, BEGIN = 1, 2, 3
# frame flags (also the FLAGS column of a file's frame table)
FLAG_MISSING = 1  # the camera did not deliver it (or it was dropped before the writer)
FLAG_DAMAGED = 2  # delivered with a link error: pixels kept, but not to be trusted
FLAG_DROPPED = 4  # read, but the ring was full


class RingNoRoom(Exception):
    """Shared memory has no room for a ring of the configured size."""


class RingMismatch(Exception):
    """An existing ring file whose geometry differs from the config."""


@dataclass(frozen=True)
class SlotMeta:
    seq: int
    kind: int
    exp_id: int
    det_id: int
    index: int
    n_frames: int
    counter: int
    gps_ns: int
    flags: int
    nbytes: int = 0
    parts: int = 0
    fits_order: int = 0
    os_median: float = NAN
    os_noise: float = NAN


_UNSET = {f: NAN if META_DTYPE[f].kind == "f" else 0 for f in META_FIELDS}


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


class Ring:
    def __init__(self, path: Path, n_slots: int, frame_bytes: int, create: bool = False) -> None:
        self.path = path
        self.n_slots = n_slots
        self.frame_bytes = frame_bytes
        self.slot_bytes = _round_up(META_BYTES + frame_bytes, PAGE)
        self.total_bytes = PAGE + n_slots * self.slot_bytes
        fd = _open_shared(path, create)
        try:
            fresh = os.fstat(fd).st_size == 0
            if fresh:
                if not create:
                    raise FileNotFoundError(f"ring {path} is not initialised yet")
                try:
                    # Reserve the memory now: a full /dev/shm is an error here, not a SIGBUS mid-night.
                    os.posix_fallocate(fd, 0, self.total_bytes)
                except OSError as err:
                    path.unlink(missing_ok=True)
                    raise RingNoRoom(
                        f"ring {path}: cannot reserve {self.total_bytes / 2**20:.0f} MiB ({err.strerror}); "
                        "free /dev/shm or lower daq.ring_seconds"
                    ) from None
            elif os.fstat(fd).st_size != self.total_bytes:
                magic, slots, fbytes = np.frombuffer(os.pread(fd, 24, 0), np.uint64)
                raise RingMismatch(
                    f"ring {path} holds {slots} slots of {fbytes} bytes, config wants {n_slots} of {frame_bytes}: "
                    "stop its readout and writer, remove it, start again"
                )
            self._mm = mmap.mmap(fd, self.total_bytes)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd  # kept open: it holds our shared lock
        self._hdr = np.frombuffer(self._mm, np.uint64, count=PAGE // 8)
        self._begun: int | None = None
        # header words: 0 magic, 1 n_slots, 2 frame_bytes; head at word 16, tail at word 32 (own cache lines);
        # the consumer's slot in hand + 1 at word 40 and how many consumer processes began it at word 41
        if fresh:
            self._hdr[1], self._hdr[2] = n_slots, frame_bytes
            self._hdr[16] = self._hdr[32] = 0
            self._hdr[0] = MAGIC
        elif int(self._hdr[0]) != MAGIC:
            raise RingMismatch(
                f"ring {path} was made by another version of gozen: stop its readout and writer, remove it, start again"
            )
        elif (int(self._hdr[1]), int(self._hdr[2])) != (n_slots, frame_bytes):
            raise RingMismatch(
                f"ring {path} holds {int(self._hdr[1])} slots of {int(self._hdr[2])} bytes, config wants "
                f"{n_slots} of {frame_bytes}: stop its readout and writer, remove it, start again"
            )
        self._meta = np.ndarray((n_slots,), META_DTYPE, buffer=self._mm, offset=PAGE, strides=(self.slot_bytes,))
        self._data = [
            np.frombuffer(self._mm, np.uint16, count=frame_bytes // 2, offset=PAGE + i * self.slot_bytes + META_BYTES)
            for i in range(n_slots)
        ]

    @classmethod
    def create_or_open(cls, path: Path, n_slots: int, frame_bytes: int) -> Ring:
        return cls(path, n_slots, frame_bytes, create=True)

    @classmethod
    def wait_open(cls, path: Path, n_slots: int, frame_bytes: int, timeout_s: float = 60) -> Ring:
        """Open a ring the producer creates, waiting for it to appear."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return cls(path, n_slots, frame_bytes, create=False)
            except FileNotFoundError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def prefault(self) -> None:
        """Touch every page now, so the first frames do not pay for page faults."""
        for d in self._data:
            d[:: PAGE // 2] = 0

    # -- producer ------------------------------------------------------------
    @property
    def head(self) -> int:
        return int(self._hdr[16])

    @property
    def tail(self) -> int:
        return int(self._hdr[32])

    def free_slots(self) -> int:
        return self.n_slots - (self.head - self.tail)

    def reserve(self) -> int | None:
        """The slot for the next frame, or None when the ring is full."""
        head = self.head
        if head - self.tail >= self.n_slots:
            return None
        return head

    def data(self, seq: int) -> np.ndarray:
        return self._data[seq % self.n_slots]

    def publish(self, seq: int, **meta: float) -> None:
        """Hand slot `seq` (its data written already) to the consumer, with its meta (unnamed fields 0, NaN)."""
        self._set_meta(seq, meta)
        self._hdr[16] = seq + 1

    def _set_meta(self, seq: int, meta: dict[str, float]) -> None:
        self._meta[seq % self.n_slots] = tuple(seq if f == "seq" else meta.get(f, _UNSET[f]) for f in META_FIELDS)

    def publish_bytes(self, kind: int, payload: bytes, **meta: int) -> bool:
        """Publish `payload` (an announcement, not a frame) in as many slots as it needs, all at once;
        False when the ring has not that many free."""
        size = self.frame_bytes
        parts = max(1, -(-len(payload) // size))
        head = self.head
        if head - self.tail + parts > self.n_slots:
            return False
        for part in range(parts):
            chunk = np.frombuffer(payload[part * size : (part + 1) * size], np.uint8)
            self._data[(head + part) % self.n_slots].view(np.uint8)[: chunk.size] = chunk
            self._set_meta(head + part, {**meta, "kind": kind, "index": part, "parts": parts, "nbytes": chunk.size})
        self._hdr[16] = head + parts  # the consumer sees every part or none
        return True

    def fill(self) -> int:
        """Slots published and not yet released."""
        return self.head - self.tail

    # -- consumer ------------------------------------------------------------
    def peek(self) -> SlotMeta | None:
        tail = self.tail
        if tail >= self.head:
            return None
        return SlotMeta(*self._meta[tail % self.n_slots].item())

    def payload(self, meta: SlotMeta) -> bytes:
        """The bytes a publish_bytes slot holds (part `meta.index` of `meta.parts`)."""
        return self._data[meta.seq % self.n_slots].view(np.uint8)[: meta.nbytes].tobytes()

    def begin(self, seq: int) -> int:
        """Note that this process starts on slot `seq`; how many consumer processes have started on it.

        The count lives in the ring, so it outlives a consumer that dies on the slot: more than one
        means an earlier consumer died while handling it (a poison slot, not to be tried forever).
        """
        if self._begun == seq:
            return int(self._hdr[41])
        if int(self._hdr[40]) == seq + 1:
            self._hdr[41] += 1
        else:
            self._hdr[41] = 1
            self._hdr[40] = seq + 1
        self._begun = seq
        return int(self._hdr[41])

    def release(self) -> None:
        self._hdr[32] = self.tail + 1

    def close(self, remove_if_unused: bool = False) -> bool:
        """Let go of the ring; with remove_if_unused, also remove its file when no other process
        has it open and no frame is left in it. True if the file was removed."""
        removed = False
        if remove_if_unused and self._fd >= 0:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if self.head == self.tail:
                    self.path.unlink(missing_ok=True)
                    removed = True
            except BlockingIOError:
                pass  # the other side still has it
        self._hdr = self._meta = self._data = None  # type: ignore[assignment]
        try:
            self._mm.close()
        except BufferError:
            pass  # a view is still held somewhere; the mapping goes with the process
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        return removed


def release_rings(rings: list[Ring], who: str) -> None:
    """A clean stop: close every ring, removing the files no other process uses."""
    for ring in rings:
        if ring.close(remove_if_unused=True):
            log.info("%s: removed ring %s (no one else uses it)", who, ring.path)
        else:
            log.info("%s: left ring %s (the other side has it open, or frames are left in it)", who, ring.path)


def _open_shared(path: Path, create: bool) -> int:
    """The ring file open and share-locked; never a file that a stopping side removed meanwhile."""
    while True:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # removed between our open and our lock
        if not create:
            raise FileNotFoundError(f"ring {path} was removed")
