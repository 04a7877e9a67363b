"""Copy a file to a storage node, make it durable, and prove from the disk that it matches the catalog."""

from __future__ import annotations

import os
from pathlib import Path

import xxhash

CHUNK = 8 * 2**20


class ReplicaMismatch(Exception):
    """What landed on the node does not match the catalog's checksum."""


class BadSource(Exception):
    """The copy's source itself does not match the catalog's checksum: another source is needed."""


def quarantine_path(path: Path) -> Path:
    """Where a damaged replica waits, off its final name, until a good copy exists elsewhere."""
    return path.with_name(f".{path.name}.bad")


def kernel_copy(src: Path, dst: Path) -> int:
    """Copy with copy_file_range (no user-space buffer); falls back to sendfile. Returns bytes copied."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        done = 0
        while done < size:
            try:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), min(CHUNK, size - done))
            except OSError as err:
                if err.errno not in (18, 38, 95):  # EXDEV, ENOSYS, EOPNOTSUPP: try sendfile
                    raise
                n = os.sendfile(fout.fileno(), fin.fileno(), done, min(CHUNK, size - done))
            if n == 0:
                break
            done += n
        fout.flush()
        os.fsync(fout.fileno())
    return done


def xxh3_of(path: Path) -> str:
    """The file's xxh3, read through the page cache (for sources: what a copy would send)."""
    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def drop_cache(fd: int) -> None:
    """Write the file's dirty pages out, then drop all its pages from the page cache.

    POSIX_FADV_DONTNEED drops only clean pages: the fdatasync first makes every page clean.
    """
    os.fdatasync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def xxh3_from_disk(path: Path) -> str:
    """The file's xxh3 as the disk holds it: its cached pages are dropped first, so every byte is read
    from the device, not from the page cache the copy just wrote (and dropped again afterwards: a
    proof read should not push out what is worth caching)."""
    h = xxhash.xxh3_64()
    fd = os.open(path, os.O_RDONLY)
    try:
        drop_cache(fd)
        with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while n := f.readinto(buf):
                h.update(view[:n])
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return h.hexdigest()


def copy_verified(src: Path, dst: Path, checksum: str) -> None:
    """src -> dst via `.dst.part`: copied, fsynced, read back from the disk and checked, then renamed
    (and the directory fsynced, so the name survives a power cut too).

    A copy that does not match is BadSource when the source itself reads wrong, else ReplicaMismatch.
    """
    part = dst.with_name(f".{dst.name}.part")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        kernel_copy(src, part)
        got = xxh3_from_disk(part)
        if got != checksum:
            at_source = xxh3_of(src)
            if at_source != checksum:
                raise BadSource(f"{src} reads checksum {at_source}, the catalog says {checksum}")
            raise ReplicaMismatch(f"{dst}: checksum {got} after copy, catalog says {checksum}")
        os.rename(part, dst)
        fsync_dir(dst.parent)
    finally:
        part.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
