"""Times on the pages: UTC first, the site's local time (site.timezone, JST at Kiso) beside it.

In templates: `{{ t | when }}` (date and time), `{{ t | when("time") }}` (time of day only);
`t` is a timezone-aware datetime, an ISO 8601 string or None (shown as "–"). Times drawn by
scripts use `gozen.when(iso, "time")` from page.js, which reads the zone from <body data-tz>.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from jinja2 import pass_context
from markupsafe import Markup, escape

Style = Literal["datetime", "time", "minute"]
_FORMATS: dict[str, tuple[str, str]] = {
    # style: (UTC part, local part)
    "datetime": ("%Y-%m-%d %H:%M:%S", "%H:%M"),
    "time": ("%H:%M:%S", "%H:%M"),
    "minute": ("%Y-%m-%d %H:%M", "%H:%M"),
}


def as_utc(t: datetime | str) -> datetime:
    """A datetime in UTC from a datetime (naive: taken as UTC) or an ISO 8601 string."""
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def when_text(t: datetime | str, tz: ZoneInfo, style: Style = "datetime") -> tuple[str, str]:
    """("2026-11-26 12:00:05 UTC", "21:00 JST"): the UTC text and the local text."""
    utc = as_utc(t)
    fmt_utc, fmt_local = _FORMATS[style]
    local = utc.astimezone(tz)
    return f"{utc.strftime(fmt_utc)} UTC", f"{local.strftime(fmt_local)} {local.strftime('%Z')}"


def when_markup(t: datetime | str | None, tz: ZoneInfo, style: Style = "datetime") -> Markup:
    if t is None or t == "":
        return Markup('<span class="muted">–</span>')
    utc_text, local_text = when_text(t, tz, style)
    iso = as_utc(t).isoformat()
    return Markup(
        f'<time datetime="{escape(iso)}">{escape(utc_text)} <span class="local">{escape(local_text)}</span></time>'
    )


@pass_context
def when_filter(context: Any, t: datetime | str | None, style: Style = "datetime") -> Markup:
    """The Jinja filter `when`: the zone comes from the app's config (request.app.state.cfg)."""
    return when_markup(t, site_zone(context.get("request")), style)


def site_zone(request: Any) -> ZoneInfo:
    try:
        return ZoneInfo(request.app.state.cfg.site.timezone)
    except AttributeError:
        return ZoneInfo("UTC")


def zone_abbreviation(request: Any) -> str:
    """The site zone's abbreviation now ("JST"), for page.js (browsers write "GMT+9")."""
    return datetime.now(site_zone(request)).strftime("%Z")
