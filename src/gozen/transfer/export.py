"""`transfer:export`: raw files to the public archive in nightly packages, with manifests and receipts.

Layout at the archive's destination (what SMOKA-like archives ingest):

    <night>/<filename>                  the raw FITS files of that observing night
    <night>/manifests/<package>.json    what a package holds: file, size, xxh3, key header values
    <night>/receipts/<package>.json     written by the archive: the files it accepted, and refused

A pass packages the catalogued files not yet exported that have a verified replica on this
host's own nodes (one package per night per pass, named NIGHT-HOST-NNN), sends each of this
host's packages' files, proves them with a checksum dry run, and only then sends the manifest:
a manifest at the archive means its files are whole there. Receipts (of this host's packages)
mark files acknowledged; a refused file is recorded as an event and packaged again. Every step
may be run again. Several storage hosts export at once: claiming a file for a package is one
transaction in which a file another exporter claimed first is simply left to it.

The archive is reached at cfg.archive_dest_for(host): the directory itself on the host holding
it, else that host's rsync daemon (module `archive`, password cfg.rsync_password()).
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from astropy.io import fits

from gozen.db.types import utcnow
from gozen.service import Context, Service
from gozen.transfer import packages, rsync

log = logging.getLogger(__name__)

# Header cards copied into the manifest: what an archive indexes a raw frame by.
KEY_CARDS = (
    "OBJECT",
    "DATA-TYP",
    "OBS-MOD",
    "PROJECT",
    "OBSERVER",
    "FILTER",
    "EXP_ID",
    "DET-ID",
    "DATE-OBS",
    "MJD-OBS",
    "EXPTIME",
    "NAXIS3",
    "DATA-FPS",
    "RA",
    "DEC",
    "RECIPEID",
    "NMISSING",
    "NDAMAGED",
)


@dataclass
class ExportPass:
    packaged: int = 0
    not_selected: int = 0
    exported: int = 0
    acknowledged: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


def night_of(filename: str) -> str:
    return filename[4:12]


def manifest_entry(path: Path, size: int, checksum: str) -> dict[str, Any]:
    hdr = fits.getheader(path)
    return {
        "file": path.name,
        "size": size,
        "xxh3": checksum,
        "header": {k: hdr[k] for k in KEY_CARDS if k in hdr},
    }


class Exporter(Service):
    """`transfer:export`: an export pass every archive.every_s; failing exports told once, and their recovery."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        if ctx.cfg.archive is None:
            raise ValueError("archive: not configured")
        self.cfg, self.engine, self.host = ctx.cfg, ctx.engine, ctx.host
        self.archive = ctx.cfg.archive
        self.period_s = self.archive.every_s
        self.dest = self.cfg.archive_dest_for(self.host) or ""
        self.password = self.cfg.rsync_password()
        self.staging = self.cfg.data_dir / "export"
        self.timeout = self.cfg.transfer.rsync_timeout_s
        self.failing = ctx.trouble("archive_export_failing", "archive_export_ok", self.dest)

    # -- package ------------------------------------------------------------
    def candidates(self, limit: int = 5000) -> list[Any]:
        """Catalogued files old enough, with a verified replica on this host's own nodes, never packaged."""
        local = [n.name for n in self.cfg.local_nodes(self.host)]
        cutoff = utcnow() - timedelta(seconds=self.archive.min_age_s)
        return packages.export_candidates(self.engine, local, cutoff, limit)

    def package_new(self, result: ExportPass) -> None:
        now = utcnow()
        by_night: dict[str, list[dict[str, Any]]] = defaultdict(list)
        skipped: list[dict[str, Any]] = []
        for r in self.candidates():
            try:
                entry = manifest_entry(Path(r.path), r.size_bytes, r.checksum_xxh3)
            except (OSError, ValueError) as err:
                result.errors.append(f"{r.filename}: header unreadable at {r.path}: {err}")
                continue
            h = entry["header"]
            row = {
                "file_id": r.id,
                "night": night_of(r.filename),
                "data_type": str(h.get("DATA-TYP", "")),
                "project": str(h.get("PROJECT", "")),
                "manifest": entry,
                "source_path": r.path,
                "packaged_at": now,
            }
            wanted = row["data_type"] in self.archive.data_types and (
                self.archive.projects is None or row["project"] in self.archive.projects
            )
            (by_night[row["night"]] if wanted else skipped).append(row)
        packaged, not_selected = packages.record_packages(self.engine, self.host, by_night, skipped)
        result.packaged += packaged
        result.not_selected += not_selected

    # -- send ---------------------------------------------------------------
    def send_pending(self, result: ExportPass) -> None:
        for package in packages.packages_to_send(self.engine, self.host):
            try:
                result.exported += self.send_package(package)
            except (OSError, ValueError) as err:
                why = f"package {package}: {err.strerror if isinstance(err, OSError) and err.strerror else err}"
                result.errors.append(why)
                packages.package_failed(self.engine, package, why)

    def send_package(self, package: str) -> int:
        rows = packages.package_files(self.engine, package)
        if not rows:
            return 0
        night = rows[0].night
        night_dir = rsync.join(self.dest, night)
        by_dir: dict[Path, list[str]] = defaultdict(list)
        for r in rows:
            src = Path(r.source_path)
            by_dir[src.parent].append(src.name)
        for src_dir, names in by_dir.items():
            rsync.send(src_dir, names, night_dir, self.timeout, self.password)
            bad = rsync.differing(src_dir, names, night_dir, self.timeout, self.password)
            if bad:
                raise ValueError(f"{len(bad)} files differ at the archive after sending, e.g. {bad[0]}")
        manifest = {
            "package": package,
            "night": night,
            "origin": self.cfg.site.name,
            "host": self.host,
            "created": utcnow().isoformat(),
            "files": sorted((r.manifest for r in rows), key=lambda e: e["file"]),
        }
        rel = f"{night}/manifests/{package}.json"
        local = self.staging / rel
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(json.dumps(manifest, indent=1))
        rsync.send(self.staging, [rel], self.dest, self.timeout, self.password)
        if rsync.differing(self.staging, [rel], self.dest, self.timeout, self.password):
            raise ValueError(f"manifest {rel} differs at the archive after sending")
        n = packages.package_exported(self.engine, package)
        log.info("sent package %s: %d files", package, n)
        return n

    # -- receipts -----------------------------------------------------------
    def collect_receipts(self, result: ExportPass) -> None:
        for package, night in packages.awaiting_receipt(self.engine, self.host):
            rel = f"{night}/receipts/{package}.json"
            local = self.staging / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                if not rsync.fetch(rsync.join(self.dest, rel), local, self.timeout, self.password):
                    continue
                receipt = json.loads(local.read_text())
                accepted = set(receipt.get("accepted", []))
                refused = dict(receipt.get("rejected", {}))
            except (OSError, ValueError, AttributeError) as err:
                result.errors.append(f"receipt {rel}: {err}")
                continue
            self.settle(package, accepted, refused, result)

    def settle(self, package: str, accepted: set[str], refused: dict[str, str], result: ExportPass) -> None:
        acknowledged, refusals = packages.settle_package(self.engine, package, accepted, refused)
        result.acknowledged += acknowledged
        result.rejected += len(refusals)
        for name, why in refusals:
            message = f"the archive refused it in package {package}: {why}; it will be sent again"
            self.ctx.event("archive_refused", name, message, "warning")

    # -- a pass -------------------------------------------------------------
    def export(self) -> ExportPass:
        """One pass: package, send and prove, read receipts (what `gozen transfer export` runs)."""
        result = ExportPass()
        self.package_new(result)
        self.send_pending(result)
        self.collect_receipts(result)
        for why in result.errors:
            log.error("%s", why)
        return result

    def run_once(self) -> None:
        result = self.export()
        if result.errors:
            self.failing.failing(result.errors[0])
        else:
            self.failing.ok("exports to the archive work again")


# -- the simulated archive ----------------------------------------------------
def receive_once(root: Path, keep_bytes: int | None = None) -> int:
    """Play the archive: check each new manifest's files and write its receipt; returns receipts written."""
    from gozen.transfer.copy import xxh3_of

    written = 0
    for manifest in sorted(root.glob("*/manifests/*.json")):
        receipt = manifest.parent.parent / "receipts" / manifest.name
        if receipt.exists():
            continue
        try:
            m = json.loads(manifest.read_text())
            entries = list(m["files"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.error("%s: unreadable manifest: %s", manifest, err)
            continue
        accepted, rejected = [], {}
        for e in entries:
            p = manifest.parent.parent / str(e.get("file", ""))
            try:
                if p.stat().st_size != e["size"]:
                    rejected[p.name] = f"size {p.stat().st_size}, manifest says {e['size']}"
                elif xxh3_of(p) != e["xxh3"]:
                    rejected[p.name] = "checksum differs from the manifest"
                else:
                    accepted.append(p.name)
            except (OSError, KeyError) as err:
                rejected[p.name] = f"not readable: {err}"
        receipt.parent.mkdir(exist_ok=True)
        tmp = receipt.with_name(f".{receipt.name}.part")
        tmp.write_text(json.dumps({"package": m.get("package"), "accepted": accepted, "rejected": rejected}))
        os.rename(tmp, receipt)
        written += 1
    if keep_bytes is not None:
        prune(root, keep_bytes)
    return written


def prune(root: Path, keep_bytes: int) -> int:
    """The simulator's own limit: while over keep_bytes, drop the files of the oldest packages it has
    acknowledged (receipts and manifests stay: the exporter still reads them). Returns files dropped."""
    sizes: dict[Path, int] = {}
    for p in root.rglob("*"):
        try:
            if p.is_file():
                sizes[p] = p.stat().st_size
        except OSError:
            continue  # an rsync temporary name, gone meanwhile
    total = sum(sizes.values())
    if total <= keep_bytes:
        return 0
    dropped = 0
    for receipt in sorted(root.glob("*/receipts/*.json"), key=_age):
        if total <= keep_bytes:
            break
        try:
            accepted = [str(n) for n in json.loads(receipt.read_text()).get("accepted", [])]
        except (OSError, ValueError, AttributeError):
            continue
        for name in accepted:
            f = receipt.parent.parent / name
            if f in sizes and f.name == name:  # a plain name in that night, nothing else
                f.unlink(missing_ok=True)
                total -= sizes.pop(f)
                dropped += 1
    log.info("simulated archive: dropped %d files, oldest packages first, to stay under %d bytes", dropped, keep_bytes)
    return dropped


def _age(p: Path) -> tuple[float, str]:
    try:
        return p.stat().st_mtime, p.name
    except OSError:
        return 0.0, p.name


class ArchiveSimulator(Service):
    """`archive:simulator`: plays the archive in a local directory, a receipt for each new manifest."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        root, archive = ctx.cfg.archive_local_dir(), ctx.cfg.archive
        if root is None or archive is None:
            raise SystemExit("archive.dest: the simulated archive needs a directory here, not an rsync URL")
        self.root, self.keep_bytes = root, archive.simulator_keep_bytes
        self.period_s = min(5.0, archive.every_s)

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def run_once(self) -> None:
        receive_once(self.root, self.keep_bytes)
