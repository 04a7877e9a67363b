"""The alert feeds and their parsers: JPL's close-approach API, the Gaia alerts CSV, MAXI's GCN
notices, the MPC's MPEC feed.

Each parser returns the alerts it could read and, for every line or row it could not, the
reason with the offending text; a bad row never stops the rest.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gozen.config import FeedName

AU_IN_LD = 149_597_870.7 / 384_400.0  # 1 au in lunar distances (389.17)


@dataclass(frozen=True)
class Alert:
    feed: str
    key: str  # identity in the feed: a repeat has the same key
    title: str
    event_time: datetime | None
    data: dict[str, Any]
    ra_deg: float | None = None
    dec_deg: float | None = None


def position(ra_deg: float, dec_deg: float) -> tuple[float, float]:
    """RA/Dec as read, or ValueError saying why they cannot be a position on the sky."""
    if not (math.isfinite(ra_deg) and math.isfinite(dec_deg)):
        raise ValueError(f"position RA {ra_deg} Dec {dec_deg} is not a number")
    if not (0.0 <= ra_deg <= 360.0 and -90.0 <= dec_deg <= 90.0):
        raise ValueError(f"position RA {ra_deg} Dec {dec_deg} is off the sky")
    return ra_deg % 360.0, dec_deg


@dataclass
class Parsed:
    alerts: list[Alert] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


def parse_cneos(text: str) -> Parsed:
    """JPL SSD CAD API: {"signature", "count", "fields": [...], "data": [[...], ...]}."""
    out = Parsed()
    try:
        doc = json.loads(text)
        fields = list(doc["fields"])
        rows = list(doc.get("data") or [])
    except (ValueError, KeyError, TypeError) as err:
        out.rejected.append(f"not a close-approach API answer: {err}: {text[:200]!r}")
        return out
    for row in rows:
        try:
            d = dict(zip(fields, row, strict=True))
            when = datetime.strptime(d["cd"], "%Y-%b-%d %H:%M").replace(tzinfo=UTC)
            dist = float(d["dist"])
            h = float(d["h"])
        except (ValueError, KeyError, TypeError) as err:
            out.rejected.append(f"close approach row skipped ({err}): {row!r}")
            continue
        d["dist"], d["h"] = dist, h
        full = str(d.get("fullname") or "").strip()  # "99942 Apophis (2004 MN4)"; "(2026 WC3)" says no more
        title = full if full and not full.startswith("(") else str(d["des"])
        out.alerts.append(Alert("cneos", f"{d['des']}|{d['cd']}", title, when, d))
    return out


GAIA_COLUMNS = ("Name", "Date", "RaDeg", "DecDeg", "AlertMag", "HistMag", "HistStdDev", "Class", "Comment")


def parse_gaia(text: str) -> Parsed:
    """Gaia Science Alerts CSV: `#Name,Date,RaDeg,DecDeg,AlertMag,HistMag,HistStdDev,Class,Comment,...`."""
    out = Parsed()
    lines = text.splitlines()
    if not lines or not lines[0].lstrip("#").startswith("Name"):
        out.rejected.append(f"not the Gaia alerts CSV (no header): {text[:200]!r}")
        return out
    header = [h.strip() for h in lines[0].lstrip("#").split(",")]
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            [row] = list(csv.reader(io.StringIO(line)))
            if len(row) < len(GAIA_COLUMNS):
                raise ValueError(f"{len(row)} fields, {len(GAIA_COLUMNS)} wanted")
            d: dict[str, Any] = {h: v.strip() for h, v in zip(header, row, strict=False)}
            if not d["Name"]:
                raise ValueError("no Name")
            when = datetime.strptime(d["Date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            ra, dec = position(float(d["RaDeg"]), float(d["DecDeg"]))
            d["AlertMag"] = float(d["AlertMag"]) if d["AlertMag"] else None
        except (ValueError, KeyError) as err:
            out.rejected.append(f"line {n} skipped ({err}): {line!r}")
            continue
        out.alerts.append(Alert("gaia", d["Name"], d["Name"], when, d, ra, dec))
    return out


def parse_mpec(text: str) -> Parsed:
    """The MPC's RSS/Atom feed of recent MPECs (feedparser)."""
    import feedparser

    out = Parsed()
    feed = feedparser.parse(text)
    if feed.bozo and not feed.entries:
        out.rejected.append(f"not an RSS/Atom feed: {feed.get('bozo_exception')}: {text[:200]!r}")
        return out
    for e in feed.entries:
        title = str(e.get("title", "")).strip()
        if not title.startswith("MPEC"):
            out.rejected.append(f"entry skipped (not an MPEC): {title!r}")
            continue
        parsed = e.get("published_parsed") or e.get("updated_parsed")
        when = datetime(*parsed[:6]).replace(tzinfo=UTC) if parsed else None
        key = str(e.get("id") or e.get("link") or title)
        data = {"title": title, "link": e.get("link"), "summary": e.get("summary", "")}
        out.alerts.append(Alert("mpec", key, title, when, data))
    return out


def maxi_name(ra_deg: float, dec_deg: float) -> str:
    """`11 45+01`: RA hours and minutes, Dec degrees, as the Tomo-e queue named MAXI follow-ups."""
    ra_min = int(round(ra_deg / 15 * 60)) % (24 * 60)
    sign = "+" if dec_deg >= 0 else "-"
    return f"{ra_min // 60:02d} {ra_min % 60:02d}{sign}{int(abs(dec_deg)):02d}"


def parse_maxi(text: str) -> Parsed:
    """GCN classic text notices from MAXI (`TITLE: GCN/MAXI NOTICE` blocks), as a page or feed serves them."""
    out = Parsed()
    blocks = [b for b in text.split("TITLE:") if b.strip()]
    if not blocks:
        out.rejected.append(f"no GCN notices in it: {text[:200]!r}")
        return out
    for b in blocks:
        fields: dict[str, str] = {}
        for line in b.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().isupper() and key.strip() not in fields:
                fields[key.strip()] = value.strip()
        try:
            trigger = fields["TRIGGER_NUM"]
            ra, dec = position(float(fields["EVENT_RA"].split("d", 1)[0]), float(fields["EVENT_DEC"].split("d", 1)[0]))
            day = fields["EVENT_DATE"].split(";")[-1].strip()  # yy/mm/dd
            tod = fields["EVENT_TIME"].split("{", 1)[1].split("}", 1)[0]
            when = datetime.strptime(f"{day} {tod[:8]}", "%y/%m/%d %H:%M:%S").replace(tzinfo=UTC)
        except (KeyError, ValueError, IndexError) as err:
            out.rejected.append(f"notice skipped ({type(err).__name__}: {err}): {('TITLE:' + b)[:300]!r}")
            continue
        data = {
            "trigger": trigger,
            "type": fields.get("NOTICE_TYPE", ""),
            "flux": fields.get("EVENT_FLUX", ""),
            "error": fields.get("EVENT_ERROR", ""),
        }
        out.alerts.append(Alert("maxi", trigger, maxi_name(ra, dec), when, data, ra, dec))
    return out


PARSERS: dict[FeedName, Callable[[str], Parsed]] = {
    "cneos": parse_cneos,
    "gaia": parse_gaia,
    "mpec": parse_mpec,
    "maxi": parse_maxi,
}  # one for each of gozen.config.FEEDS
