"""What the couriers say: plain text (the Slack fallback and every other service) and Block Kit.

Text that comes from a feed is escaped where it enters Slack mrkdwn (`&`, `<`, `>` are its
control characters: `<!channel>` in an alert would ping everyone, `<url|x>` would make a link);
the links we make ourselves are not. The plain `text` is escaped when it is posted to Slack.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from gozen.couriers.feeds import AU_IN_LD, Alert
from gozen.couriers.outbox import slack_escape
from gozen.sky import format_dec, format_ra

CNEOS_TITLE = "CNEOS Close Approaches daily updates"


def slack_link(url: str, label: str) -> str:
    """`<url|label>` with both parts from a feed: the URL cannot end the link early, the label is escaped."""
    safe_url = quote(url, safe=":/?#[]@!$&'()*+,;=%~-._")  # percent-encodes < > | " and spaces
    return f"<{slack_escape(safe_url)}|{slack_escape(label)}>" if url else slack_escape(label)


def section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def cneos_line(a: Alert) -> str:
    """`2018-Jul-17 05:38±00:33, H=26.4, dist: 0.0036 au (1.4 LD)`, as the Tomo-e courier wrote it."""
    d = a.data
    dist = float(d["dist"])
    return f"{d['cd']}±{d['t_sigma_f']}, H={float(d['h']):.1f}, dist: {dist:.4f} au ({dist * AU_IN_LD:.1f} LD)"


def cneos_message(alerts: list[Alert]) -> tuple[str, list[dict[str, Any]]]:
    lines = [CNEOS_TITLE]
    for a in alerts:
        lines += [a.title, cneos_line(a)]
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": CNEOS_TITLE}}]
    blocks += [section(f"*{slack_escape(a.title)}*\n{slack_escape(cneos_line(a))}") for a in alerts[:48]]
    return "\n".join(lines), blocks


def gaia_message(a: Alert) -> tuple[str, list[dict[str, Any]]]:
    d = a.data
    link = f"https://gsaweb.ast.cam.ac.uk/alerts/alert/{a.title}/"
    when = a.event_time.strftime("%Y-%m-%d %H:%M UTC") if a.event_time else "?"
    pos = f"RA {format_ra(a.ra_deg or 0.0)} Dec {format_dec(a.dec_deg or 0.0)}"
    hist = f" (was {d['HistMag']}±{d['HistStdDev']})" if d.get("HistMag") else ""
    text = (
        f"Gaia alert {a.title} ({d.get('Class') or 'unclassified'}): {when}, {pos}, G={d.get('AlertMag')}{hist}. "
        f"{d.get('Comment', '')} {link}"
    ).replace("  ", " ")
    mrkdwn = f"*{slack_link(link, a.title)}* {slack_escape(text)}"
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}]


def mpec_message(a: Alert) -> tuple[str, list[dict[str, Any]]]:
    when = a.event_time.strftime("%Y-%m-%d %H:%M UTC") if a.event_time else ""
    link = a.data.get("link") or ""
    text = f"{a.title} ({when}) {link}".strip()
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{slack_link(link, a.title)}* {when}"}}]


def maxi_message(a: Alert) -> tuple[str, list[dict[str, Any]]]:
    d = a.data
    when = a.event_time.strftime("%Y-%m-%d %H:%M:%S UTC") if a.event_time else "?"
    label = d.get("type") or "MAXI notice"
    label = label if label.startswith("MAXI") else f"MAXI {label}"
    text = (
        f"{label} {a.title} (trigger {d['trigger']}): {when}, "
        f"RA {format_ra(a.ra_deg or 0.0)} Dec {format_dec(a.dec_deg or 0.0)}, error {d.get('error')}, "
        f"flux {d.get('flux')}"
    )
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(text)}}]


YEAR_S = 365.25 * 86400
GW_DONE = {
    "queued": "follow-up queued",
    "revised": "follow-up revised",
    "cancelled": "follow-up cancelled",
    "abort requested": "follow-up being observed: abort requested",
    "not followed": "not followed up",
    "not applied": "follow-up not changed",
}


def gw_message(a: Alert) -> tuple[str, list[dict[str, Any]]]:
    """`GW S250101a PRELIMINARY: FAR 0.03/yr (1 in 32 yr), 90% area 14 deg2, 3 tiles (93%): follow-up queued.`"""
    d = a.data
    parts = []
    if d.get("far_hz") is not None:
        per_year = float(d["far_hz"]) * YEAR_S
        parts.append(f"FAR {per_year:.3g}/yr (1 in {1 / per_year:.3g} yr)" if per_year > 0 else "FAR 0/yr")
    if d.get("area_deg2") is not None:
        parts.append(f"90% area {float(d['area_deg2']):.0f} deg2")
    if d.get("tiles"):
        parts.append(f"{d['tiles']} tiles planned ({float(d['covered']):.0%} of the map)")
    done = GW_DONE.get(str(d.get("action")), str(d.get("action")))
    why = f" ({d['reason']})" if d.get("reason") and d.get("action") not in ("queued", "revised") else ""
    head = f"GW {a.title} {d.get('alert_type')}"
    body = f": {', '.join(parts)}" if parts else ""
    text = f"{head}{body}. {done}{why}."
    link = str(d.get("link") or "")
    mrkdwn = f"*{slack_link(link, a.title)}* {slack_escape(text.removeprefix(f'GW {a.title} '))}"
    return (f"{text} {link}".strip(), [section(mrkdwn)])


def messages_for(feed: str, alerts: list[Alert]) -> list[tuple[str, list[dict[str, Any]]]]:
    """One digest for close approaches; one message per Gaia or MAXI alert, MPEC or GW notice."""
    if not alerts:
        return []
    if feed == "cneos":
        return [cneos_message(alerts)]
    make = {"gaia": gaia_message, "maxi": maxi_message, "gw": gw_message}.get(feed, mpec_message)
    return [make(a) for a in alerts]
