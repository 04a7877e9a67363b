"""rsync to remote storage nodes and to the archive: send (fsynced, checksummed as it is read), prove.

Sending uses `--ignore-times --whole-file`, so a damaged file already at the destination is
always replaced rather than skipped by rsync's size-and-time quick check. A batch is sent by one
rsync run with `--fsync --checksum-choice=xxh3 --out-format=%C %n`: the receiver fsyncs each file
before renaming it to its name and checks the transfer against the sender's whole-file xxh3, and
%C reports that xxh3 of exactly what the sender read, so the source is checked in the same read.
The standalone proof (for a node on no gozen storage host, and the archive) is a second, dry run
with `--checksum`: the receiving side reads back every file and compares it with the sender's;
any file rsync would still transfer is one that did not land whole.

rsync:// URLs authenticate with the password passed as RSYNC_PASSWORD (never on a command line).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Exit codes meaning the peer could not be reached or stopped answering (rsync(1), EXIT VALUES).
UNREACHABLE = {5, 10, 12, 30, 35}


class RsyncError(OSError):
    """rsync failed; `unreachable` when the peer was not there (daemon down, timeout)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.unreachable = code in UNREACHABLE


def _run(
    args: Sequence[str], timeout_s: float, stdin: str | None = None, password: str | None = None, total_s: float = 0
) -> str:
    t = max(1, round(timeout_s))
    daemon = any(a.startswith("rsync://") for a in args)
    cmd = ["rsync", f"--timeout={t}", *([f"--contimeout={t}"] if daemon else []), *args]
    env = None
    if daemon and password is not None:
        env = {**os.environ, "RSYNC_PASSWORD": password}
    limit_s = max(timeout_s * 2 + 10, total_s)
    try:
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=limit_s, env=env)
    except subprocess.TimeoutExpired:
        raise RsyncError(30, f"rsync to {args[-1]} did not finish in {limit_s:.0f} s") from None
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        why = lines[0] if lines else f"exit {p.returncode}"
        raise RsyncError(p.returncode, f"rsync exit {p.returncode}: {why}")
    return p.stdout


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *parts])


def send(src_dir: Path, names: Sequence[str], dest_dir: str, timeout_s: float, password: str | None = None) -> None:
    """Copy src_dir/NAME for each name to dest_dir/NAME (directories made as needed)."""
    _run(
        ["-t", "--ignore-times", "--whole-file", "--mkpath", "--files-from=-", f"{src_dir}/", f"{dest_dir}/"],
        timeout_s,
        stdin="\n".join(names) + "\n",
        password=password,
    )


def send_durable(
    paths: Sequence[Path],
    dest_dir: str,
    timeout_s: float,
    password: str | None = None,
    min_rate_b_s: float = 1e6,
    fsync: bool = True,
) -> dict[str, str]:
    """Copy each file to dest_dir/NAME in one rsync run, fsynced there before it takes its name.

    Returns NAME -> the xxh3 (hex) rsync's sender computed while reading it: compare it with the
    catalog's to know the source was good. The run may take as long as the bytes need at min_rate_b_s.
    """
    size = sum(p.stat().st_size for p in paths)
    out = _run(
        [
            "-t",
            "--ignore-times",
            "--whole-file",
            *(["--fsync"] if fsync else []),
            "--checksum-choice=xxh3",
            "--out-format=%C %n",
            "--mkpath",
            "--no-relative",
            "--files-from=-",
            "/",
            f"{dest_dir}/",
        ],
        timeout_s,
        stdin="\n".join(str(p.resolve()).lstrip("/") for p in paths) + "\n",
        password=password,
        total_s=size / min_rate_b_s,
    )
    sums = {}
    for line in out.splitlines():
        checksum, _, name = line.partition(" ")
        if name:
            sums[name] = checksum
    return sums


def remove(dest_dir: str, names: Sequence[str], timeout_s: float, password: str | None = None) -> None:
    """Delete dest_dir/NAME for each name (a copy whose source turned out bad must not keep its name)."""
    with tempfile.TemporaryDirectory(prefix="gozen-rsync-") as empty:
        _run(
            ["-d", "--delete-missing-args", "--files-from=-", f"{empty}/", f"{dest_dir}/"],
            timeout_s,
            stdin="\n".join(names) + "\n",
            password=password,
        )


def differing(
    src_dir: Path, names: Sequence[str], dest_dir: str, timeout_s: float, password: str | None = None
) -> list[str]:
    """Names whose copy at dest_dir is missing or differs, by a checksum read on the receiving side."""
    out = _run(
        [
            "-t",
            "--checksum",
            "--dry-run",
            "--itemize-changes",
            "--out-format=%i %n",
            "--files-from=-",
            f"{src_dir}/",
            f"{dest_dir}/",
        ],
        timeout_s,
        stdin="\n".join(names) + "\n",
        password=password,
    )
    bad = []
    for line in out.splitlines():
        flags, _, name = line.partition(" ")
        if flags[:1] in ("<", ">") and flags[1:2] == "f":  # a file it would send again
            bad.append(name)
    return bad


def fetch(url: str, dest: Path, timeout_s: float, password: str | None = None) -> bool:
    """Copy one remote file to dest; False when it is not there (yet)."""
    try:
        _run(["-t", url, str(dest)], timeout_s, password=password)
    except RsyncError as err:
        if err.code == 23 and not err.unreachable:  # "some files could not be transferred": it is not there
            return False
        raise
    return True
