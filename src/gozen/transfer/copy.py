"""Copy a file to a storage node and prove what landed matches the catalog's checksum."""

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
    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def copy_verified(src: Path, dst: Path, checksum: str) -> None:
    """src -> dst via `.dst.part`, verified by reading back what landed, then renamed.

    A copy that does not match is BadSource when the source itself reads wrong, else ReplicaMismatch.
    """
    part = dst.with_name(f".{dst.name}.part")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        kernel_copy(src, part)
        got = xxh3_of(part)
        if got != checksum:
            at_source = xxh3_of(src)
            if at_source != checksum:
                raise BadSource(f"{src} reads checksum {at_source}, the catalog says {checksum}")
            raise ReplicaMismatch(f"{dst}: checksum {got} after copy, catalog says {checksum}")
        os.rename(part, dst)
    finally:
        part.unlink(missing_ok=True)
