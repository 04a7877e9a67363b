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

from gozen.config import Notifier
from gozen.couriers import store
from gozen.db.types import utcnow
from gozen.service import Context, Service, Trouble

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 3600.0
KEEP_SETTLED_DAYS = 30.0  # delivered and unroutable messages are kept this long (the Alerts page shows them)
TRIM_EVERY_S = 3600.0


def slack_escape(text: str) -> str:
    """Text shown as itself in Slack mrkdwn: Slack's three escapes (`&` first)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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


class Sender(Service):
    """`courier:sender`: posts what is due, every `couriers.send_every_s` (at once while there is more)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cfg, self.engine = ctx.cfg, ctx.engine
        self.period_s = ctx.cfg.couriers.send_every_s
        self.notifiers = {n.name: n for n in ctx.cfg.notifiers_in_use()}
        self.troubles: dict[str, Trouble] = {}
        self.trimmed_at = float("-inf")

    def run_once(self) -> bool:
        if time.monotonic() - self.trimmed_at > TRIM_EVERY_S:
            self.trim()
            self.trimmed_at = time.monotonic()
        return self.send_due() > 0

    def trouble(self, notifier: str) -> Trouble:
        """A notifier that cannot deliver, told once when it fails and once when it delivers again."""
        if notifier not in self.troubles:
            self.troubles[notifier] = self.ctx.trouble("notifier_failing", "notifier_ok", notifier, severity="warning")
        return self.troubles[notifier]

    def send_due(self, limit: int = 50) -> int:
        """Post what is due; how many were delivered."""
        sent = 0
        tried: set[str] = set()
        for m in store.due(self.engine, limit):
            n = self.notifiers.get(m.notifier)
            if n is None:
                self.settle(m, PostResult(False, f"notifier {m.notifier!r} is no longer configured"))
                continue
            if self.trouble(m.notifier).active and m.notifier in tried:
                continue  # a service that is down gets one probe a pass; the rest wait their turn
            tried.add(m.notifier)
            result = post(n, m.text, m.blocks, m.kind)
            self.settle(m, result)
            sent += result.ok
        return sent

    def settle(self, m: store.OutboxMessage, r: PostResult) -> None:
        if r.ok:
            store.mark_sent(self.engine, m)
            self.trouble(m.notifier).ok("delivering again")
            return
        backoff = r.retry_after_s or min(MAX_BACKOFF_S, self.cfg.couriers.retry_base_s * 2**m.attempts)
        log.warning("%s: message %d not delivered (%s); retry in %.0f s", m.notifier, m.id, r.why, backoff)
        store.retry_later(self.engine, m, r.why, backoff)
        self.trouble(m.notifier).failing(f"cannot deliver: {r.why}; messages are kept and retried")

    def trim(self, now: datetime | None = None) -> int:
        """Forget messages delivered (or with nowhere to go) over KEEP_SETTLED_DAYS ago; pending ones stay."""
        return store.forget_settled(self.engine, (now or utcnow()) - timedelta(days=KEEP_SETTLED_DAYS))
