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
MAGIC = 0x676F7A656E_52_01  # "gozen" R 1
PAGE = 4096
META_FIELDS = ("seq", "kind", "exp_id", "det_id", "index", "n_frames", "counter", "gps_ns", "flags")
META_BYTES = 128

# kinds of slot
FRAME, END = 1, 2
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
        elif (int(self._hdr[0]), int(self._hdr[1]), int(self._hdr[2])) != (MAGIC, n_slots, frame_bytes):
            raise RingMismatch(
                f"ring {path} holds {int(self._hdr[1])} slots of {int(self._hdr[2])} bytes, config wants "
                f"{n_slots} of {frame_bytes}: stop its readout and writer, remove it, start again"
            )
        self._meta = [
            np.frombuffer(self._mm, np.int64, count=len(META_FIELDS), offset=PAGE + i * self.slot_bytes)
            for i in range(n_slots)
        ]
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

    def publish(self, seq: int, **meta: int) -> None:
        m = self._meta[seq % self.n_slots]
        m[:] = [seq if f == "seq" else meta.get(f, 0) for f in META_FIELDS]
        self._hdr[16] = seq + 1

    # -- consumer ------------------------------------------------------------
    def peek(self) -> SlotMeta | None:
        tail = self.tail
        if tail >= self.head:
            return None
        return SlotMeta(*self._meta[tail % self.n_slots].tolist())

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
