"""rsync to remote storage nodes and to the archive: send, then prove what landed by its checksum.

Sending uses `--ignore-times --whole-file`, so a damaged file already at the destination is
always replaced rather than skipped by rsync's size-and-time quick check. Proof is a second,
dry run with `--checksum`: the receiving side reads back every file and compares it with the
sender's; any file rsync would still transfer is one that did not land whole.
"""

from __future__ import annotations

import subprocess
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


def _run(args: Sequence[str], timeout_s: float, stdin: str | None = None) -> str:
    t = max(1, round(timeout_s))
    daemon = any(a.startswith("rsync://") for a in args)
    cmd = ["rsync", f"--timeout={t}", *([f"--contimeout={t}"] if daemon else []), *args]
    try:
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout_s * 2 + 10)
    except subprocess.TimeoutExpired:
        raise RsyncError(30, f"rsync to {args[-1]} did not finish in {timeout_s * 2 + 10:.0f} s") from None
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        why = lines[0] if lines else f"exit {p.returncode}"
        raise RsyncError(p.returncode, f"rsync exit {p.returncode}: {why}")
    return p.stdout


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *parts])


def send(src_dir: Path, names: Sequence[str], dest_dir: str, timeout_s: float) -> None:
    """Copy src_dir/NAME for each name to dest_dir/NAME (directories made as needed)."""
    _run(
        ["-t", "--ignore-times", "--whole-file", "--mkpath", "--files-from=-", f"{src_dir}/", f"{dest_dir}/"],
        timeout_s,
        stdin="\n".join(names) + "\n",
    )


def differing(src_dir: Path, names: Sequence[str], dest_dir: str, timeout_s: float) -> list[str]:
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
    )
    bad = []
    for line in out.splitlines():
        flags, _, name = line.partition(" ")
        if flags[:1] in ("<", ">") and flags[1:2] == "f":  # a file it would send again
            bad.append(name)
    return bad


def fetch(url: str, dest: Path, timeout_s: float) -> bool:
    """Copy one remote file to dest; False when it is not there (yet)."""
    try:
        _run(["-t", url, str(dest)], timeout_s)
    except RsyncError as err:
        if err.code == 23 and not err.unreachable:  # "some files could not be transferred": it is not there
            return False
        raise
    return True
