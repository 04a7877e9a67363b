"""`storage:zfsmonitor`: ZFS pools' health, capacity, device errors and scrub, from `zpool`.

Health changes and new read/write/checksum errors are events; the full `zpool status`
text is kept on the board (`zfs.<host>.<pool>.status_text`) for the daily storage report. A host
without ZFS says so once and then only checks again now and then: never a crash loop.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from gozen.db.events import Severity
from gozen.monitors.board import Reading, publish
from gozen.service import Context, Service

log = logging.getLogger(__name__)
HEALTHY = "ONLINE"
EVERY_S = 60.0
_DEVICE = re.compile(
    r"^\s+(\S+)\s+(ONLINE|DEGRADED|FAULTED|OFFLINE|UNAVAIL|REMOVED|AVAIL|INUSE)\s+(\d+\S*)\s+(\d+\S*)\s+(\d+\S*)",
    re.MULTILINE,
)


@dataclass
class PoolStatus:
    name: str
    state: str = "UNKNOWN"
    scan: str = ""
    errors: str = ""
    read_errors: int = 0
    write_errors: int = 0
    cksum_errors: int = 0
    bad_devices: list[str] = field(default_factory=list)
    text: str = ""
    size_bytes: int | None = None
    alloc_bytes: int | None = None
    capacity_pct: float | None = None


def _count(text: str) -> int:
    """zpool prints 1.2K for large counts."""
    m = re.fullmatch(r"([\d.]+)([KMGT]?)", text)
    if not m:
        return 0
    return int(float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[m.group(2)])


def parse_status(text: str) -> dict[str, PoolStatus]:
    """`zpool status` of any number of pools."""
    pools: dict[str, PoolStatus] = {}
    for block in re.split(r"(?m)^(?=\s*pool: )", text):
        m = re.search(r"(?m)^\s*pool:\s*(\S+)", block)
        if not m:
            continue
        p = PoolStatus(m.group(1), text=block.strip("\n"))
        if s := re.search(r"(?m)^\s*state:\s*(\S+)", block):
            p.state = s.group(1)
        if s := re.search(r"(?ms)^\s*scan:\s*(.*?)(?=^\S|^config:)", block):
            p.scan = " ".join(s.group(1).split())
        if s := re.search(r"(?m)^errors:\s*(.*)$", block):
            p.errors = s.group(1).strip()
        for dev, state, r, w, c in _DEVICE.findall(block):
            if dev == p.name:
                continue
            p.read_errors += _count(r)
            p.write_errors += _count(w)
            p.cksum_errors += _count(c)
            if state != HEALTHY and not re.match(r"(raidz|mirror|draid)", dev):
                p.bad_devices.append(f"{dev} {state}")
        pools[p.name] = p
    return pools


def parse_list(text: str, pools: dict[str, PoolStatus]) -> None:
    """`zpool list -H -p -o name,size,alloc,free,cap,health` into the pools."""
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 6:
            continue
        p = pools.setdefault(parts[0], PoolStatus(parts[0]))
        p.size_bytes, p.alloc_bytes = int(parts[1]), int(parts[2])
        p.capacity_pct = float(parts[4].rstrip("%"))
        if p.state == "UNKNOWN":
            p.state = parts[5]


class ZfsMonitor(Service):
    """Looks every `EVERY_S` (ten times less often on a host without ZFS)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.host, self.every_s = ctx.host, EVERY_S
        self.period_s = self.every_s
        self.known: dict[str, PoolStatus] = {}
        self.said_absent = False

    def event(self, kind: str, subject: str, message: str, severity: Severity) -> None:
        self.ctx.event(kind, subject, message, severity)

    def sample(self) -> list[Reading]:
        zpool = shutil.which("zpool")
        ttl = self.every_s * 3
        if zpool is None:
            if not self.said_absent:
                self.event("zfs_absent", self.host, "no zpool command on this host: ZFS is not monitored here", "info")
                self.said_absent = True
            return [Reading(f"zfs.{self.host}.available", False, "", ttl)]
        try:
            status = subprocess.run([zpool, "status"], capture_output=True, text=True, timeout=30, check=True).stdout
            listing = subprocess.run(
                [zpool, "list", "-H", "-p", "-o", "name,size,alloc,free,cap,health"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
        except (subprocess.SubprocessError, OSError) as err:
            log.error("zpool failed: %s", err)
            return [Reading(f"zfs.{self.host}.available", False, "", ttl)]
        pools = parse_status(status)
        parse_list(listing, pools)
        readings = [Reading(f"zfs.{self.host}.available", True, "", ttl)]
        for p in pools.values():
            k = f"zfs.{self.host}.{p.name}"  # pools of one name on several nodes stay apart
            readings += [
                Reading(f"{k}.state", p.state, "", ttl),
                Reading(f"{k}.capacity_pct", p.capacity_pct, "%", ttl),
                Reading(f"{k}.read_errors", p.read_errors, "", ttl),
                Reading(f"{k}.write_errors", p.write_errors, "", ttl),
                Reading(f"{k}.cksum_errors", p.cksum_errors, "", ttl),
                Reading(f"{k}.scan", p.scan, "", ttl),
                Reading(f"{k}.status_text", p.text, "", ttl),
            ]
            self.compare(p)
        return readings

    def compare(self, p: PoolStatus) -> None:
        before = self.known.get(p.name)
        self.known[p.name] = p
        if (before is None and p.state != HEALTHY) or (before is not None and before.state != p.state):
            bad = f" ({', '.join(p.bad_devices)})" if p.bad_devices else ""
            if p.state == HEALTHY:
                self.event("pool_healthy", p.name, f"pool {p.name} is ONLINE again", "info")
            else:
                self.event("pool_degraded", p.name, f"pool {p.name} is {p.state}{bad}; scan: {p.scan}", "error")
        errors = p.read_errors + p.write_errors + p.cksum_errors
        if errors > (before.read_errors + before.write_errors + before.cksum_errors if before else 0):
            self.event(
                "pool_errors",
                p.name,
                f"pool {p.name}: read {p.read_errors}, write {p.write_errors}, checksum {p.cksum_errors} errors",
                "error",
            )

    def run_once(self) -> None:
        publish(self.ctx.engine, self.ctx.program, self.sample())
        self.period_s = self.every_s if shutil.which("zpool") else self.every_s * 10
