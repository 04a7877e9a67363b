"""The items sim:feeds plays, made up but plausible, and the four feeds' documents in their real formats.

An item is a plain dict (it is kept in sim:feeds' state file): `feed`, `at` (ISO time it appeared) and
the fields of its feed. `make_item(feed, seq, at, ...)` makes the seq-th item of a feed, the same every
time for the same arguments; the `*_document` functions render a feed's items, newest first where the
real feed is, as JPL's close-approach API, the Gaia alerts CSV, GCN classic-text MAXI notices and the
MPC's RSS feed serve them (tests/data/feeds holds real-format samples; couriers/feeds.py parses them).
"""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape

from gozen.config import FeedName, Site
from gozen.sky import zenith_radec

Item = dict[str, Any]
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
LETTERS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"  # the MPC's 25 letters: no I
UNIX_JD = 2440587.5  # the Julian date of 1970-01-01T00:00Z
TJD_JD = 2440000.5  # GCN's Truncated Julian Date is JD - 2440000.5
CAD_FIELDS = ["des", "orbit_id", "jd", "cd", "dist", "dist_min", "dist_max", "v_rel", "v_inf", "t_sigma_f", "h"]
GAIA_HEADER = "#Name,Date,RaDeg,DecDeg,AlertMag,HistMag,HistStdDev,Class,Comment,TNSid"
GAIA_KINDS = (
    ("SN Ia", "candidate SN in a faint host galaxy"),
    ("SN II", "rising transient near the nucleus of a spiral galaxy"),
    ("CV", "outburst of a candidate dwarf nova"),
    ("YSO", "brightening of a known young stellar object"),
    ("ULENS", "smooth rise, candidate microlensing event"),
    ("unknown", "new source, no previous detection"),
)
NAMED_NEOS = ("Apophis", "Bennu", "Toutatis", "Phaethon", "Florence", "Eros")


def half_month(t: datetime) -> str:
    """The MPC's half-month letter: A = Jan 1-15, B = Jan 16-31, ... Y = Dec 16-31."""
    return LETTERS[(t.month - 1) * 2 + (t.day > 15)]


def designation(t: datetime, seq: int) -> str:
    """A provisional designation of a newly found object, `2026 WC4`: year, half-month, order found."""
    cycle = seq // len(LETTERS)
    return f"{t.year} {half_month(t)}{LETTERS[seq % len(LETTERS)]}{cycle or ''}"


def mpec_packed(t: datetime, number: int) -> str:
    """`K26W12`, `K26WB2` (= 112): the packed MPEC id the MPC's URLs use."""
    year = f"{chr(ord('A') + t.year // 100 - 10)}{t.year % 100:02d}"
    tail = f"{number:02d}" if number < 100 else f"{chr(ord('A') + number // 10 - 10)}{number % 10}"
    return f"{year}{half_month(t)}{tail}"


def sexagesimal(value: float, hours: bool) -> str:
    """`+11h 45m 00s` or `+01d 03' 00"`, as GCN notices write positions."""
    sign = "-" if value < 0 else "+"
    v = abs(value) / 15.0 if hours else abs(value)
    d, rest = int(v), (abs(v) - int(v)) * 60
    m, s = int(rest), round((rest - int(rest)) * 60)
    if s == 60:
        m, s = m + 1, 0
    if m == 60:
        d, m = d + 1, 0
    return f"{sign}{d:02d}h {m:02d}m {s:02d}s" if hours else f"{sign}{d:02d}d {m:02d}' {s:02d}\""


def observable_position(site: Site, at: datetime, rng: random.Random) -> tuple[float, float]:
    """A position high in the site's sky at `at`: within ~2 h of the meridian and 15 deg of the zenith."""
    lst_deg, lat_deg = zenith_radec(site, at)
    ra = (lst_deg + rng.uniform(-30.0, 15.0)) % 360.0
    dec = max(-89.0, min(89.0, lat_deg + rng.uniform(-15.0, 15.0)))
    return round(ra, 4), round(dec, 4)


def cneos_item(seq: int, at: datetime, rng: random.Random) -> Item:
    when = at + timedelta(hours=rng.uniform(6, 7 * 24))
    named = seq % 7 == 6
    des = f"{99942 + seq}" if named else designation(at, seq)
    dist = rng.uniform(0.0005, 0.05)
    sigma = rng.choice(("< 00:01", "00:01", "00:07", "00:33", "02:14", "1_02:14"))
    v_rel = rng.uniform(4.0, 25.0)
    return {
        "des": des,
        "fullname": f"{des} {NAMED_NEOS[seq % len(NAMED_NEOS)]} ({designation(at - timedelta(days=7000), seq)})"
        if named
        else f"({des})",
        "orbit_id": str(rng.randint(1, 40)),
        "jd": f"{when.timestamp() / 86400 + UNIX_JD:.9f}",
        "cd": f"{when.year}-{MONTHS[when.month - 1]}-{when.day:02d} {when.hour:02d}:{when.minute:02d}",
        "dist": f"{dist:.15f}",
        "dist_min": f"{dist * 0.997:.15f}",
        "dist_max": f"{dist * 1.003:.15f}",
        "v_rel": f"{v_rel:.11f}",
        "v_inf": f"{v_rel * 0.995:.11f}",
        "t_sigma_f": sigma,
        "h": f"{rng.uniform(18.0, 29.5):.1f}",
    }


def gaia_item(seq: int, at: datetime, rng: random.Random) -> Item:
    cls, comment = GAIA_KINDS[seq % len(GAIA_KINDS)]
    n = 2 * 26 * 26 + seq  # Gaia26cxa ... : three letters counting up within the year
    name = f"Gaia{at.year % 100:02d}{chr(97 + n // 676 % 26)}{chr(97 + n // 26 % 26)}{chr(97 + n % 26)}"
    mag = rng.uniform(15.0, 19.5)
    return {
        "Name": name,
        "Date": at.strftime("%Y-%m-%d %H:%M:%S"),
        "RaDeg": f"{rng.uniform(0, 360):.5f}",
        "DecDeg": f"{rng.uniform(-60, 75):.5f}",
        "AlertMag": f"{mag:.2f}",
        "HistMag": f"{mag + rng.uniform(0.5, 3.0):.2f}" if cls != "unknown" else "",
        "HistStdDev": f"{rng.uniform(0.02, 0.4):.2f}" if cls != "unknown" else "",
        "Class": cls,
        "Comment": comment + (", in the Galactic plane" if seq % 3 == 0 else ""),
        "TNSid": f"AT{at.year}{chr(97 + seq // 676 % 26)}{chr(97 + seq // 26 % 26)}{chr(97 + seq % 26)}"
        if cls.startswith("SN")
        else "",
    }


def maxi_item(seq: int, at: datetime, rng: random.Random, where: tuple[float, float]) -> Item:
    ra, dec = where
    event = at - timedelta(seconds=rng.uniform(90, 170))
    return {
        "trigger": str(9181700 + seq * 7),
        "type": "MAXI Unknown Source",
        "notice_date": at.strftime("%a %d %b %y %H:%M:%S UT"),
        "ra": ra,
        "dec": dec,
        "error_deg": round(rng.choice((0.15, 0.2, 0.25, 0.3, 0.4)), 2),
        "flux_mcrab": round(rng.uniform(40, 400)),
        "flux_err_mcrab": round(rng.uniform(10, 40)),
        "event_time": event.isoformat(),
        "duration_s": rng.choice((48.0, 96.0, 192.0)),
    }


def mpec_item(seq: int, at: datetime, rng: random.Random) -> Item:
    number = 100 + seq
    packed = mpec_packed(at, number)
    daily = seq % 4 == 3
    obj = designation(at, 100 + seq)
    title = (
        f"MPEC {at.year}-{half_month(at)}{number} : DAILY ORBIT UPDATE ({at.year} {MONTHS[at.month - 1].upper()}. "
        f"{at.day} UT)"
        if daily
        else f"MPEC {at.year}-{half_month(at)}{number} : {obj}"
    )
    kind = rng.choice(("Apollo", "Aten", "Amor"))
    return {
        "title": title,
        "link": f"https://www.minorplanetcenter.net/mpec/{packed[:3]}/{packed}.html",
        "description": "Daily orbit update." if daily else f"Observations and orbit of the {kind} object {obj}.",
    }


def make_item(feed: FeedName, seq: int, at: datetime, site: Site, observable: bool = True) -> Item:
    """The seq-th item of a feed, appearing at `at`; a MAXI notice is high in the sky unless `observable`
    is False (then it is far south: no follow-up rule takes it)."""
    rng = random.Random(f"{feed}:{seq}:{at.isoformat()}")
    if feed == "cneos":
        fields = cneos_item(seq, at, rng)
    elif feed == "gaia":
        fields = gaia_item(seq, at, rng)
    elif feed == "maxi":
        where = observable_position(site, at, rng) if observable else (round(rng.uniform(240, 300), 4), -45.2)
        fields = maxi_item(seq, at, rng, where)
    else:
        fields = mpec_item(seq, at, rng)
    return {"feed": feed, "at": at.isoformat(), **fields}


# -- the documents -----------------------------------------------------------


def cneos_document(items: list[Item], fullname: bool) -> dict[str, Any]:
    """JPL SSD CAD API 1.5: close approaches sorted by date, `fullname` as the API adds it on request."""
    fields = CAD_FIELDS + (["fullname"] if fullname else [])
    rows = sorted(items, key=lambda i: float(i["jd"]))
    data = [[i[f] if f != "fullname" else f"{i[f]:>25}" for f in fields] for i in rows]
    return {
        "signature": {"source": "NASA/JPL SBDB Close Approach Data API", "version": "1.5"},
        "count": str(len(data)),
        "fields": fields,
        "data": data,
    }


def gaia_document(items: list[Item]) -> str:
    """The Gaia Science Alerts CSV, newest first."""
    out = io.StringIO()
    out.write(GAIA_HEADER + "\n")
    w = csv.writer(out, lineterminator="\n")
    for i in reversed(items):
        w.writerow([i[c] for c in GAIA_HEADER.lstrip("#").split(",")])
    return out.getvalue()


def maxi_notice(i: Item) -> str:
    """One GCN/MAXI classic-text notice."""
    event = datetime.fromisoformat(i["event_time"]).astimezone(UTC)
    jd = event.timestamp() / 86400 + UNIX_JD
    sod = event.hour * 3600 + event.minute * 60 + event.second + event.microsecond / 1e6
    ra, dec = float(i["ra"]), float(i["dec"])
    lines = [
        ("TITLE", "GCN/MAXI NOTICE"),
        ("NOTICE_DATE", i["notice_date"]),
        ("NOTICE_TYPE", i["type"]),
        ("TRIGGER_NUM", i["trigger"]),
        ("EVENT_RA", f"{ra:.4f}d {{{sexagesimal(ra, True)}}} (J2000),"),
        ("EVENT_DEC", f"{dec:+.4f}d {{{sexagesimal(dec, False)}}} (J2000),"),
        ("EVENT_ERROR", f"{i['error_deg']:.2f} [deg, radius, stat+sys, 90% containment]"),
        ("EVENT_FLUX", f"{i['flux_mcrab']:.2f} +/- {i['flux_err_mcrab']:.2f} [mCrab]"),
        ("ENERGY_BAND", "2.0 - 10.0 [keV]"),
        ("EVENT_DATE", f"{int(jd - TJD_JD)} TJD;   {event.timetuple().tm_yday} DOY;   {event.strftime('%y/%m/%d')}"),
        ("EVENT_TIME", f"{sod:.2f} SOD {{{event.strftime('%H:%M:%S')}.{event.microsecond // 10000:02d}}} UT"),
        ("EVENT_DUR", f"{i['duration_s']:.2f} [sec]"),
        ("COMMENTS", "MAXI Unknown Source Position Notice."),
        ("COMMENTS", "This unknown source is not in the MAXI catalog."),
    ]
    return "\n".join(f"{k + ':':<17}{v}" for k, v in lines) + "\n"


def maxi_document(items: list[Item]) -> str:
    """The MAXI notices, newest first, blank-line separated, as a GCN archive page serves them."""
    return "\n".join(maxi_notice(i) for i in reversed(items))


def mpec_document(items: list[Item], self_url: str) -> str:
    """The MPC's RSS 2.0 feed of recent MPECs, newest first."""
    entries = []
    for i in reversed(items):
        at = datetime.fromisoformat(i["at"]).astimezone(UTC)
        entries.append(
            "<item>\n"
            f"<title>{escape(i['title'])}</title>\n"
            f"<link>{escape(i['link'])}</link>\n"
            f"<guid>{escape(i['link'])}</guid>\n"
            f"<pubDate>{format_datetime(at)}</pubDate>\n"
            f"<description>{escape(i['description'])}</description>\n"
            "</item>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0">\n<channel>\n'
        "<title>Recent MPECs</title>\n"
        f"<link>{escape(self_url)}</link>\n"
        "<description>Minor Planet Electronic Circulars issued recently (simulated by gozen sim:feeds)</description>\n"
        + "".join(entries)
        + "</channel>\n</rss>\n"
    )
