"""The outbox: every message is a row until a service has taken it; `courier:sender` posts them.

Slack through slack_sdk's incoming-webhook client (text and Block Kit), any other service
through apprise URLs. A 429 waits for its Retry-After; other failures back off, doubling up
to an hour. Nothing is dropped: a message stays pending until delivered, and a service
that fails, or comes back, is an event once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from gozen.config import Config, Notifier
from gozen.db.events import record_event
from gozen.db.tables import outbox
from gozen.db.types import utcnow

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 3600.0
KEEP_SETTLED_DAYS = 30.0  # delivered and unroutable messages are kept this long (the Alerts page shows them)
TRIM_EVERY_S = 3600.0


def slack_escape(text: str) -> str:
    """Text shown as itself in Slack mrkdwn: Slack's three escapes (`&` first)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def routes(cfg: Config, kind: str) -> list[Notifier]:
    return [n for n in cfg.notifiers if "*" in n.kinds or kind in n.kinds]


def enqueue(conn: Connection, cfg: Config, kind: str, text: str, blocks: list[dict[str, Any]] | None = None) -> int:
    """Queue a message to every notifier its kind is routed to (in the caller's transaction)."""
    now = utcnow()
    targets = routes(cfg, kind)
    rows = [
        {
            "kind": kind,
            "notifier": n.name,
            "text": text,
            "blocks": blocks,
            "state": "pending",
            "attempts": 0,
            "next_try_at": now,
            "created_at": now,
        }
        for n in targets
    ]
    if not rows:  # kept, visible, never posted: there is nowhere to post it
        rows = [
            {
                "kind": kind,
                "notifier": "",
                "text": text,
                "blocks": blocks,
                "state": "unrouted",
                "attempts": 0,
                "next_try_at": now,
                "created_at": now,
            }
        ]
    conn.execute(insert(outbox), rows)
    return len(targets)


@dataclass(frozen=True)
class PostResult:
    ok: bool
    why: str = ""
    retry_after_s: float | None = None


def upload_snippet(n: Notifier, text: str, timeout_s: float) -> PostResult:
    """A plain-text snippet as a Slack file (files_upload_v2 with the bot token), as `tomoe log` posted them."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    title, _, body = text.partition("\n")
    try:
        WebClient(token=n.bot_token, base_url=n.api_url, timeout=int(timeout_s)).files_upload_v2(
            content=body.strip("`\n"), filename=title.replace(" ", "-") + ".txt", title=title, channel=n.channel
        )
    except SlackApiError as err:
        retry = err.response.headers.get("Retry-After") if err.response is not None else None
        return PostResult(
            False, f"Slack API: {err.response.get('error') if err.response else err}", float(retry) if retry else None
        )
    except Exception as err:
        return PostResult(False, f"{type(err).__name__}: {err}")
    return PostResult(True)


def post(
    n: Notifier, text: str, blocks: list[dict[str, Any]] | None, kind: str = "", timeout_s: float = 15.0
) -> PostResult:
    if n.kind == "slack" and kind == "snippet" and n.bot_token and n.channel:
        return upload_snippet(n, text, timeout_s)
    if n.kind == "slack":
        from slack_sdk.webhook import WebhookClient

        try:
            r = WebhookClient(n.url, timeout=int(timeout_s)).send(text=slack_escape(text), blocks=blocks)
        except Exception as err:  # connection refused, timeout, TLS: the service was not reached
            return PostResult(False, f"{type(err).__name__}: {err}")
        if 200 <= r.status_code < 300:
            return PostResult(True)
        retry = r.headers.get("Retry-After") or r.headers.get("retry-after")
        after = float(retry[0] if isinstance(retry, list) else retry) if retry else None
        return PostResult(False, f"HTTP {r.status_code}: {str(r.body)[:200]}", after)
    import apprise

    a = apprise.Apprise()
    if not a.add(n.url):
        return PostResult(False, f"apprise does not understand the URL of notifier {n.name!r}")
    ok = a.notify(body=text, title="gozen")
    return PostResult(bool(ok), "" if ok else "apprise could not deliver it (see the sender's log)")


class Sender:
    def __init__(self, cfg: Config, engine: Engine, host: str) -> None:
        self.cfg, self.engine, self.host = cfg, engine, host
        self.notifiers = {n.name: n for n in cfg.notifiers}
        self.failing: set[str] = set()

    def send_due(self, limit: int = 50) -> int:
        """Post what is due; how many were delivered."""
        now = utcnow()
        with self.engine.connect() as conn:
            due = conn.execute(
                select(outbox)
                .where(outbox.c.state == "pending", outbox.c.next_try_at <= now)
                .order_by(outbox.c.id)
                .limit(limit)
            ).all()
        sent = 0
        tried: set[str] = set()
        for m in due:
            n = self.notifiers.get(m.notifier)
            if n is None:
                self.settle(m, PostResult(False, f"notifier {m.notifier!r} is no longer configured"))
                continue
            if m.notifier in self.failing and m.notifier in tried:
                continue  # a service that is down gets one probe a pass; the rest wait their turn
            tried.add(m.notifier)
            result = post(n, m.text, m.blocks, m.kind)
            self.settle(m, result)
            sent += result.ok
        return sent

    def settle(self, m: Any, r: PostResult) -> None:
        attempts = m.attempts + 1
        if r.ok:
            values: dict[str, Any] = {"state": "sent", "sent_at": utcnow(), "attempts": attempts, "last_error": None}
        else:
            backoff = r.retry_after_s or min(MAX_BACKOFF_S, self.cfg.couriers.retry_base_s * 2 ** (attempts - 1))
            values = {
                "attempts": attempts,
                "last_error": r.why[:2000],
                "next_try_at": utcnow() + timedelta(seconds=backoff),
            }
            log.warning("%s: message %d not delivered (%s); retry in %.0f s", m.notifier, m.id, r.why, backoff)
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == m.id).values(**values))
        if r.ok == (m.notifier in self.failing):  # the service's state changed: say it once
            if r.ok:
                self.failing.discard(m.notifier)
            else:
                self.failing.add(m.notifier)
            record_event(
                self.engine,
                host=self.host,
                source="courier:sender",
                kind="notifier_ok" if r.ok else "notifier_failing",
                subject=m.notifier,
                severity="info" if r.ok else "warning",
                message="delivering again" if r.ok else f"cannot deliver: {r.why}; messages are kept and retried",
            )

    def trim(self, now: datetime | None = None) -> int:
        """Forget messages delivered (or with nowhere to go) over KEEP_SETTLED_DAYS ago; pending ones stay."""
        cutoff = (now or utcnow()) - timedelta(days=KEEP_SETTLED_DAYS)
        with self.engine.begin() as conn:
            gone = conn.execute(
                delete(outbox).where(outbox.c.state.in_(["sent", "unrouted"]), outbox.c.created_at < cutoff)
            ).rowcount
        return int(gone or 0)

    def run(self) -> None:
        trimmed_at = float("-inf")
        while True:
            if time.monotonic() - trimmed_at > TRIM_EVERY_S:
                trimmed_at = time.monotonic()
                self.trim()
            if not self.send_due():
                time.sleep(self.cfg.couriers.send_every_s)
