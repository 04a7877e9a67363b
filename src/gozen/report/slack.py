"""The report on Slack: the summary line and link through the outbox (kind "report"; courier:sender
posts it and retries), the overview picture uploaded with files_upload_v2 and each bot token."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from gozen.config import Config, Notifier
from gozen.couriers import store as outbox_store
from gozen.couriers.outbox import slack_escape

log = logging.getLogger(__name__)
KIND = "report"
UPLOAD_TIMEOUT_S = 30


def report_url(cfg: Config, night: str) -> str:
    """Where people open the report: reports.public_url, else http://web.bind:web.port."""
    base = cfg.reports.public_url or f"http://{cfg.web.bind}:{cfg.web.port}"
    return f"{base.rstrip('/')}/reports/{night}/"


def routed(cfg: Config) -> list[Notifier]:
    """Notifiers that take reports."""
    return outbox_store.routes(cfg, KIND)


def uploaders(cfg: Config) -> list[Notifier]:
    """Notifiers that take reports and can upload a picture (Slack, with a bot token and a channel)."""
    return [n for n in routed(cfg) if n.kind == "slack" and n.bot_token and n.channel]


def queue_summary(conn: Connection, cfg: Config, night: str, summary: str) -> int:
    """Queue the summary line with its link (in the caller's transaction); to how many notifiers."""
    url = report_url(cfg, night)
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*<{url}|Nightly report {night}>*\n{slack_escape(summary)}"},
        }
    ]
    return outbox_store.enqueue(conn, cfg, KIND, f"{summary} {url}", blocks)


def upload_overview(cfg: Config, night: str, picture: Path, summary: str) -> list[str]:
    """Upload the overview PNG to every uploader's channel; what failed, one line each (empty: all went)."""
    from slack_sdk import WebClient

    failed = []
    for n in uploaders(cfg):
        try:
            WebClient(token=n.bot_token, base_url=n.api_url, timeout=UPLOAD_TIMEOUT_S).files_upload_v2(
                file=str(picture),
                filename=f"gozen-night-{night}.png",
                title=f"Nightly report {night}",
                channel=n.channel,
                initial_comment=f"{summary} {report_url(cfg, night)}",
            )
        except Exception as err:  # refused, timed out, or a Slack API error: retried on a later pass
            why = _why(err)
            log.warning("report %s: upload to %s failed: %s", night, n.name, why)
            failed.append(f"{n.name}: {why}")
    return failed


def _why(err: Exception) -> str:
    from slack_sdk.errors import SlackApiError

    if isinstance(err, SlackApiError) and err.response is not None:
        return f"Slack API: {err.response.get('error')}"
    return f"{type(err).__name__}: {err}"[:300]
