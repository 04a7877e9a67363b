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


def messages_for(feed: str, alerts: list[Alert]) -> list[tuple[str, list[dict[str, Any]]]]:
    """One digest for close approaches; one message per Gaia or MAXI alert or MPEC."""
    if not alerts:
        return []
    if feed == "cneos":
        return [cneos_message(alerts)]
    make = {"gaia": gaia_message, "maxi": maxi_message}.get(feed, mpec_message)
    return [make(a) for a in alerts]
