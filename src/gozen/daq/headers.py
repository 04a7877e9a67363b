"""FITS headers of a chip's exposure cube: the Tomo-e keyword set in commented sections.

The primary header is written before the first frame (the writer streams the cube and
checksums it in file order), so it holds what is known at exposure start: the status
snapshot, the GPS stamp of the first frame, and the exposure's schedule. Each frame's
own stamp and flags go in the FRAMES table written after the cube. An exposure cut short by a
stop has the cards that count its frames rewritten in place when its file closes (same length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
from astropy.io import fits
from astropy.time import Time

from gozen import __version__
from gozen.config import Config
from gozen.daq.cardtext import as_card_text, card_text_problem
from gozen.daq.focalplane import chip_wcs
from gozen.daq.geometry import Geometry, Section, geometry
from gozen.daq.ring import FLAG_DAMAGED, FLAG_DROPPED, FLAG_MISSING
from gozen.daq.snapshot import StatusSnapshot, StatusValue
from gozen.fitstext import to_fits_text
from gozen.sky import format_dec, format_ra

BLOCK = 2880
BLANK_RAW = -32768  # stored value of pixels in frames that never arrived
NO_READING = "no reading on the status board"
COMMENT_MAX = 47  # what fits beside a short string value on one card


@dataclass(frozen=True)
class ExposureInfo:
    """The exposures-table row the writer needs, read once per exposure."""

    exp_id: int
    object: str
    data_type: str
    obs_mode: str
    filter: str
    project: str
    observer: str
    n_frames: int
    fps: float
    start_at: datetime
    recipe_uuid: str | None
    recipe_name: str | None
    snapshot: StatusSnapshot


# ExposureInfo fields written as header strings.
TEXT_FIELDS = ("object", "data_type", "obs_mode", "filter", "project", "observer", "recipe_uuid", "recipe_name")


def header_text_problems(exp: ExposureInfo) -> list[str]:
    """`field: why` for each of the exposure's strings that cannot be a header card's value."""
    out = []
    for name in TEXT_FIELDS:
        value = getattr(exp, name)
        problem = card_text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            out.append(f"{name}: {problem}")
    return out


def fitting(exp: ExposureInfo) -> ExposureInfo:
    """The exposure with every string made to fit a card and the readings astropy refuses dropped."""
    texts = {n: as_card_text(v) for n in TEXT_FIELDS if isinstance(v := getattr(exp, n), str)}
    values: dict[str, StatusValue] = {}
    for key, sv in exp.snapshot.values.items():
        value = sv.value
        if isinstance(value, str):
            value = as_card_text(value)
        elif isinstance(value, float) and not math.isfinite(value):
            continue  # FITS has no NaN or infinity in a header
        values[key] = replace(sv, value=value, unit=to_fits_text(str(sv.unit)), time=to_fits_text(str(sv.time)))
    return replace(exp, snapshot=StatusSnapshot(exp.snapshot.time, values), **texts)  # type: ignore[arg-type]


def bare(exp: ExposureInfo) -> ExposureInfo:
    """The last resort: the exposure's own numbers, its strings made to fit, and no status readings."""
    return replace(fitting(exp), snapshot=StatusSnapshot(exp.snapshot.time, {}))


def padded(nbytes: int) -> int:
    return (nbytes + BLOCK - 1) // BLOCK * BLOCK


def night_date(t: datetime, lon_deg: float) -> str:
    """YYYYMMDD of the night: local solar date 12 hours earlier, so a night keeps one date."""
    local = t + timedelta(hours=lon_deg / 15 - 12)
    return local.strftime("%Y%m%d")


def tomoe_filename(det_id: int, exp_id: int, when: datetime, lon_deg: float) -> str:
    """`TMQ` + quadrant + YYYYMMDD + 8-digit exposure id + 2-digit chip, as Tomo-e names files."""
    return f"TMQ{det_id // 100}{night_date(when, lon_deg)}{exp_id:08d}{det_id % 100:02d}.fits"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


class _Cards(list[tuple[str, object, str]]):
    """Cards in the order written: `h["KEY"] = (value, comment)` appends, never reorders."""

    def __setitem__(self, key: str, value: object) -> None:  # type: ignore[override]
        value, comment = value if isinstance(value, tuple) else (value, "")
        self.append((key, value, comment))


def _section(h: _Cards, title: str) -> None:
    h.append(("", f"---------------- {title} ----------------", ""))


def _unknown(comment: str) -> str:
    """The comment of an UNKNOWN value: what it is and why it is unknown (the why alone if both do not fit)."""
    text = f"{comment}: {NO_READING}"
    return text if len(text) <= COMMENT_MAX else NO_READING


def _status(h: _Cards, key: str, snap: StatusSnapshot, name: str, comment: str, digits: int = 3) -> None:
    sv = snap.get(name)
    if sv is None or sv.value is None:
        h.append((key, "UNKNOWN", _unknown(comment)))
        return
    value = round(sv.value, digits) if isinstance(sv.value, float) else sv.value
    unit = f" [{sv.unit}]" if sv.unit else ""
    note = f" STALE since {sv.time[:19]}" if sv.stale else ""
    h.append((key, value, f"{comment}{unit}"[: COMMENT_MAX - len(note)] + note))  # the STALE mark is never cut


def _stop_cards(h: _Cards, stop_reason: str | None) -> None:
    """STOPPED (T: cut short by a stop, NAXIS3 the frames kept) and STOPWHY, in every header, so that
    cutting a file short rewrites two cards in place."""
    h["STOPPED"] = (stop_reason is not None, "cut short by a stop: NAXIS3 frames kept")
    why = as_card_text(stop_reason or "")  # one card, never a CONTINUE
    comment = "why it was stopped"
    # "KEY     = " + the quoted value (padded to 20) + " / " + the comment: the comment goes if it does not fit.
    if 10 + max(20, len(why.replace("'", "''")) + 2) + 3 + len(comment) > 80:
        comment = ""
    h["STOPWHY"] = (why, comment)


def primary_header(
    cfg: Config,
    exp: ExposureInfo,
    det_id: int,
    gps_up: datetime,
    daq_host: str,
    daq_volume: str,
    filename: str,
    stop_reason: str | None = None,
) -> fits.Header:
    """The cube's primary header; `stop_reason`: the exposure was cut short to exp.n_frames by a stop."""
    geo = geometry(cfg.camera)
    snap = exp.snapshot
    frame_s = 1.0 / exp.fps
    gps_down = gps_up + timedelta(seconds=exp.n_frames * frame_s)
    mid = gps_up + (gps_down - gps_up) / 2
    h = _Cards()
    h["SIMPLE"] = (True, "conforms to FITS standard")
    h["BITPIX"] = (16, "16-bit integers")
    h["NAXIS"] = 3
    h["NAXIS1"] = (geo.width, "pixels per row")
    h["NAXIS2"] = (geo.height, "rows")
    h["NAXIS3"] = (exp.n_frames, "frames")
    h["EXTEND"] = (True, "FRAMES table follows")
    h["BZERO"] = (32768, "uint16 stored as int16")
    h["BSCALE"] = 1
    h["BLANK"] = (BLANK_RAW, "frames never received (see FRAMES)")
    h["BUNIT"] = ("ADU", "")

    _section(h, "observation")
    h["OBJECT"] = (exp.object, "target or field name")
    h["EXP_ID"] = (exp.exp_id, "exposure id")
    h["DATA-TYP"] = (exp.data_type, "OBJECT, FLAT or DARK")
    h["OBS-MOD"] = (exp.obs_mode, "observation mode")
    h["PROJECT"] = (exp.project, "project")
    h["OBSERVER"] = (exp.observer, "observer")
    h["RECIPEID"] = (exp.recipe_uuid or "", "queue recipe uuid")
    h["RECIPE"] = (exp.recipe_name or "", "queue recipe name")
    h["EXPTIME"] = (round(exp.n_frames * frame_s, 6), "[s] total exposure time")
    h["EXPTIME1"] = (round(frame_s, 6), "[s] exposure time of one frame")
    h["TELAPSE"] = (round(exp.n_frames * frame_s, 6), "[s] elapsed time of the exposure")
    h["TFRAME"] = (round(frame_s, 6), "[s] frame interval")
    h["TRLSTEP"] = (0.00041, "[s] rolling-shutter step per line")
    h["DATA-FPS"] = (exp.fps, "[1/s] frames per second")
    h["TIMESYS"] = ("UTC", "time system")
    h["DATE-OBS"] = (_iso(gps_up)[:10], "date at exposure start (UTC)")
    h["UTC"] = (_iso(gps_up)[11:23], "time at exposure start (UTC)")
    h["UTC-EXP"] = (_iso(mid)[11:23], "time at mid-exposure (UTC)")
    h["MJD-OBS"] = (round(float(Time(gps_up).mjd), 9), "MJD at exposure start")
    h["GPS-UP"] = (_iso(gps_up), "GPS time the exposure was triggered")
    h["GPS-DOWN"] = (_iso(gps_down), "end of the last frame (GPS clock)")
    _stop_cards(h, stop_reason)

    _section(h, "data")
    h["DET-ID"] = (det_id, "detector id (quadrant*100+column*10+row)")
    h["DAQ-HOST"] = (daq_host, "host that wrote this file")
    h["DAQ-VOL"] = (daq_volume, "DAQ volume")
    h["FILENAME"] = (filename, "original file name")
    h["ORIGIN"] = ("gozen", "")
    h["CREATOR"] = (f"gozen {__version__}", "software that wrote this file")
    _sections(h, geo)

    _section(h, "observatory")
    h["OBSERVAT"] = (cfg.site.name[:68], "observatory")
    h["TELESCOP"] = ("Kiso 1.05m Schmidt", "telescope")
    h["INSTRUME"] = ("Tomo-e Gozen", "instrument")
    h["SITELAT"] = (cfg.site.lat_deg, "[deg] site latitude")
    h["SITELONG"] = (cfg.site.lon_deg, "[deg] site longitude (east)")
    h["SITEELEV"] = (cfg.site.height_m, "[m] site height")
    ra, dec = snap.number("telescope.ra_deg"), snap.number("telescope.dec_deg")
    h["RA"] = (format_ra(ra), "RA of pointing (hh:mm:ss)") if ra is not None else ("UNKNOWN", _unknown("RA"))
    h["DEC"] = (format_dec(dec), "Dec of pointing") if dec is not None else ("UNKNOWN", _unknown("Dec"))
    h["RADESYS"] = ("ICRS", "")
    h["EQUINOX"] = (2000.0, "")
    _status(h, "ALTITUDE", snap, "telescope.alt_deg", "altitude of pointing")
    _status(h, "AZIMUTH", snap, "telescope.az_deg", "azimuth of pointing")
    _status(h, "AIRMASS", snap, "telescope.airmass", "airmass at start")

    _section(h, "weather")
    _status(h, "OUT-TMP", snap, "weather.temperature_c", "outside temperature")
    _status(h, "OUT-HUM", snap, "weather.humidity_pct", "outside humidity")
    _status(h, "OUT-PRS", snap, "weather.pressure_hpa", "air pressure")
    _status(h, "OUT-WND", snap, "weather.wind_ms", "wind speed")
    _status(h, "DEWPOINT", snap, "weather.dewpoint_c", "dew point")
    _status(h, "SKY-TMP", snap, "weather.sky_temp_c", "sky temperature (clouds)")

    _section(h, "instrument")
    h["FILTER"] = (exp.filter, "filter")
    _status(h, "DET-TMP", snap, "temperature.camera_c", "camera temperature")
    _status(h, "ROOM-TMP", snap, "temperature.room_c", "dome room temperature")
    _status(h, "GPS-FIX", snap, "gps.fix", "GPS receiver has a fix")
    _status(h, "GPS-OFS", snap, "gps.offset_ms", "system clock - GPS")
    _status(h, "UPS-STAT", snap, "power.ups_state", "UPS state (OL online, OB on battery)")

    _section(h, "WCS (approximate, no distortion)")
    if ra is not None and dec is not None:
        for k, val in frame_wcs(cfg, det_id, ra, dec).items():
            h[k] = val
    return _to_header(h)


def _sections(h: _Cards, geo: Geometry) -> None:
    """Where the light-sensitive pixels and the overscan are, as IRAF sections (1-based, inclusive):
    ccdproc's trim_image(fits_section=DATASEC) and subtract_overscan(fits_section=BIASSEC) take them."""
    ccd = Section(0, geo.data.x1 - geo.data.x0, 0, geo.data.y1 - geo.data.y0)
    h["DATASEC"] = (geo.data.fits, "light-sensitive pixels")
    if geo.bias is not None:
        h["TRIMSEC"] = (geo.data.fits, "what to keep when trimming")
        h["BIASSEC"] = (geo.bias.fits, "overscan: bias and read noise only")
    h["CCDSEC"] = (ccd.fits, "detector pixels DATASEC holds")
    if geo.reference is not None:
        h.append(("COMMENT", f"{geo.reference.fits} and the rows above and below DATASEC: optical black", ""))
        h.append(("COMMENT", "Overscan median and noise per frame: FRAMES table OSMED, OSNOISE;", ""))
        h.append(("COMMENT", "per file: OVSCMED, OVSCNOIS in the FRAMES header.", ""))


def frame_wcs(cfg: Config, det_id: int, ra0: float, dec0: float) -> dict[str, object]:
    """The chip's WCS on the frame as written: CRPIX moved by DATASEC's offset in a full readout."""
    cam, geo = cfg.camera, geometry(cfg.camera)
    wcs = chip_wcs(det_id, ra0, dec0, cam.width_px, cam.height_px)
    wcs["CRPIX1"] = round(float(wcs["CRPIX1"]) + geo.data.x0, 3)  # type: ignore[arg-type]
    wcs["CRPIX2"] = round(float(wcs["CRPIX2"]) + geo.data.y0, 3)  # type: ignore[arg-type]
    return wcs


def _to_header(cards: _Cards) -> fits.Header:
    h = fits.Header()
    for key, value, comment in cards:
        if key == "":
            h.append(fits.Card("", value), useblanks=False, bottom=True)
        else:
            h.append(fits.Card(key, value, comment), useblanks=False, bottom=True)
    return h


FRAME_DTYPE = np.dtype(
    [("FRAME", ">i4"), ("COUNTER", ">i8"), ("GPSTIME", ">f8"), ("FLAGS", ">i4"), ("OSMED", ">f4"), ("OSNOISE", ">f4")]
)
# Per-file overscan statistics in the FRAMES header (NaN, written as null, for a light-only readout).
OVERSCAN_KEYS = {"OVSCMED": "median of the frames' overscan medians, ADU", "OVSCNOIS": "median overscan noise, ADU"}


def frames_table(
    rows: np.ndarray, n_missing: int, n_damaged: int, os_median: float | None = None, os_noise: float | None = None
) -> bytes:
    """The FRAMES binary-table HDU (header + data + padding) for the end of the file."""
    cols = fits.ColDefs(
        [
            fits.Column("FRAME", "J", array=rows["FRAME"]),
            fits.Column("COUNTER", "K", array=rows["COUNTER"]),
            fits.Column("GPSTIME", "D", unit="s", array=rows["GPSTIME"]),
            fits.Column("FLAGS", "J", array=rows["FLAGS"]),
            fits.Column("OSMED", "E", unit="adu", array=rows["OSMED"]),
            fits.Column("OSNOISE", "E", unit="adu", array=rows["OSNOISE"]),
        ]
    )
    h = fits.BinTableHDU.from_columns(cols, name="FRAMES").header
    h.comments["TTYPE1"] = "frame index in the cube"
    h.comments["TTYPE2"] = "chip frame counter (-1: not received)"
    h.comments["TTYPE3"] = "GPS stamp of frame start, Unix s (UTC)"
    h.comments["TTYPE4"] = f"{FLAG_MISSING}=missing {FLAG_DAMAGED}=damaged {FLAG_DROPPED}=dropped"
    h["NMISSING"] = (n_missing, "frames never received")
    h["NDAMAGED"] = (n_damaged, "frames received with a link error")
    h.comments["TTYPE5"] = "overscan median (NaN: no overscan read)"
    h.comments["TTYPE6"] = "overscan noise, 1.4826 x MAD"
    for (key, comment), value in zip(OVERSCAN_KEYS.items(), (os_median, os_noise), strict=True):
        if value is None:  # fitsverify warns of a keyword without a value
            h.append(("COMMENT", f"{key}: no overscan in this readout"))
        else:
            h[key] = (round(value, 3), comment)
    data = rows.astype(FRAME_DTYPE).tobytes()
    head = h.tostring().encode("ascii")
    return head + data + b"\0" * (padded(len(data)) - len(data))


# Cards that differ between the chips of one exposure; everything else is shared.
PER_CHIP_KEYS = ("DET-ID", "DAQ-VOL", "FILENAME", "CRPIX1", "CRPIX2")
# Cards that count the cube's frames or say it was stopped: rewritten when a stop cuts it short.
CUT_KEYS = ("NAXIS3", "EXPTIME", "TELAPSE", "UTC-EXP", "GPS-DOWN", "STOPPED", "STOPWHY")


def _card_keys(image: bytes | bytearray) -> list[str]:
    """The keyword of each 80-character card of a rendered header."""
    return [bytes(image[i : i + 8]).decode("ascii").rstrip() for i in range(0, len(image), 80)]


class HeaderTemplate:
    """One exposure's primary header, rendered by astropy once; per chip only PER_CHIP_KEYS change.

    Building a Header with astropy costs ~12 ms, and the whole camera writes 14 files a second:
    the benchmark (bench/daq_bench.py) showed that alone taking a sixth of a writer's core. Cards
    are still rendered by astropy (`Card.image`); only their placement is done here.
    """

    def __init__(self, cfg: Config, exp: ExposureInfo, host: str) -> None:
        self.cfg, self.exp = cfg, exp
        first = cfg.camera.chips[0]
        header = primary_header(cfg, exp, first, exp.start_at, host, "-", "-")
        self.image = bytearray(header.tostring().encode("ascii"))
        # Card positions in the image itself: a long value spans several 80-character cards.
        keys = _card_keys(self.image)
        self.index = {k: keys.index(k) for k in PER_CHIP_KEYS if k in keys}
        self.comments = {k: header.comments[k] for k in self.index}
        self.ra, self.dec = exp.snapshot.number("telescope.ra_deg"), exp.snapshot.number("telescope.dec_deg")

    def render(self, det_id: int, daq_volume: str, filename: str) -> bytes:
        values: dict[str, object] = {"DET-ID": det_id, "DAQ-VOL": daq_volume, "FILENAME": filename}
        if self.ra is not None and self.dec is not None:
            wcs = frame_wcs(self.cfg, det_id, self.ra, self.dec)
            values |= {"CRPIX1": wcs["CRPIX1"], "CRPIX2": wcs["CRPIX2"]}
        out = bytearray(self.image)
        for key, i in self.index.items():
            out[80 * i : 80 * (i + 1)] = fits.Card(key, values[key], self.comments[key]).image.encode("ascii")
        return bytes(out)

    def cut_short(self, header: bytes, kept: int, stop_reason: str) -> bytes:
        """A header this template rendered, for the cube cut short to `kept` frames by a stop: the
        CUT_KEYS cards replaced in place (the same length, so the frames after it stay where they are)."""
        first = self.cfg.camera.chips[0]
        cut = primary_header(
            self.cfg, replace(self.exp, n_frames=kept), first, self.exp.start_at, "-", "-", "-", stop_reason
        )
        out = bytearray(header)
        keys = _card_keys(out)
        for key in CUT_KEYS:
            i = keys.index(key)
            out[80 * i : 80 * (i + 1)] = cut.cards[key].image.encode("ascii")
        return bytes(out)


class FramesTableTemplate:
    """The FRAMES table header for n frames, rendered once; NMISSING/NDAMAGED are set per file."""

    def __init__(self, n_frames: int) -> None:
        rows = np.zeros(n_frames, FRAME_DTYPE)
        self.head = bytearray(frames_table(rows, 0, 0, 0.0, 0.0)[: -padded(rows.nbytes)])
        cards = [self.head[i : i + 80].decode("ascii") for i in range(0, len(self.head), 80)]
        self.comments = {
            "NMISSING": "frames never received",
            "NDAMAGED": "frames received with a link error",
            **OVERSCAN_KEYS,
        }
        self.at = {k: next(i for i, c in enumerate(cards) if c.startswith(k.ljust(8))) for k in self.comments}

    def render(
        self, rows: np.ndarray, n_missing: int, n_damaged: int, os_median: float | None, os_noise: float | None
    ) -> bytes:
        """The FRAMES HDU of one file; os_median/os_noise None: no overscan (a COMMENT card says so instead)."""
        head = bytearray(self.head)
        values = (("NMISSING", n_missing), ("NDAMAGED", n_damaged), ("OVSCMED", os_median), ("OVSCNOIS", os_noise))
        for key, value in values:
            i = self.at[key]
            if value is None:  # fitsverify warns of a keyword without a value
                card = fits.Card("COMMENT", f"{key}: no overscan in this readout")
            else:
                card = fits.Card(key, round(value, 3) if isinstance(value, float) else value, self.comments[key])
            head[80 * i : 80 * (i + 1)] = card.image.encode("ascii")
        data = rows.astype(FRAME_DTYPE).tobytes()
        return bytes(head) + data + b"\0" * (padded(len(data)) - len(data))
