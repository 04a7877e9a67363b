"""`daq:quicklook`: a binned picture and sky statistics of each chip's first frame, and the focal-plane mosaic.

On each DAQ host, after the writers have written a chip's file, this program reads the file's
first frame (the light area, DATASEC), bins it, scales it with zscale into an 8-bit grey PNG and,
with sep, measures the sky, its noise, the stars and their median FWHM; the `quicklook` row keeps
them beside the catalog. It runs niced and well behind the writers: a quick look is of now, so when
more than `daq.quicklook.max_behind` exposures wait, the older ones are skipped. The web host puts
the chips' pictures together in their places on the sky (`mosaic_png`), cached on its disk.
"""

from __future__ import annotations

import io
import logging
import os
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sep
from astropy.io import fits
from astropy.visualization import ZScaleInterval
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import Engine, and_, delete, exists, func, insert, select

from gozen.config import Config
from gozen.daq.focalplane import FOCAL_PLANE
from gozen.daq.ring import FLAG_MISSING
from gozen.db.tables import daq_files, events, quicklook
from gozen.db.types import utcnow
from gozen.monitors.board import Reading, publish
from gozen.service import Context, Service

log = logging.getLogger(__name__)

DETECT_SIGMA = 5.0  # sources: pixels this many sky sigmas above the background
MIN_AREA_PX = 5
GAUSS_FWHM_PER_HALF_LIGHT_RADIUS = 2.0  # a Gaussian's FWHM is twice its half-light radius (2.355 sigma / 1.177 sigma)
NICENESS = 19  # the lowest: the readout and the writers keep the CPU
DROP_EVERY_S = 3600.0
# Files named longer ago than this are not looked at (a quick look is of now; it also bounds each pass's
# query to the last minutes of daq_files however long the catalog is).
LOOK_BACK = timedelta(minutes=10)
UNREADABLE = "quicklook_unreadable"  # event kind: a file that could not be looked at (told once, remembered)
MOSAIC_SCALE = 2.0  # mosaic pixels per pixel of the DAQ page's focal-plane map
CACHE_DIR = "quicklook-cache"


class Unreadable(Exception):
    """A file whose first frame cannot be read (damaged, truncated, gone): says which file and why."""


@dataclass(frozen=True)
class Look:
    """What the quick look of one frame found (not yet stored)."""

    binning: int
    width: int
    height: int
    z1: float
    z2: float
    png: bytes
    sky_adu: float
    noise_adu: float
    n_stars: int | None
    fwhm_px: float | None


@dataclass(frozen=True)
class ChipLook:
    """A chip's stored quick look, without its picture."""

    exp_id: int
    det_id: int
    sky_adu: float | None
    noise_adu: float | None
    n_stars: int | None
    fwhm_px: float | None
    made_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "exp_id": self.exp_id,
            "sky_adu": self.sky_adu,
            "noise_adu": self.noise_adu,
            "n_stars": self.n_stars,
            "fwhm_px": self.fwhm_px,
            "made_at": self.made_at.isoformat(),
        }


# --- looking at one frame -----------------------------------------------------------------------


def first_frame(path: Path) -> tuple[np.ndarray, float | None]:
    """The light area (DATASEC) of a file's first frame as float32, and its overscan median (None: no
    BIASSEC). Reads only that frame's bytes; raises Unreadable with the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # astropy only warns of a truncated file: here it is unreadable
            with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                hdu = hdul[0]
                if hdu.header.get("NAXIS") != 3:
                    raise Unreadable(f"{path}: not a cube (NAXIS={hdu.header.get('NAXIS')})")
                frame = np.asarray(hdu.section[_first_received(hdul, path)], dtype=np.float32)
                light = _section(frame, hdu.header.get("DATASEC"))
                bias = hdu.header.get("BIASSEC")
                bias_adu = float(np.median(_section(frame, bias))) if bias else None
    except Unreadable:
        raise
    except Exception as err:  # whatever a damaged file makes astropy raise
        raise Unreadable(f"{path}: {type(err).__name__}: {' '.join(str(err).split())}") from err
    return np.ascontiguousarray(light), bias_adu


def _first_received(hdul: fits.HDUList, path: Path) -> int:
    """The first frame the camera delivered (FRAMES table: FLAGS without FLAG_MISSING); 0 without the table.
    A frame that never came is filled blank, and its picture would show nothing."""
    try:
        flags = np.asarray(hdul["FRAMES"].data["FLAGS"])
    except KeyError:
        return 0
    came = np.flatnonzero((flags & FLAG_MISSING) == 0)
    if not len(came):
        raise Unreadable(f"{path}: no frame of it came from the camera (every one missing)")
    return int(came[0])


def _section(frame: np.ndarray, iraf: str | None) -> np.ndarray:
    """The pixels of an IRAF section '[x1:x2,y1:y2]' (1-based, inclusive); the whole frame for None."""
    if not iraf:
        return frame
    x, y = iraf.strip("[]").split(",")
    (x1, x2), (y1, y2) = (map(int, x.split(":")), map(int, y.split(":")))
    return frame[y1 - 1 : y2, x1 - 1 : x2]


def binned(frame: np.ndarray, binning: int) -> np.ndarray:
    """Mean of each binning x binning block (a ragged edge is left out)."""
    h, w = frame.shape[0] // binning, frame.shape[1] // binning
    return frame[: h * binning, : w * binning].reshape(h, binning, w, binning).mean(axis=(1, 3), dtype=np.float32)


def grey_png(image: np.ndarray, z1: float, z2: float) -> bytes:
    """An 8-bit grey PNG of image scaled z1..z2, north up (FITS row 1 is the bottom row)."""
    span = z2 - z1 if z2 > z1 else 1.0
    grey = np.clip((image[::-1] - z1) * (255.0 / span), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(grey, mode="L").save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


def look_at(light: np.ndarray, binning: int, stars: bool = True, bias_adu: float | None = None) -> Look:
    """The quick look of one frame's light area: picture, sky (less the bias, when known), noise and stars."""
    small = binned(light, binning)
    z1, z2 = ZScaleInterval().get_limits(small)
    data = np.ascontiguousarray(light, dtype=np.float32)
    bkg = sep.Background(data)
    sky = float(bkg.globalback) - (bias_adu or 0.0)  # the median of the background mesh
    n_stars, fwhm = star_count_and_fwhm(data, bkg) if stars else (None, None)
    return Look(binning, small.shape[1], small.shape[0], float(z1), float(z2), grey_png(small, z1, z2),
                sky, float(bkg.globalrms), n_stars, fwhm)  # fmt: skip


def star_count_and_fwhm(data: np.ndarray, bkg: sep.Background) -> tuple[int | None, float | None]:
    """Clean sources (sep flags 0) above DETECT_SIGMA, and their median FWHM in unbinned pixels
    ((None, None): too crowded to count)."""
    sub = data.copy()
    bkg.subfrom(sub)
    try:
        objects = sep.extract(sub, DETECT_SIGMA, err=bkg.globalrms, minarea=MIN_AREA_PX)
    except Exception as err:  # sep's buffers overflow on a frame crowded past counting (a bright field, a fault)
        log.warning("stars not counted: sep: %s", err)
        return None, None
    clean = objects[objects["flag"] == 0]
    if clean.size == 0:
        return 0, None
    radius, flags = sep.flux_radius(sub, clean["x"], clean["y"], 6.0 * clean["a"], 0.5, subpix=5)
    good = (flags == 0) & (radius > 0)
    fwhm = float(np.median(radius[good])) * GAUSS_FWHM_PER_HALF_LIGHT_RADIUS if good.any() else None
    return int(clean.size), fwhm


# --- the quicklook table ------------------------------------------------------------------------


def record_look(engine: Engine, exp_id: int, det_id: int, host: str, look: Look) -> None:
    with engine.begin() as conn:
        conn.execute(delete(quicklook).where(quicklook.c.exp_id == exp_id, quicklook.c.det_id == det_id))
        conn.execute(
            insert(quicklook).values(
                exp_id=exp_id, det_id=det_id, daq_host=host, made_at=utcnow(), binning=look.binning,
                width=look.width, height=look.height, z1=look.z1, z2=look.z2, png=look.png, sky_adu=look.sky_adu,
                noise_adu=look.noise_adu, n_stars=look.n_stars, fwhm_px=look.fwhm_px,
            )
        )  # fmt: skip


_NUMBERS = (quicklook.c.exp_id, quicklook.c.det_id, quicklook.c.sky_adu, quicklook.c.noise_adu,
            quicklook.c.n_stars, quicklook.c.fwhm_px, quicklook.c.made_at)  # fmt: skip


def chip_looks(engine: Engine, exp_id: int) -> dict[int, ChipLook]:
    """Each chip's quick look of one exposure, by det_id."""
    with engine.connect() as conn:
        rows = conn.execute(select(*_NUMBERS).where(quicklook.c.exp_id == exp_id)).all()
    return {r.det_id: ChipLook(*r) for r in rows}


def latest_chip_looks(engine: Engine, since: datetime | None = None) -> dict[int, ChipLook]:
    """Each chip's newest quick look (made since `since`, when given), whatever exposure it is of."""
    newest = select(quicklook.c.det_id, func.max(quicklook.c.exp_id).label("exp_id")).group_by(quicklook.c.det_id)
    if since is not None:
        newest = newest.where(quicklook.c.made_at >= since)
    newest_sq = newest.subquery()
    query = select(*_NUMBERS).join(
        newest_sq, and_(quicklook.c.det_id == newest_sq.c.det_id, quicklook.c.exp_id == newest_sq.c.exp_id)
    )
    with engine.connect() as conn:
        return {r.det_id: ChipLook(*r) for r in conn.execute(query).all()}


def latest_look(engine: Engine) -> int | None:
    """The newest exposure with a quick look of any chip."""
    with engine.connect() as conn:
        return conn.execute(select(func.max(quicklook.c.exp_id))).scalar()


def chip_png(engine: Engine, exp_id: int, det_id: int) -> bytes | None:
    with engine.connect() as conn:
        return conn.execute(
            select(quicklook.c.png).where(quicklook.c.exp_id == exp_id, quicklook.c.det_id == det_id)
        ).scalar()


def drop_old_looks(engine: Engine, host: str, before: datetime) -> int:
    with engine.begin() as conn:
        return conn.execute(
            delete(quicklook).where(quicklook.c.daq_host == host, quicklook.c.made_at < before)
        ).rowcount


# --- the focal-plane mosaic ---------------------------------------------------------------------


def mosaic_png(cfg: Config, engine: Engine, exp_id: int) -> bytes | None:
    """The focal-plane mosaic of one exposure's chips (None: no chip has a look), cached under
    data_dir/quicklook-cache and made again when more chips have arrived."""
    with engine.connect() as conn:
        n, last = conn.execute(
            select(func.count(), func.max(quicklook.c.made_at)).where(quicklook.c.exp_id == exp_id)
        ).one()
    if not n:
        return None
    cache = cfg.data_dir / CACHE_DIR
    name = f"mosaic-{exp_id:08d}-{n:03d}-{last.timestamp():.0f}.png"
    try:
        return (cache / name).read_bytes()
    except FileNotFoundError:
        pass
    with engine.connect() as conn:
        pictures = dict(
            conn.execute(select(quicklook.c.det_id, quicklook.c.png).where(quicklook.c.exp_id == exp_id)).all()
        )
    png = draw_mosaic(pictures, f"exposure {exp_id}")
    _cache_put(cache, name, png, f"mosaic-{exp_id:08d}-", cfg.daq.quicklook.keep_days)
    return png


def draw_mosaic(pictures: dict[int, bytes], caption: str) -> bytes:
    """Each chip's picture in its place as the DAQ page's focal-plane map draws it (north up, east left),
    with its id; Q1..Q4 named; chips without a picture drawn as empty outlines."""
    k = MOSAIC_SCALE
    canvas = Image.new("RGB", (round(FOCAL_PLANE.width * k), round(FOCAL_PLANE.height * k)), (24, 26, 30))
    draw = ImageDraw.Draw(canvas)
    small, big = ImageFont.load_default(size=18), ImageFont.load_default(size=32)
    for b in FOCAL_PLANE.boxes:
        x, y, w, h = round(b.x * k), round(b.y * k), round(b.w * k), round(b.h * k)
        png = pictures.get(b.det_id)
        if png is not None:
            chip = Image.open(io.BytesIO(png)).convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
            canvas.paste(chip, (x, y))
        else:
            draw.rectangle((x, y, x + w - 1, y + h - 1), fill=(40, 43, 48))
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=(110, 118, 129) if png else (70, 75, 82))
        colour = (255, 214, 10) if png else (120, 126, 135)
        draw.text((x + 4, y + 2), str(b.det_id), fill=colour, font=small, stroke_width=2, stroke_fill=(0, 0, 0))
    for name, qx, qy, anchor in FOCAL_PLANE.quadrants:
        draw.text((qx * k, qy * k), name, fill=(230, 237, 243), font=big, anchor="ls" if anchor == "start" else "rs")
    draw.text((8, canvas.height - 8), f"{caption} · north up, east left", fill=(200, 205, 210), font=small, anchor="ls")
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def _cache_put(cache: Path, name: str, png: bytes, prefix: str, keep_days: float) -> None:
    """Write atomically; drop this exposure's older mosaics and any mosaic older than keep_days."""
    cache.mkdir(parents=True, exist_ok=True)
    part = cache / f".{name}.{os.getpid()}.part"
    part.write_bytes(png)
    part.replace(cache / name)
    too_old = time.time() - keep_days * 86400
    for f in cache.glob("mosaic-*.png"):
        try:
            if (f.name.startswith(prefix) and f.name != name) or f.stat().st_mtime < too_old:
                f.unlink()
        except FileNotFoundError:
            pass  # another web worker dropped it first


# --- the program --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    file_id: int
    exp_id: int
    det_id: int
    path: str


class QuickLook(Service):
    """Looks at this DAQ host's newly written files, newest exposure first; skips what is too far behind."""

    period_s = 5.0

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.settings = ctx.cfg.daq.quicklook
        self.floor = 0  # exposures up to this one were skipped: never looked at again
        self.unreadable: set[int] = set()  # daq_files ids told as unreadable
        self.made = self.skipped = 0
        self.picked: int | None = None  # with daq.quicklook.every_s: the exposure being looked at
        self.picked_at = float("-inf")
        self._dropped_at = float("-inf")

    def setup(self) -> None:
        self._step_aside()
        self.unreadable = self._told_unreadable()

    def _step_aside(self) -> None:
        """The lowest priority, and off the readout's CPUs: the readout and the writers keep theirs."""
        from gozen.daq.cpus import cpu_sets

        try:
            os.nice(NICENESS)
            readout = set(cpu_sets(self.ctx.cfg)[0])
            others = sorted(set(os.sched_getaffinity(0)) - readout)
            if others:
                os.sched_setaffinity(0, others)
            log.info("%s: nice %d, on CPUs %s", self.ctx.program, NICENESS, others or "all (no CPU but the readout's)")
        except OSError as err:
            log.warning("%s: cannot step aside for the readout and writers: %s", self.ctx.program, err)

    def run_once(self) -> bool:
        self._drop_old()
        waiting = self._waiting()
        if not waiting:
            return False
        p = waiting[0]
        try:
            light, bias = first_frame(Path(p.path))
            look = look_at(light, self.settings.binning, self.settings.stars, bias)
        except Exception as err:  # this file only: told once, left, and the next one looked at
            why = str(err) if isinstance(err, Unreadable) else f"{p.path}: {type(err).__name__}: {err}"
            if not isinstance(err, Unreadable):
                log.exception("%s: cannot look at %s", self.ctx.program, p.path)
            self._tell_unreadable(p, why)
            return len(waiting) > 1
        record_look(self.ctx.engine, p.exp_id, p.det_id, self.ctx.host, look)
        self.made += 1
        log.debug("quick look exp=%d det=%d stars=%s fwhm=%s", p.exp_id, p.det_id, look.n_stars, look.fwhm_px)
        return len(waiting) > 1

    def _waiting(self) -> list[Pending]:
        """This host's written files without a look, of the newest max_behind exposures waiting; older
        exposures are skipped (logged, counted on the status board)."""
        cond = [
            daq_files.c.daq_host == self.ctx.host,
            daq_files.c.state == "written",
            daq_files.c.path.is_not(None),
            daq_files.c.created_at >= utcnow() - LOOK_BACK,
            daq_files.c.exp_id > self.floor,
            ~exists().where(quicklook.c.exp_id == daq_files.c.exp_id, quicklook.c.det_id == daq_files.c.det_id),
        ]
        if self.unreadable:
            cond.append(daq_files.c.id.not_in(sorted(self.unreadable)))
        keep = self.settings.max_behind
        with self.ctx.engine.connect() as conn:
            exps = conn.execute(
                select(daq_files.c.exp_id).where(*cond).distinct().order_by(daq_files.c.exp_id.desc()).limit(keep + 1)
            ).scalars().all()  # fmt: skip
            if self.settings.every_s > 0 and exps and self.picked not in exps:
                # Paced: one exposure every every_s, the newest; the others are passed over.
                if time.monotonic() - self.picked_at < self.settings.every_s:
                    return []
                self.picked, self.picked_at = exps[0], time.monotonic()
                if len(exps) > 1:
                    older = select(func.count(daq_files.c.exp_id.distinct())).where(
                        *cond, daq_files.c.exp_id <= exps[1]
                    )
                    self._skip(exps[1], conn.execute(older).scalar_one(), paced=True)
            if self.settings.every_s > 0 and self.picked in exps:
                exps = [self.picked]
            if len(exps) > keep:
                older = select(func.count(daq_files.c.exp_id.distinct())).where(*cond, daq_files.c.exp_id <= exps[keep])
                self._skip(exps[keep], conn.execute(older).scalar_one())
                exps = exps[:keep]
            if not exps:
                return []
            rows = conn.execute(
                select(daq_files.c.id, daq_files.c.exp_id, daq_files.c.det_id, daq_files.c.path)
                .where(*cond, daq_files.c.exp_id.in_(exps))
                .order_by(daq_files.c.exp_id.desc(), daq_files.c.det_id)
            ).all()
        return [Pending(*r) for r in rows]

    def _skip(self, up_to: int, n: int, paced: bool = False) -> None:
        self.floor, self.skipped = up_to, self.skipped + n
        log.log(
            logging.DEBUG if paced else logging.WARNING,
            "%s: skipped %d exposures up to exp=%d: %s (%d so far)",
            self.ctx.program,
            n,
            up_to,
            f"one look every {self.settings.every_s:g} s" if paced else "too far behind",
            self.skipped,
        )
        publish(
            self.ctx.engine,
            self.ctx.program,
            [
                Reading(
                    f"quicklook.{self.ctx.host}.skipped_exposures", self.skipped, "", self.settings.keep_days * 86400
                )
            ],
        )

    def _tell_unreadable(self, p: Pending, why: str) -> None:
        self.unreadable.add(p.file_id)
        data = {"file_id": p.file_id, "exp_id": p.exp_id, "det_id": p.det_id, "path": p.path}
        self.ctx.event(
            UNREADABLE, Path(p.path).name, f"no quick look of exp {p.exp_id} chip {p.det_id}: {why}", "warning", data
        )

    def _told_unreadable(self) -> set[int]:
        """Files this host already told of (an earlier run, within LOOK_BACK): not told again."""
        with self.ctx.engine.connect() as conn:
            data = conn.execute(
                select(events.c.data).where(
                    events.c.kind == UNREADABLE, events.c.host == self.ctx.host, events.c.time >= utcnow() - LOOK_BACK
                )
            ).scalars()
            return {int(d["file_id"]) for d in data if isinstance(d, dict) and "file_id" in d}

    def _drop_old(self) -> None:
        if time.monotonic() - self._dropped_at < DROP_EVERY_S:
            return
        self._dropped_at = time.monotonic()
        n = drop_old_looks(self.ctx.engine, self.ctx.host, utcnow() - timedelta(days=self.settings.keep_days))
        if n:
            log.info("%s: dropped %d quick looks older than %g days", self.ctx.program, n, self.settings.keep_days)
